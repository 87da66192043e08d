#include "replicator/replicator.h"

#include <glog/logging.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "raft/host/grpc_node_host.h"
#include "replicator/raft_store_folder.h"
#include "replicator/schema_changes.h"
#include "replicator/snapshot_stream.h"
#include "replicator/table_renames.h"

namespace marmot::replicator {

// How long this node's own schema stands still before it is proposed (ShipperOptions::
// schema_quiet) and other nodes' changes apply again (ChangeApplier::set_own_schema_quiet):
// longer than a migration tool's pause between two migrations, or between a run that met
// "database is locked" and the run again.
constexpr absl::Duration kOwnSchemaQuiet = absl::Seconds(3);
// At most this long from when it began to move: a schema that never stands still still goes.
constexpr absl::Duration kOwnSchemaQuietAtMost = absl::Minutes(2);

// Proposes batches through the host and wakes the pump when a proposal ends, so that committed
// changes are marked done without waiting for the next file event.
class Replicator::HostProposer : public Proposer {
 public:
  HostProposer(raft::host::NodeHost* host, ChangeDetector* detector, ReplicatorMetrics* metrics,
               raft::host::Env* env)
      : host_(host), detector_(detector), metrics_(metrics), env_(env) {}
  void Propose(int shard, std::string payload, Done done) override {
    ChangeDetector* detector = detector_;
    ReplicatorMetrics* metrics = metrics_;
    raft::host::Env* env = env_;
    const absl::Time start = env->MonotonicNow();
    host_->Propose(
        static_cast<uint64_t>(shard), std::move(payload),
        [done = std::move(done), detector, metrics, env, start](absl::Status s, uint64_t index) {
          if (s.ok()) {
            metrics->commit_seconds.Observe(absl::ToDoubleSeconds(env->MonotonicNow() - start));
          }
          done(std::move(s), index);
          detector->Wake();
        });
  }

 private:
  raft::host::NodeHost* host_;
  ChangeDetector* detector_;
  ReplicatorMetrics* metrics_;
  raft::host::Env* env_;
};

// Host events into metrics.
class Replicator::MetricsObserver : public raft::host::HostObserver {
 public:
  explicit MetricsObserver(ReplicatorMetrics* metrics) : metrics_(metrics) {}
  void OnLogWrite(absl::Duration took, bool synced) override {
    if (synced) metrics_->fsync_seconds.Observe(absl::ToDoubleSeconds(took));
  }
  void OnSnapshotSent(uint64_t, uint64_t, bool ok) override {
    (ok ? metrics_->snapshots_sent_ok : metrics_->snapshots_sent_failed).Increment();
  }
  void OnPeerUnreachable(uint64_t node) override {
    metrics_->peer_unreachable.Add({{"peer", std::to_string(node)}}).Increment();
  }
  void OnRefused(const char* what) override {
    metrics_->raft_refused.Add({{"what", what}}).Increment();
  }

 private:
  ReplicatorMetrics* metrics_;
};

Replicator::Replicator(NodeConfig config, raft::host::Env* env)
    : config_(std::move(config)), env_(env) {}

absl::StatusOr<std::unique_ptr<Replicator>> Replicator::Start(const NodeConfig& config,
                                                              raft::host::Env* env) {
  std::unique_ptr<Replicator> r(new Replicator(config, env));
  absl::StatusOr<DatabaseLock> lock = DatabaseLock::Acquire(config.db_path);
  if (!lock.ok()) return lock.status();
  r->lock_.emplace(*std::move(lock));
  ShardRouter router(config.shards);
  // Every router of this node (shipper, applier, verifier) routes renamed tables alike.
  auto renames = std::make_shared<TableRenames>();
  {
    absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(config.db_path);
    if (!db.ok()) return db.status();
    if (absl::Status s = renames->Load(*db); !s.ok()) return s;
  }
  router.set_renames(renames);
  r->metrics_ = std::make_unique<ReplicatorMetrics>(config.shards);
  r->observer_ = std::make_unique<MetricsObserver>(r->metrics_.get());
  r->last_leaders_.assign(config.shards, 0);

  absl::StatusOr<std::string> raft_folder = RaftStoreFolder(config.raft_path, config.node_id);
  if (!raft_folder.ok()) return raft_folder.status();
  // A node that has a Raft store was a member before (its database's marmot state removed by
  // -cleanup, say): the cluster knows it.
  std::error_code ec;
  const bool was_member = !std::filesystem::is_empty(*raft_folder, ec) && !ec;
  absl::StatusOr<std::unique_ptr<CaptureKeeper>> keeper =
      CaptureKeeper::Open(config.db_path,
                          config.seed                ? ExistingRows::kSeed
                          : config.take_cluster_rows ? ExistingRows::kTakeCluster
                                                     : ExistingRows::kRefuse,
                          was_member);
  if (!keeper.ok()) return keeper.status();
  r->keeper_ = *std::move(keeper);
  if (config.seed) {
    // The seeding node's schema is its own change, proposed with its rows: founders that start
    // from empty files make the tables first. Only at its first start (a baseline exists after).
    absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(config.db_path);
    if (!db.ok()) return db.status();
    if (absl::Status s = EnsureSchemaBaseline(*db, /*with_existing=*/false); !s.ok()) return s;
  }

  absl::StatusOr<std::unique_ptr<ChangeDetector>> detector = ChangeDetector::Open(config.db_path);
  if (!detector.ok()) return detector.status();
  r->detector_ = *std::move(detector);
  if (config.checkpoint_pages > 0) {
    absl::StatusOr<std::unique_ptr<WalCheckpointer>> checkpointer =
        WalCheckpointer::Start(config.db_path, {.min_pages = config.checkpoint_pages});
    if (!checkpointer.ok()) return checkpointer.status();
    r->checkpointer_ = *std::move(checkpointer);
  }

  absl::StatusOr<std::unique_ptr<ChangeApplier>> applier =
      ChangeApplier::Open(config.db_path, router);
  if (!applier.ok()) return applier.status();
  (*applier)->set_local_node(config.node_id);
  (*applier)->set_max_dead_letters(config.max_dead_letters);
  (*applier)->set_shipped_columns(r->shipped_columns_.get());
  (*applier)->set_own_schema_quiet(kOwnSchemaQuiet, kOwnSchemaQuietAtMost);
  (*applier)->set_own_schema_pending(r->own_schema_pending_.get());
  r->writer_ = std::make_shared<DatabaseWriter>(*std::move(applier));
  r->rounds_ = std::make_unique<ShardApplyRounds>(r->writer_.get());
  r->epochs_ = std::make_unique<SchemaEpochs>(config.shards);
  r->detector_->set_own_writes(r->writer_.get());

  raft::host::NodeHostConfig host_config;
  host_config.node_id = config.node_id;
  host_config.bind_address = config.bind.ToString();
  host_config.raft_path = *raft_folder;
  host_config.shards = config.shards;
  host_config.snapshot_entries = config.snapshot_entries;
  // A snapshot received is read whole before anything of it is recorded.
  host_config.check_snapshot = [](uint64_t shard, const raft::host::SnapshotSource& payload) {
    return CheckShardSnapshot(static_cast<uint32_t>(shard), payload);
  };
  // Entries kept behind a snapshot for followers slightly behind: never more than there are
  // between snapshots, so that a small -snapshot-entries keeps the log that small.
  host_config.compaction_overhead =
      std::min(host_config.compaction_overhead, config.snapshot_entries);
  host_config.join = config.join;
  host_config.cluster_key = config.cluster_key;
  host_config.tls_cert_file = config.tls_cert_file;
  host_config.tls_key_file = config.tls_key_file;
  host_config.tls_ca_file = config.tls_ca_file;
  host_config.observer = r->observer_.get();
  host_config.env = env;
  // Every shard applies through the one database writer: one apply worker, whose rounds of
  // work become one transaction each (DatabaseWriter::Round).
  host_config.apply_workers = 1;
  host_config.apply_rounds = r->rounds_.get();
  // Heartbeats every 400 ms, elections after 1.2-2.4 s of silence: 3-6 heartbeats per election
  // timeout, as CockroachDB runs (etcd's 5-10 is the host's default), on ticks of 200 ms (the
  // election timeout is drawn among 6 of them; CockroachDB's among 4). What an idle node costs
  // is the heartbeat exchanges, every batch a peer sends or answers waking a few threads on both
  // sides (gRPC's, the transport's, the Raft loop), and the loop's ticks: heartbeats every
  // 200 ms and ticks every 100 ms made an idle 16-shard node spend ~1 % of a core, twice this
  // (BENCHMARKS.md, "Idle"). Replication does not wait for heartbeats or ticks: an entry and its
  // commit go out at once. Faster elections buy little and cost spurious ones on a loaded machine
  // (three nodes and the application often share two cores).
  host_config.tick_interval = absl::Milliseconds(200);
  host_config.heartbeat_ticks = 2;
  host_config.election_ticks = 6;
  for (const auto& p : config.bootstrap) host_config.peers[p.id] = p.address.ToString();
  // The original marmot lists only the other nodes: a founding node is a member too.
  if (!config.join) host_config.peers.emplace(config.node_id, config.bind.ToString());
  std::shared_ptr<DatabaseWriter> writer = r->writer_;
  r->verifier_ =
      std::make_unique<ShardVerifier>(ShardVerifier::Options{.node_id = config.node_id,
                                                             .shards = config.shards,
                                                             .env = env,
                                                             .metrics = r->metrics_.get(),
                                                             .db_path = config.db_path,
                                                             .renames = renames});
  const ShardStateMachine::Options machine_options{
      .metrics = r->metrics_.get(),
      .snapshot_piece_bytes = static_cast<size_t>(config.snapshot_piece_bytes),
      .verifier = r->verifier_.get(),
      .epochs = r->epochs_.get(),
      .renames = renames.get(),
      .env = env};
  absl::StatusOr<std::unique_ptr<raft::host::NodeHost>> host =
      raft::host::StartNodeHost(std::move(host_config), [writer, machine_options](uint64_t shard) {
        return std::make_unique<ShardStateMachine>(static_cast<int>(shard), writer,
                                                   machine_options);
      });
  if (!host.ok()) return host.status();
  r->host_ = *std::move(host);
  r->verifier_->set_host(r->host_.get());
  // A shard waiting for another (schema_epochs.h) resumes once it got there.
  r->epochs_->set_wake(
      [host = r->host_.get()](int shard) { host->ResumeShard(static_cast<uint64_t>(shard)); });
  if (config.verify_every > absl::ZeroDuration()) r->verifier_->StartPeriodic(config.verify_every);

  r->proposer_ =
      std::make_unique<HostProposer>(r->host_.get(), r->detector_.get(), r->metrics_.get(), env);
  absl::StatusOr<std::unique_ptr<ChangeShipper>> shipper = ChangeShipper::Open(
      config.db_path, config.node_id, router, r->proposer_.get(),
      {.env = env,
       .shipped = r->shipped_columns_.get(),
       .replicate_schema = true,
       .schema_quiet = kOwnSchemaQuiet,
       .schema_quiet_at_most = kOwnSchemaQuietAtMost,
       .schema_pending = r->own_schema_pending_.get(),
       .not_replicated =
           [metrics = r->metrics_.get()](int64_t n) {
             metrics->schema_changes_not_replicated.Increment(static_cast<double>(n));
           },
       .epochs = r->epochs_.get()});
  if (!shipper.ok()) return shipper.status();
  r->shipper_ = *std::move(shipper);
  // Marking deletes log rows: in the transaction that makes the deferred state of their entries
  // durable (DeferredApplyState).
  r->shipper_->set_mark_transaction(
      [writer](const std::function<absl::Status(sqlite::Database&)>& write) {
        return writer->WriteWithDeferred(write);
      });

  r->pump_ = std::thread([raw = r.get()] { raw->PumpLoop(); });
  LOG(INFO) << "node " << config.node_id << " replicating " << config.db_path << " over "
            << config.shards << " shard(s), Raft on " << config.bind.ToString();
  return r;
}

void Replicator::PumpLoop() {
  // inotify wakes the loop within milliseconds of a commit; the data_version poll behind the
  // timeout is the safety net (a file system without inotify, a missed event, a commit visible
  // only after the detector stopped settling on its event). Proposal outcomes Wake() it too.
  // A round (the capture check, the shipper's read transaction, metrics) costs ~0.1 ms of CPU,
  // and 5 a second on timeouts were a sixth of what an idle node spent; the poll itself, one
  // PRAGMA, costs little. The timeouts' rounds also pace what the shipper does some time after a
  // commit (marking its rows done within ~1 s, proposing a schema change once it stood still for
  // kOwnSchemaQuiet): once nothing happened for longer than those, a timeout that saw no change
  // makes a round only once a second. Changes are noticed as fast as before.
  constexpr std::chrono::milliseconds kPoll(200);
  const absl::Duration kQuietRounds = absl::Seconds(1);
  const absl::Duration kQuietAfter = kOwnSchemaQuiet + absl::Seconds(2);
  absl::Time last_activity = env_->MonotonicNow();
  absl::Time last_round = absl::InfinitePast();
  while (!stopping_.load()) {
    std::chrono::milliseconds wait = kPoll;
    if (schema_retry_) {
      // Its next step is due after a pause (PacedRetry).
      const absl::Duration due = schema_retry_->next_step_at() - env_->MonotonicNow();
      wait = std::clamp(std::chrono::milliseconds(absl::ToInt64Milliseconds(due)),
                        std::chrono::milliseconds(0), wait);
    }
    const ChangeDetector::Wakeup wakeup = detector_->Wait(wait);
    if (stopping_.load()) break;
    const absl::Time now = env_->MonotonicNow();
    if (wakeup != ChangeDetector::Wakeup::kTimeout) {
      last_activity = now;
    } else if (!schema_retry_ && !own_schema_pending_->load() &&
               now - last_activity >= kQuietAfter && now - last_round < kQuietRounds) {
      continue;
    }
    last_round = now;
    if (checkpointer_ != nullptr) {
      // Not only on commits the detector saw: during a flood the pump is mostly woken by
      // proposals that committed, and the application commits meanwhile.
      if (wakeup != ChangeDetector::Wakeup::kTimeout) checkpointer_->Notify();
      const WalCheckpointer::Counts counts = checkpointer_->counts();
      metrics_->wal_checkpoints.Increment(static_cast<double>(counts.runs - checkpoint_runs_));
      checkpoint_runs_ = counts.runs;
      metrics_->wal_frames_behind.Set(static_cast<double>(counts.frames_behind));
    }
    const std::optional<DatabaseWriter::ApplyPause> paused = writer_->apply_paused();
    metrics_->apply_paused_seconds.Set(paused ? absl::ToDoubleSeconds(absl::Now() - paused->since)
                                              : 0.0);
    if (own_schema_pending_->load()) {
      // A migration runs here: the tables it makes get capture once it stood still (their rows
      // are copied then). An install meanwhile is a write that fails the migration's open
      // deferred transaction ("database is locked"), and its tool's run again may come too late
      // to be part of the same change.
    } else if (absl::Status s = keeper_->CheckSchema(); !s.ok()) {
      LOG(ERROR) << "capture check failed (retrying): " << s;
    } else if (keeper_->schema_version() != retried_at_schema_ ||
               metrics_->schema_changes_applied.Value() != retried_at_applied_) {
      // A schema change applied here may also have left the schema as it was (made here
      // already) and only recorded a column renamed or dropped: changes that wait for either
      // may apply now.
      RetryDeadLettersAfterSchemaChange();
    }
    if (schema_retry_ && env_->MonotonicNow() >= schema_retry_->next_step_at()) StepSchemaRetry();
    absl::StatusOr<PumpStats> stats = shipper_->Pump();
    for (int shard = 0; shard < host_->shards(); ++shard) {
      uint64_t leader = host_->GetShardInfo(shard).leader;
      if (leader != 0 && leader != last_leaders_[shard]) {
        if (last_leaders_[shard] != 0) metrics_->leader_changes[shard]->Increment();
        last_leaders_[shard] = leader;
      }
    }
    if (!stats.ok()) {
      LOG(ERROR) << "shipping changes failed (retrying): " << stats.status();
      last_activity = env_->MonotonicNow();
      continue;
    }
    if (stats->read > 0 || stats->proposed > 0 || stats->committed > 0 || stats->failed > 0) {
      last_activity = env_->MonotonicNow();
    }
    metrics_->changes_captured.Increment(static_cast<double>(stats->read));
    metrics_->tables_waiting_for_route.Set(static_cast<double>(stats->tables_waiting_for_route));
    metrics_->changes_committed.Increment(static_cast<double>(stats->committed));
    metrics_->proposals_failed.Increment(static_cast<double>(stats->failed));
    if (stats->committed > 0 || stats->proposed > 0) {
      VLOG(1) << "pump: read " << stats->read << ", proposed " << stats->proposed << ", committed "
              << stats->committed << ", retried " << stats->failed;
    }
  }
}

int Replicator::HandOffLeadership(std::chrono::milliseconds timeout) {
  auto led = [&] {
    std::vector<int> shards;
    for (int shard = 0; shard < host_->shards(); ++shard) {
      if (host_->GetShardInfo(shard).is_leader) shards.push_back(shard);
    }
    return shards;
  };
  int asked = 0;
  for (int shard : led()) {
    raft::host::ShardInfo info = host_->GetShardInfo(shard);
    // Spread the shards over the other voters.
    std::vector<uint64_t> others;
    for (uint64_t v : info.conf_state.voters()) {
      if (v != config_.node_id) others.push_back(v);
    }
    if (others.empty()) continue;
    host_->TransferLeadership(shard, others[shard % others.size()]);
    ++asked;
  }
  if (asked == 0) return static_cast<int>(led().size());
  const absl::Time deadline = env_->MonotonicNow() + absl::FromChrono(timeout);
  while (env_->MonotonicNow() < deadline && !led().empty()) {
    env_->SleepFor(absl::Milliseconds(20));
  }
  return static_cast<int>(led().size());
}

void Replicator::Stop() {
  if (stopping_.exchange(true)) return;
  detector_->Wake();
  if (pump_.joinable()) pump_.join();
  checkpointer_.reset();
  verifier_->Stop();
  writer_->BeginShutdown();
  host_->Stop();
  // Neither is needed for safety (committed rows not marked are proposed again and skipped as
  // duplicates; entries applied without writing are applied again after a restart), but they
  // spare the next start that work.
  if (absl::Status s = shipper_->Finish(); !s.ok()) {
    LOG(WARNING) << "node " << config_.node_id
                 << ": marking committed changes at stop failed: " << s;
  }
  if (absl::Status s = writer_->WriteWithDeferred(); !s.ok()) {
    LOG(WARNING) << "node " << config_.node_id
                 << ": writing the applied state at stop failed: " << s;
  }
  LOG(INFO) << "node " << config_.node_id << " stopped";
}

namespace {

// Per table, the SQL of the table and its indexes as sqlite_master holds it: what can make a
// dead letter apply (a missing table or column, a constraint, a unique index).
absl::StatusOr<std::map<std::string, std::string>> TableDefinitions(sqlite::Database& db) {
  absl::StatusOr<std::vector<std::vector<sqlite::Value>>> rows = db.QueryRows(
      "SELECT tbl_name, group_concat(coalesce(sql, ''), ';') FROM (SELECT tbl_name, sql FROM "
      "sqlite_master WHERE type IN ('table', 'index') ORDER BY name) GROUP BY tbl_name");
  if (!rows.ok()) return rows.status();
  std::map<std::string, std::string> out;
  for (const std::vector<sqlite::Value>& row : *rows) out[row[0].bytes()] = row[1].bytes();
  // A rename recorded (the table history): on the node that renamed the table, the dead
  // letters kept by its old name become its own when the rename commits (schema_changes.h),
  // though its SQL changed long before (a dead letter of a batch that named the old name, say).
  if (out.count(kTableHistoryTable)) {
    rows = db.QueryRows(absl::StrCat(
        "SELECT m.name, group_concat(h.\"from\" || '>' || h.shard0_index, ';') FROM ",
        sqlite::QuoteIdentifier(kTableHistoryTable),
        " AS h JOIN sqlite_master AS m ON m.type = 'table' AND lower(m.name) = lower(h.\"to\")"
        " GROUP BY m.name"));
    if (!rows.ok()) return rows.status();
    for (const std::vector<sqlite::Value>& row : *rows) {
      absl::StrAppend(&out[row[0].bytes()], "\nrenamed from ", row[1].bytes());
    }
  }
  // A column renamed or dropped (the column history) changes how the table's changes apply.
  if (!out.count(kColumnHistoryTable)) return out;
  rows = db.QueryRows(
      absl::StrCat("SELECT m.name, group_concat(h.old || '>' || coalesce(h.new, ''), ';') FROM ",
                   sqlite::QuoteIdentifier(kColumnHistoryTable),
                   " AS h JOIN sqlite_master AS m ON m.type = 'table' AND lower(m.name) = h.tbl"
                   " GROUP BY m.name"));
  if (!rows.ok()) return rows.status();
  for (const std::vector<sqlite::Value>& row : *rows) {
    absl::StrAppend(&out[row[0].bytes()], "\n", row[1].bytes());
  }
  return out;
}

}  // namespace

void Replicator::RetryDeadLettersAfterSchemaChange() {
  // The first check is at start: nothing changed while marmot ran.
  const bool while_running = retried_at_schema_ >= 0;
  absl::StatusOr<std::map<std::string, std::string>> now;
  std::set<std::string> to_retry;
  absl::Status status = writer_->RunOnce([&](ChangeApplier& applier) {
    sqlite::Database& db = applier.database();
    now = TableDefinitions(db);
    if (!now.ok()) return now.status();
    std::set<std::string> changed;
    for (const auto& [table, sql] : *now) {
      auto was = table_definitions_.find(table);
      if (was == table_definitions_.end() || was->second != sql) changed.insert(table);
    }
    for (const auto& [table, sql] : table_definitions_) {
      if (!now->count(table)) changed.insert(table);
    }
    // Only the dead letters of tables whose definition changed: retrying every one at every
    // schema change would redo work that cannot have changed.
    absl::StatusOr<sqlite::Statement> any =
        db.Prepare("SELECT 1 FROM \"__marmot__dead_letters\" WHERE tbl = ?1 LIMIT 1");
    if (!any.ok()) return any.status();
    for (const std::string& table : changed) {
      if (absl::Status s = any->Bind(1, sqlite::Value::Text(table)); !s.ok()) return s;
      absl::StatusOr<bool> found = any->Step();
      if (!found.ok()) return found.status();
      if (*found) to_retry.insert(table);
      any->Reset();
    }
    return absl::OkStatus();
  });
  if (!status.ok()) {
    LOG(WARNING) << "node " << config_.node_id
                 << ": retrying dead letters after a schema change failed "
                 << "(trying again): " << status;
    return;
  }
  table_definitions_ = *std::move(now);
  retried_at_schema_ = keeper_->schema_version();
  retried_at_applied_ = metrics_->schema_changes_applied.Value();
  // A table or constraint that a halted shard needed may have come: halted shards resume now,
  // or after the retry under way (which they may need first).
  schema_changed_while_running_ = schema_changed_while_running_ || while_running;
  if (to_retry.empty()) {
    if (!schema_retry_ && schema_changed_while_running_) {
      schema_changed_while_running_ = false;
      ResumeHaltedShards("after a schema change");
    }
    return;
  }
  // Most dead letters are changes for a table or column this node lacked; the schema change
  // may have brought it. Those that still fail stay, with their new error. A retry under way
  // starts over with its tables and these.
  schema_retry_tables_.insert(to_retry.begin(), to_retry.end());
  schema_retry_.emplace(*writer_, *env_, DeadLetterRetry::OfTables(schema_retry_tables_));
}

void Replicator::StepSchemaRetry() {
  if (absl::Status s = schema_retry_->Step(); !s.ok()) {
    LOG(WARNING) << "node " << config_.node_id
                 << ": retrying dead letters after a schema change: " << s;
    if (absl::IsCancelled(s)) schema_retry_.reset();
    return;
  }
  if (!schema_retry_->done()) return;
  const RetryResult result = schema_retry_->result();
  const bool resume = schema_changed_while_running_ || result.applied > 0;
  schema_retry_.reset();
  schema_retry_tables_.clear();
  schema_changed_while_running_ = false;
  LOG(INFO) << "node " << config_.node_id
            << ": retried dead letters after a schema change: " << result.applied << " applied, "
            << result.still_failing << " still failing";
  if (resume) ResumeHaltedShards("after retrying dead letters");
}

void Replicator::ResumeHaltedShards(const char* why) {
  for (int shard = 0; shard < host_->shards(); ++shard) {
    const std::string halted = host_->GetShardInfo(shard).halted;
    if (halted.empty()) continue;
    LOG(INFO) << "[shard " << shard << " node " << config_.node_id << "] resuming " << why
              << "; it halted: " << halted;
    host_->ResumeShard(shard);
  }
}

absl::StatusOr<RetryResult> Replicator::RetryDeadLetters(const std::vector<int64_t>& ids) {
  PacedRetry retry(*writer_, *env_, DeadLetterRetry(ids));
  absl::StatusOr<RetryResult> result = retry.Run([this] { return stopping_.load(); });
  if (!result.ok()) return result;
  LOG(INFO) << "node " << config_.node_id << ": retried dead letters: " << result->applied
            << " applied, " << result->still_failing << " still failing";
  ResumeHaltedShards("after retrying dead letters");
  return result;
}

Replicator::~Replicator() {
  if (!stopping_.load() && host_ != nullptr && pump_.joinable()) Stop();
}

}  // namespace marmot::replicator
