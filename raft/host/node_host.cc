#include "raft/host/node_host.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "glog/logging.h"
#include "raft/log_prefix.h"
#include "raft/errors.h"
#include "raft/host/cluster_identity.h"
#include "raft/host/grpc_transport.h"
#include "raft/host/node_incarnation.h"
#include "raft/host/proposal_codec.h"
#include "raft/host/sender_policy.h"
#include "raft/host/snapshot_file.h"
#include "raft/host/storage_failure.h"
#include "raft/membership.h"

namespace marmot::raft::host {

namespace {

// A proposal's timeout grows by a second per this many bytes of payload (see Propose).
constexpr double kTimeoutBytesPerSecond = 8 << 20;

}  // namespace

// ---------------------------------------------------------------------------------------------
// Per-shard state owned by the Raft loop.

struct NodeHost::Shard {
  uint64_t id = 0;
  ShardLog* log = nullptr;
  std::unique_ptr<RawNode> raw;
  // Membership as of the last committed entry handed to the apply worker.
  v1::ConfState applied_conf;
  // The latest conf changes handed to the apply worker that took effect, by the membership
  // version they made (ConfState.version): how ProposeConfChangeAndWait knows that one of its
  // tries is in. A few suffice; a try missed here (say behind a snapshot) is retried.
  std::map<uint64_t, v1::ConfChange> recent_conf_changes;
  static constexpr size_t kRecentConfChanges = 32;
  ApplyWorker* worker = nullptr;
  // The payload file of a received snapshot the core holds but the loop has not recorded yet
  // (the unstable one): the loop owns it until it is recorded or replaced.
  std::string unstable_snapshot_file;
};

// ---------------------------------------------------------------------------------------------

NodeHost::NodeHost(NodeHostConfig config) : config_(std::move(config)) {}

absl::StatusOr<std::unique_ptr<NodeHost>> NodeHost::Start(NodeHostConfig config,
                                                          StateMachineFactory factory) {
  if (config.node_id == 0) return absl::InvalidArgumentError("node id must be positive");
  if (config.shards <= 0) return absl::InvalidArgumentError("shard count must be positive");
  std::unique_ptr<NodeHost> host(new NodeHost(std::move(config)));
  auto s = host->Init(std::move(factory));
  if (!s.ok()) return s;
  return host;
}

absl::Status NodeHost::Init(StateMachineFactory factory) {
  const uint64_t me = config_.node_id;
  RocksLogStore::Options so;
  so.node_id = me;
  so.shards = config_.shards;
  so.on_background_error = [me, path = config_.raft_path](const absl::Status& s) {
    ExitOnStorageFailure(me, path, "log write", s);
  };
  auto store = RocksLogStore::Open(config_.raft_path, so);
  if (!store.ok()) return store.status();
  store_ = std::move(*store);

  std::map<uint64_t, std::string> addresses = config_.peers;
  if (store_->fresh()) {
    if (!config_.join) {
      if (!config_.peers.count(me)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "node ", me, ": the bootstrap member list must include this node"));
      }
      v1::ConfState cs;
      for (const auto& [id, addr] : config_.peers) {
        cs.add_voters(id);
        // Remembered so that a restart finds every member even with a shorter list.
        store_->PutMeta(absl::StrCat("addr/", id), addr);
      }
      for (int s = 0; s < config_.shards; ++s) store_->Bootstrap(s, cs);
      LOG(INFO) << "[node " << me << "] bootstrapped " << config_.shards << " shards with members "
                << absl::StrJoin(cs.voters(), ",");
    }
  } else {
    // Addresses learnt from membership changes; the configured ones win.
    for (const auto& [k, v] : store_->ReadMetaWithPrefix("addr/")) {
      uint64_t id = std::strtoull(k.c_str() + 5, nullptr, 10);
      if (id != 0 && !addresses.count(id)) addresses[id] = v;
    }
  }
  // Proposal ids carry a run number persisted here, so an entry this node proposed in an
  // earlier run (replayed after a restart) never resolves a proposal of this run.
  uint64_t run = 0;
  for (const auto& [k, v] : store_->ReadMetaWithPrefix("run")) run = std::strtoull(v.c_str(), nullptr, 10);
  ++run;
  store_->PutMeta("run", std::to_string(run));
  pending_ = std::make_unique<PendingProposals>(config_.shards, (run << 40) + 1);
  auto cs = store_->Commit(true);
  if (!cs.ok()) return cs;

  removed_.resize(config_.shards);
  for (const auto& [k, v] : store_->ReadMetaWithPrefix("removed/")) {
    uint64_t shard = 0, node = 0;
    if (std::sscanf(k.c_str(), "removed/%" SCNu64 "/%" SCNu64, &shard, &node) == 2 && shard < removed_.size() &&
        v == "1") {
      removed_[shard].insert(node);
    }
  }

  const int nworkers = std::max(1, std::min(config_.apply_workers, config_.shards));
  ApplyWorkerOptions wo;
  wo.node_id = me;
  wo.snapshot_dir = store_->SnapshotDir();
  wo.max_backlog_bytes = config_.max_apply_backlog_bytes;
  wo.snapshots = {.snapshot_entries = config_.snapshot_entries,
                  .snapshot_bytes = config_.snapshot_bytes,
                  .compaction_overhead = config_.compaction_overhead,
                  .compaction_overhead_bytes = config_.compaction_overhead_bytes};
  wo.rounds = config_.apply_rounds;
  ApplyListener* listener = this;
  for (int w = 0; w < nworkers; ++w) {
    workers_.push_back(std::make_unique<ApplyWorker>(wo, listener));
  }
  proposals_.resize(config_.shards);
  info_.resize(config_.shards);
  for (int s = 0; s < config_.shards; ++s) {
    auto shard = std::make_unique<Shard>();
    shard->id = s;
    shard->log = store_->shard(s);
    shard->worker = workers_[s % nworkers].get();
    std::unique_ptr<StateMachine> sm = factory(s);
    uint64_t applied = sm->Open();
    const v1::SnapshotMetadata meta = shard->log->snapshot_metadata();
    std::string halted;
    if (applied < meta.index()) {
      // The state machine is behind the log's start: install the snapshot first.
      absl::StatusOr<std::shared_ptr<SnapshotSource>> payload =
          OpenPayload(shard->log->snapshot_file());
      if (!payload.ok()) return payload.status();
      absl::Status r = sm->RecoverFromSnapshot(meta.index(), **payload, nullptr);
      if (!r.ok()) {
        // The shard starts halted (as ApplyWorker::Halt would halt it); the others run.
        halted =
            absl::StrCat("installing the snapshot at ", meta.index(), " at start: ", r.message());
        LOG(ERROR) << LogPrefix(s, me) << "halted: " << halted
                   << "; this node applies nothing to the shard until it restarts";
      } else {
        applied = meta.index();
      }
    }
    if (applied > shard->log->LastIndex()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "shard ", s, ": state machine applied ", applied, " but the raft log ends at ",
          shard->log->LastIndex(), " (raft folder from another run?)"));
    }
    // Membership as of `applied`: the snapshot's plus the conf changes after it.
    v1::ConfState conf = meta.conf_state();
    if (applied > meta.index()) {
      auto ents = shard->log->Entries(meta.index() + 1, applied + 1, UINT64_MAX);
      if (!ents.ok()) return ents.status();
      for (const auto& e : *ents) {
        v1::ConfChange cc;
        if (e.type() == v1::ENTRY_CONF_CHANGE && cc.ParseFromString(e.data())) {
          conf = ApplyConfChangeTo(conf, cc);
        }
      }
    }
    shard->applied_conf = conf;
    auto term = shard->log->Term(applied);
    Config c;
    c.id = me;
    c.shard = s;
    c.election_tick = config_.election_ticks;
    c.heartbeat_tick = config_.heartbeat_ticks;
    c.align_heartbeats = true;  // one batch of heartbeats per peer per interval
    c.storage = shard->log;
    // A halted shard's core starts as if the snapshot were installed; nothing is applied.
    c.applied = std::max(applied, meta.index());
    c.random_seed = (me << 32) ^ (static_cast<uint64_t>(s) * 0x9e3779b97f4a7c15ull);
    auto raw = RawNode::Create(c);
    if (!raw.ok()) return raw.status();
    shard->raw = std::move(*raw);
    shard->worker->AddShard(s, std::move(sm), applied, term.ok() ? *term : 0, conf, meta.index(),
                            !halted.empty());
    info_[s].applied = applied;
    info_[s].halted = halted;
    shards_.push_back(std::move(shard));
  }
  // Shard 0's highest voter draws the cluster id if there is none (cluster_identity.h).
  std::string cluster_id = store_->cluster_id_at_open();
  bool candidate = false;
  const auto& voters = shards_[0]->applied_conf.voters();
  if (cluster_id.empty() && !voters.empty() &&
      *std::max_element(voters.begin(), voters.end()) == me) {
    cluster_id = NewClusterId();
    if (auto s = store_->SetClusterId(cluster_id); !s.ok()) return s;
    candidate = true;
    LOG(INFO) << "[node " << me << "] drew cluster id " << FormatClusterId(cluster_id)
              << " (highest voter of shard 0); a peer that already has one replaces it";
  } else {
    LOG(INFO) << "[node " << me << "] cluster " << FormatClusterId(cluster_id)
              << (cluster_id.empty() ? ": learnt from the first peer that has one" : "");
  }
  cluster_ = std::make_shared<ClusterIdentity>(
      me, cluster_id, candidate,
      [store = store_.get()](const std::string& id) { return store->SetClusterId(id); });
  if (config_.transport_factory) {
    transport_ = config_.transport_factory();
  } else {
    GrpcTransportOptions to;
    to.node_id = me;
    to.bind_address = config_.bind_address;
    to.snapshot_dir = store_->SnapshotDir();
    to.check_snapshot = config_.check_snapshot;
    to.snapshot_chunk_bytes = config_.snapshot_chunk_bytes;
    to.tls_cert_file = config_.tls_cert_file;
    to.tls_key_file = config_.tls_key_file;
    to.tls_ca_file = config_.tls_ca_file;
    to.cluster_key = config_.cluster_key;
    to.shards = static_cast<uint64_t>(config_.shards);
    to.cluster = cluster_;
    to.env = config_.env;
    auto g = std::make_unique<GrpcTransport>(to);
    grpc_ = g.get();
    transport_ = std::move(g);
  }
  for (const auto& [id, addr] : addresses) {
    if (id != me) transport_->SetPeerAddress(id, addr);
  }
  addresses_ = std::move(addresses);
  {
    std::lock_guard<std::mutex> l(info_mu_);
    published_addresses_ = addresses_;
  }

  auto ts = transport_->Start(this);
  if (!ts.ok()) return ts;
  for (auto& w : workers_) w->Start();
  loop_ = std::thread([this] { RunLoop(); });
  LOG(INFO) << "[node " << me << "] node host started: " << config_.shards << " shards, "
            << nworkers << " apply workers, raft path " << config_.raft_path;
  return absl::OkStatus();
}

NodeHost::~NodeHost() { Stop(); }

void NodeHost::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (transport_) transport_->Stop();
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (loop_.joinable()) loop_.join();
  for (auto& w : workers_) w->Stop();
  if (pending_) pending_->CancelAll();
  if (store_) {
    auto s = store_->Commit(true);
    if (!s.ok()) LOG(ERROR) << "[node " << config_.node_id << "] final commit: " << s;
  }
  shards_.clear();
  workers_.clear();
  store_.reset();
  LOG(INFO) << "[node " << config_.node_id << "] node host stopped";
}

int NodeHost::bound_port() const { return grpc_ != nullptr ? grpc_->bound_port() : 0; }

void NodeHost::Post(std::function<void()> fn) {
  std::lock_guard<std::mutex> l(mu_);
  if (stopping_) return;
  tasks_.push_back(std::move(fn));
  cv_.notify_one();
}

void NodeHost::HandleMessages(std::vector<v1::Message> messages) {
  size_t refused = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return;
    for (auto& m : messages) {
      // A snapshot's data names a local file (snapshot_file.h): only HandleSnapshot sets it.
      if (m.type() == v1::MSG_SNAP) {
        ++refused;
        continue;
      }
      incoming_.push_back(std::move(m));
    }
    cv_.notify_one();
  }
  if (refused > 0) {
    LOG_EVERY_N(WARNING, 64) << "[node " << config_.node_id << "] dropped " << refused
                             << " snapshot message(s) that did not come as a snapshot";
    for (size_t i = 0; i < refused; ++i) HandleRefused("message");
  }
}

void NodeHost::HandleSnapshot(v1::Message m) {
  Post([this, m = std::move(m)]() mutable { StepSnapshot(std::move(m)); });
}

void NodeHost::StepSnapshot(v1::Message m) {
  const std::string file = m.snapshot().data();
  const uint64_t shard = m.shard();
  StepIncoming(std::move(m));
  // The core keeps the snapshot (as its unstable one, until the next Ready records it) or
  // drops it (stale, or from a sender it refused). The file goes with what is dropped, never
  // while a record may name it.
  std::vector<std::string> unused = {file};
  if (shard < shards_.size()) {
    Shard* sh = shards_[shard].get();
    const std::optional<v1::Snapshot>& unstable = sh->raw->raft().log().unstable().snapshot();
    if (unstable.has_value() && unstable->data() == file) {
      unused = {sh->unstable_snapshot_file};
      sh->unstable_snapshot_file = file;
    }
    if (unused[0] == sh->log->snapshot_file()) unused.clear();
  }
  for (const std::string& f : unused) {
    if (f.empty()) continue;
    std::error_code ec;
    std::filesystem::remove(store_->SnapshotDir() + "/" + f, ec);
  }
}

absl::StatusOr<std::shared_ptr<SnapshotSource>> NodeHost::OpenPayload(
    const std::string& file) const {
  if (file.empty()) return std::make_shared<StringSnapshotSource>();
  absl::StatusOr<std::unique_ptr<FileSnapshotSource>> source =
      FileSnapshotSource::Open(store_->SnapshotDir() + "/" + file);
  if (!source.ok()) {
    return absl::DataLossError(absl::StrCat("the recorded snapshot file ", file,
                                            " cannot be opened: ", source.status().message()));
  }
  return std::shared_ptr<SnapshotSource>(*std::move(source));
}

void NodeHost::HandleUnreachable(uint64_t node) {
  if (config_.observer != nullptr) config_.observer->OnPeerUnreachable(node);
  Post([this, node] {
    for (auto& s : shards_) s->raw->ReportUnreachable(node);
  });
}

void NodeHost::HandleSnapshotStatus(uint64_t shard, uint64_t node, bool ok) {
  if (config_.observer != nullptr) config_.observer->OnSnapshotSent(shard, node, ok);
  Post([this, shard, node, ok] {
    if (shard < shards_.size()) {
      shards_[shard]->raw->ReportSnapshot(node, ok ? SnapshotStatus::kFinish : SnapshotStatus::kFailure);
    }
  });
}

void NodeHost::HandleRefused(const char* what) {
  if (config_.observer != nullptr) config_.observer->OnRefused(what);
}

void NodeHost::HandleDuplicateNode(const std::string& why) {
  if (config_.on_duplicate_node) {
    config_.on_duplicate_node(why);
    return;
  }
  ExitOnDuplicateNode(config_.node_id, why);
}

std::string NodeHost::cluster_id() const { return cluster_ != nullptr ? cluster_->id() : ""; }

void NodeHost::StepIncoming(v1::Message m) {
  if (m.shard() >= shards_.size() || m.to() != config_.node_id) {
    LOG(WARNING) << "[node " << config_.node_id << "] dropping a message for shard " << m.shard()
                 << " node " << m.to() << " from node " << m.from() << " (type " << m.type() << ")";
    return;
  }
  const Raft& r = shards_[m.shard()]->raw->raft();
  auto role = [&r](uint64_t id) {
    const Progress* p = r.tracker().Get(id);
    if (p == nullptr) return ShardRole::kNone;
    return p->is_learner ? ShardRole::kLearner : ShardRole::kVoter;
  };
  const SenderView view{.self = role(config_.node_id),
                        .sender = role(m.from()),
                        .sender_removed = removed_[m.shard()].count(m.from()) > 0,
                        .term = r.term(),
                        .lead = r.lead()};
  if (absl::Status allowed = CheckSender(view, m); !allowed.ok()) {
    const uint64_t n = refused_messages_.fetch_add(1, std::memory_order_relaxed) + 1;
    HandleRefused("sender");
    // A removed member keeps knocking until it is stopped: one line now and then, not each.
    if (n <= 16 || n % 256 == 0) {
      LOG(WARNING) << LogPrefix(m.shard(), config_.node_id) << allowed.message()
                   << " (" << n << " refused so far)";
    }
    return;
  }
  auto s = shards_[m.shard()]->raw->Step(std::move(m));
  if (!s.ok() && !IsProposalDropped(s)) {
    VLOG(1) << "[node " << config_.node_id << "] step: " << s;
  }
}

void NodeHost::RunLoop() {
  const absl::Duration tick = config_.tick_interval;
  absl::Time next_tick = absl::Now() + tick;
  absl::Time next_expiry = absl::Now() + absl::Milliseconds(100);
  for (;;) {
    std::vector<v1::Message> in;
    std::vector<std::function<void()>> tasks;
    std::vector<std::pair<uint64_t, ProposalQueue>> proposals;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait_until(l, absl::ToChronoTime(next_tick), [this] {
        return stopping_ || !incoming_.empty() || !tasks_.empty() || !proposal_shards_.empty();
      });
      if (stopping_) break;
      in.swap(incoming_);
      tasks.swap(tasks_);
      for (uint64_t shard : proposal_shards_) {
        proposals.emplace_back(shard, std::move(proposals_[shard]));
        proposals_[shard] = ProposalQueue();
      }
      proposal_shards_.clear();
    }
    for (auto& m : in) StepIncoming(std::move(m));
    for (auto& t : tasks) t();
    for (auto& [shard, q] : proposals) ProposeQueued(shard, std::move(q));
    const absl::Time now = absl::Now();
    if (now >= next_tick) {
      for (auto& s : shards_) s->raw->Tick();
      PromoteCaughtUpLearners();
      next_tick += tick;
      if (next_tick < now) next_tick = now + tick;  // fell behind: don't burst
    }
    HandleReadies();
    if (now >= next_expiry) {
      pending_->Expire(now);
      next_expiry = now + absl::Milliseconds(100);
    }
  }
}

void NodeHost::HandleReadies() {
  bool sync = false;
  std::vector<ShardReady> readies = StageReadies(&sync);
  if (!readies.empty()) {
    SendAndCommit(readies, sync);
    std::vector<DecodedProposal> scratch;
    for (auto& [shard, rd] : readies) {
      ApplyTask task = TaskFromReady(*shard, rd, scratch);
      if (task.snapshot || !task.entries.empty()) shard->worker->Enqueue(std::move(task));
      auto as = shard->raw->Advance();
      CHECK(as.ok()) << LogPrefix(shard->id, config_.node_id) << as;
      PublishShardInfo(*shard);
    }
  }
  // What the steps above staged without a sync (membership bookkeeping, say).
  if (store_->HasStaged()) {
    auto cs = store_->Commit(false);
    if (!cs.ok()) ExitOnStorageFailure(config_.node_id, config_.raft_path, "log write", cs);
  }
}

std::vector<NodeHost::ShardReady> NodeHost::StageReadies(bool* sync) {
  const uint64_t me = config_.node_id;
  std::vector<ShardReady> readies;
  for (auto& shard : shards_) {
    // A shard whose state machine is far behind takes no new Ready until it catches up: its
    // apply queue stays bounded (its replication pauses; other shards are unaffected).
    if (shard->worker->Backlogged(shard->id)) continue;
    if (!shard->raw->HasReady()) continue;
    auto rd_or = shard->raw->GetReady();
    CHECK(rd_or.ok()) << LogPrefix(shard->id, me) << rd_or.status();
    Ready rd = std::move(*rd_or);
    if (rd.snapshot) {
      auto s = shard->log->ApplySnapshot(*rd.snapshot);
      if (!s.ok() && !IsSnapshotOutOfDate(s)) {
        ExitOnStorageFailure(me, config_.raft_path, "snapshot write", s);
      }
      CHECK(s.ok()) << LogPrefix(shard->id, me) << "persist snapshot: " << s;
      if (shard->unstable_snapshot_file == rd.snapshot->data()) {
        shard->unstable_snapshot_file.clear();
      }
      *sync = true;
    }
    if (!rd.entries.empty()) {
      auto s = shard->log->Append(std::move(rd.entries));
      CHECK(s.ok()) << LogPrefix(shard->id, me) << "append: " << s;
      rd.entries.clear();
    }
    if (rd.hard_state) shard->log->SetHardState(*rd.hard_state);
    *sync = *sync || rd.must_sync;
    if (rd.soft_state) {
      VLOG(1) << LogPrefix(shard->id, me) << "leader " << rd.soft_state->lead << " state "
              << StateName(rd.soft_state->state);
    }
    readies.emplace_back(shard.get(), std::move(rd));
  }
  return readies;
}

void NodeHost::SendAndCommit(std::vector<ShardReady>& readies, bool sync) {
  const uint64_t me = config_.node_id;
  // A leader's appends, heartbeats and snapshots go out before its own write is durable (Raft
  // thesis 10.2.1): this is safe because their answers are stepped only in a later iteration,
  // after the Commit below, so the leader never counts itself in a quorum for entries it has
  // not fsynced. A forwarded proposal promises nothing either. Everything else (votes, append
  // acknowledgements) promises persisted state and waits for the Commit.
  std::vector<v1::Message> early, late;
  for (auto& [shard, rd] : readies) {
    for (auto& m : rd.messages) {
      // A follower forwards a proposal it got from the network with its first sender still in
      // `from` (the core's convention, as etcd's). The transport binds `from` to the stream's
      // peer, so the next hop would drop it: the proposal leaves in this node's name, which is
      // also whose membership the leader then checks (this node checked the first sender).
      if (m.type() == v1::MSG_PROP && m.from() != me) m.set_from(me);
      const bool early_ok = m.type() == v1::MSG_APP || m.type() == v1::MSG_HEARTBEAT ||
                            m.type() == v1::MSG_SNAP || m.type() == v1::MSG_PROP;
      (early_ok ? early : late).push_back(std::move(m));
    }
  }
  if (!early.empty()) transport_->Send(std::move(early));
  const absl::Time write_start = absl::Now();
  auto cs = store_->Commit(sync);
  if (!cs.ok()) ExitOnStorageFailure(me, config_.raft_path, "log write", cs);
  if (config_.observer != nullptr) config_.observer->OnLogWrite(absl::Now() - write_start, sync);
  if (!late.empty()) transport_->Send(std::move(late));
}

ApplyTask NodeHost::TaskFromReady(Shard& shard, Ready& rd,
                                  std::vector<DecodedProposal>& decoded) {
  const uint64_t me = config_.node_id;
  ApplyTask task;
  task.shard = shard.id;
  task.entries.reserve(rd.committed_entries.size());
  uint64_t snap_index = 0;
  if (rd.snapshot) {
    snap_index = rd.snapshot->metadata().index();
    shard.applied_conf = rd.snapshot->metadata().conf_state();
    // Opened now, while the file is the recorded one: a newer snapshot may replace it (and
    // delete it) before the worker reads it.
    absl::StatusOr<std::shared_ptr<SnapshotSource>> payload = OpenPayload(rd.snapshot->data());
    if (!payload.ok()) {
      ExitOnStorageFailure(me, config_.raft_path, "snapshot read", payload.status());
    }
    task.payload = *std::move(payload);
    task.snapshot = std::move(*rd.snapshot);
  }
  for (auto& e : rd.committed_entries) {
    if (e.index() <= snap_index) continue;
    AppliedEntry ae;
    ae.index = e.index();
    ae.term = e.term();
    if (e.type() == v1::ENTRY_CONF_CHANGE) {
      v1::ConfChange cc;
      if (!cc.ParseFromString(e.data())) {
        LOG(ERROR) << LogPrefix(shard.id, me) << "undecodable conf change at " << e.index()
                   << ", skipped";
      } else {
        ApplyConfChange(shard, cc);
      }
    } else if (!e.data().empty()) {
      // The Ready is ours: payloads move to the task where they can.
      uint64_t proposer = 0;
      auto ds = DecodeProposals(std::move(*e.mutable_data()), &proposer, &decoded);
      if (!ds.ok()) {
        LOG(ERROR) << LogPrefix(shard.id, me) << "entry " << e.index()
                   << " applied as empty: " << ds.message();
      }
      for (size_t i = 0; i < decoded.size(); ++i) {
        if (proposer == me) task.mine.emplace_back(e.index(), decoded[i].id);
        if (i + 1 < decoded.size()) {
          task.entries.push_back(AppliedEntry{ae.index, ae.term, std::move(decoded[i].payload)});
        } else {
          ae.data = std::move(decoded[i].payload);
        }
      }
    }
    task.entries.push_back(std::move(ae));
  }
  task.conf_after = shard.applied_conf;
  return task;
}

void NodeHost::ApplyConfChange(Shard& shard, const v1::ConfChange& cc) {
  const uint64_t me = config_.node_id;
  const uint64_t version_before = shard.applied_conf.version();
  shard.applied_conf = shard.raw->ApplyConfChange(cc);
  const bool took_effect = shard.applied_conf.version() != version_before;
  if (took_effect) {
    shard.recent_conf_changes[shard.applied_conf.version()] = cc;
    if (shard.recent_conf_changes.size() > Shard::kRecentConfChanges) {
      shard.recent_conf_changes.erase(shard.recent_conf_changes.begin());
    }
  }
  // Remembered so that a removed member stays refused (sender_policy.h), also after a restart;
  // a node added again is a member like any other. Only a change that took effect counts: a
  // refused removal must not shut a member out.
  const bool removed = cc.type() == v1::CONF_CHANGE_REMOVE_NODE;
  if (took_effect && removed != (removed_[shard.id].count(cc.node_id()) > 0)) {
    if (removed) {
      removed_[shard.id].insert(cc.node_id());
    } else {
      removed_[shard.id].erase(cc.node_id());
    }
    store_->PutMeta(absl::StrCat("removed/", shard.id, "/", cc.node_id()), removed ? "1" : "0");
  }
  if (cc.type() != v1::CONF_CHANGE_REMOVE_NODE && !cc.context().empty() && cc.node_id() != me) {
    transport_->SetPeerAddress(cc.node_id(), cc.context());
    store_->PutMeta(absl::StrCat("addr/", cc.node_id()), cc.context());
    addresses_[cc.node_id()] = cc.context();
    std::lock_guard<std::mutex> l(info_mu_);
    published_addresses_[cc.node_id()] = cc.context();
  }
  LOG(INFO) << LogPrefix(shard.id, me) << "membership now voters "
            << absl::StrJoin(shard.applied_conf.voters(), ",") << " learners "
            << absl::StrJoin(shard.applied_conf.learners(), ",") << " (to promote "
            << absl::StrJoin(shard.applied_conf.learners_to_promote(), ",") << ")";
}

void NodeHost::PublishShardInfo(const Shard& shard) {
  const Raft& r = shard.raw->raft();
  std::lock_guard<std::mutex> l(info_mu_);
  ShardInfo& info = info_[shard.id];
  info.leader = r.lead();
  info.is_leader = r.state() == StateType::kLeader;
  info.term = r.term();
  info.commit = r.log().committed();
  info.first_index = shard.log->FirstIndex();
  info.last_index = shard.log->LastIndex();
  info.snapshot_index = shard.log->snapshot_metadata().index();
  info.conf_state = r.tracker().ConfState();
  info.applied_conf_state = shard.applied_conf;
}

void NodeHost::Propose(uint64_t shard, std::string data, ProposalCallback done) {
  if (shard >= static_cast<uint64_t>(config_.shards)) {
    done(absl::InvalidArgumentError(absl::StrCat("no shard ", shard)), 0);
    return;
  }
  if (data.size() > config_.max_entry_bytes) {
    const std::string why = absl::StrCat("a proposal of ", data.size(), " bytes is larger than a Raft entry may be (",
                                         config_.max_entry_bytes, " bytes)");
    LOG(ERROR) << LogPrefix(shard, config_.node_id) << "refused: " << why;
    done(absl::InvalidArgumentError(why), 0);
    return;
  }
  // A large entry takes longer to reach, be written by and be acknowledged by a quorum; one
  // that timed out is proposed again by its caller, a copy as large in the log each time.
  const absl::Duration timeout =
      config_.proposal_timeout +
      absl::Seconds(static_cast<double>(data.size()) / kTimeoutBytesPerSecond);
  const uint64_t id = pending_->Add(shard, std::move(done), absl::Now() + timeout);
  // Packs are framed on the loop, when it knows which proposals go together.
  std::string payload = config_.pack_proposals ? std::move(data) : EncodeSingle(config_.node_id, id, data);
  bool posted = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!stopping_) {
      posted = true;
      ProposalQueue& q = proposals_[shard];
      if (q.ids.empty()) proposal_shards_.push_back(shard);
      q.ids.push_back(id);
      q.payloads.push_back(std::move(payload));
      cv_.notify_one();
    }
  }
  if (!posted) pending_->Resolve(shard, id, absl::CancelledError("node host stopped"), 0);
}

void NodeHost::ProposeQueued(uint64_t shard, ProposalQueue q) {
  // Entries to propose, each with the ids of the proposals it carries.
  std::vector<std::string> entries;
  std::vector<std::pair<size_t, size_t>> id_ranges;  // [begin, end) in q.ids
  if (config_.pack_proposals) {
    // Packs of up to kMaxPackBytes (a larger proposal goes alone).
    constexpr size_t kMaxPackBytes = 256 << 10;
    size_t begin = 0;
    while (begin < q.ids.size()) {
      size_t end = begin, bytes = kPackHeaderBytes;
      while (end < q.ids.size() &&
             (end == begin || bytes + kPackItemHeaderBytes + q.payloads[end].size() <= kMaxPackBytes)) {
        bytes += kPackItemHeaderBytes + q.payloads[end].size();
        ++end;
      }
      PackWriter pack(config_.node_id, bytes);
      for (size_t i = begin; i < end; ++i) pack.Add(q.ids[i], q.payloads[i]);
      entries.push_back(pack.Take());
      id_ranges.emplace_back(begin, end);
      begin = end;
    }
  } else {
    entries = std::move(q.payloads);
    for (size_t i = 0; i < entries.size(); ++i) id_ranges.emplace_back(i, i + 1);
  }
  // One message, one append and one broadcast per chunk; a chunk is bounded so that a burst
  // stays within the core's uncommitted-bytes limit instead of being refused whole.
  constexpr size_t kMaxChunkEntries = 4096;
  constexpr size_t kMaxChunkBytes = 4 << 20;
  size_t begin = 0;
  while (begin < entries.size()) {
    size_t end = begin, bytes = 0;
    std::vector<std::string> chunk;
    while (end < entries.size() && end - begin < kMaxChunkEntries && bytes < kMaxChunkBytes) {
      bytes += entries[end].size();
      chunk.push_back(std::move(entries[end]));
      ++end;
    }
    auto s = shards_[shard]->raw->ProposeBatch(std::move(chunk));
    if (!s.ok()) {
      for (size_t i = id_ranges[begin].first; i < id_ranges[end - 1].second; ++i) {
        pending_->Resolve(shard, q.ids[i], s, 0);
      }
    }
    begin = end;
  }
}

absl::StatusOr<uint64_t> NodeHost::ProposeAndWait(uint64_t shard, std::string data) {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  absl::Status status;
  uint64_t index = 0;
  Propose(shard, std::move(data), [&](absl::Status s, uint64_t i) {
    std::lock_guard<std::mutex> l(mu);
    status = s;
    index = i;
    done = true;
    cv.notify_one();
  });
  std::unique_lock<std::mutex> l(mu);
  cv.wait(l, [&] { return done; });
  if (!status.ok()) return status;
  return index;
}

void NodeHost::OnApplied(uint64_t shard, uint64_t applied) {
  std::lock_guard<std::mutex> l(info_mu_);
  info_[shard].applied = applied;
}

void NodeHost::OnProposalApplied(uint64_t shard, uint64_t proposal_id, uint64_t index) {
  pending_->Resolve(shard, proposal_id, absl::OkStatus(), index);
}

void NodeHost::OnBacklogBelowLimit(uint64_t shard) {
  Post([] {});  // wake the loop: the shard takes Readys again
}

void NodeHost::OnHalted(uint64_t shard, const std::string& reason) {
  std::lock_guard<std::mutex> l(info_mu_);
  info_[shard].halted = reason;
}

void NodeHost::OnSnapshotTaken(uint64_t shard, v1::SnapshotMetadata meta, std::string file,
                               uint64_t keep) {
  Post([this, shard, keep, meta = std::move(meta), file = std::move(file)] {
    ShardLog* log = shards_[shard]->log;
    auto s = log->SetLocalSnapshot(meta, file);
    if (!s.ok()) {
      // A newer snapshot arrived from the leader meanwhile.
      std::error_code ec;
      std::filesystem::remove(store_->SnapshotDir() + "/" + file, ec);
      return;
    }
    // Compact only what the state machine made durable (the snapshot), keeping some slack.
    const uint64_t target = meta.index() > keep ? meta.index() - keep : 0;
    if (target >= log->FirstIndex()) {
      auto cs = log->Compact(target);
      if (!cs.ok()) LOG(WARNING) << LogPrefix(shard, config_.node_id) << "compact: " << cs;
    }
    VLOG(1) << LogPrefix(shard, config_.node_id) << "snapshot at "
            << meta.index() << ", log now starts at " << log->FirstIndex();
    std::lock_guard<std::mutex> l(info_mu_);
    info_[shard].first_index = log->FirstIndex();
    info_[shard].snapshot_index = meta.index();
  });
}

void NodeHost::RequestSnapshot(uint64_t shard) {
  Post([this, shard] {
    ApplyTask t;
    t.shard = shard;
    t.take_snapshot = true;
    t.conf_after = shards_[shard]->applied_conf;
    shards_[shard]->worker->Enqueue(std::move(t));
  });
}

void NodeHost::TransferLeadership(uint64_t shard, uint64_t transferee) {
  Post([this, shard, transferee] {
    auto s = shards_[shard]->raw->TransferLeader(transferee);
    if (!s.ok()) LOG(WARNING) << LogPrefix(shard, config_.node_id) << "transfer to " << transferee << ": " << s;
  });
}

absl::Status NodeHost::ProposeConfChangeAndWait(uint64_t shard, const v1::ConfChange& cc,
                                                absl::Duration timeout) {
  if (shard >= static_cast<uint64_t>(config_.shards)) return absl::InvalidArgumentError("no shard");
  // Every try names the membership version this node sees when it is made, and the leader
  // appends it only on top of exactly that version (Raft::Step). So a try that arrives late,
  // after another change (say the removal of the learner this adds), is dropped instead of
  // undoing that change, and a try that is in took effect on the membership it was decided on.
  //
  // Done once one of this call's tries has applied here. Not when the membership here merely
  // looks as asked: this node may be behind. A node that has not yet applied "add learner 4"
  // would take "remove 4" as done at once, and 4 would stay (and be promoted).
  //
  // `tries` (the versions tried) is only touched on the loop; the caller shares it with the
  // posted tasks, which may run after it gave up waiting (or never, if the host stops).
  auto tries = std::make_shared<std::set<uint64_t>>();
  auto done = [&] {
    struct Answer {
      std::mutex mu;
      std::condition_variable cv;
      bool ready = false;
      bool applied = false;
    };
    auto answer = std::make_shared<Answer>();
    Post([this, answer, tries, shard, cc] {
      const Shard& sh = *shards_[shard];
      bool applied = false;
      for (uint64_t v : *tries) {
        auto it = sh.recent_conf_changes.find(v + 1);
        if (it == sh.recent_conf_changes.end()) continue;
        const v1::ConfChange& in = it->second;
        applied = applied || (in.type() == cc.type() && in.node_id() == cc.node_id() &&
                              in.has_expected_version() && in.expected_version() == v);
      }
      // The leader refuses to make a voter a learner: a learner promoted meanwhile counts.
      if (cc.type() == v1::CONF_CHANGE_ADD_LEARNER && IsVoter(sh.applied_conf, cc.node_id())) {
        applied = true;
      }
      std::lock_guard<std::mutex> l(answer->mu);
      answer->applied = applied;
      answer->ready = true;
      answer->cv.notify_one();
    });
    std::unique_lock<std::mutex> l(answer->mu);
    answer->cv.wait_for(l, std::chrono::seconds(1), [&] { return answer->ready; });
    return answer->applied;
  };
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    // (Re)propose: a lost or dropped try must be retried, against the membership seen now.
    Post([this, shard, tries, change = cc]() mutable {
      const uint64_t version = shards_[shard]->raw->raft().tracker().conf_version();
      change.set_expected_version(version);
      tries->insert(version);
      auto s = shards_[shard]->raw->ProposeConfChange(change);
      if (!s.ok()) VLOG(1) << LogPrefix(shard, config_.node_id) << "conf change: " << s;
    });
    for (int i = 0; i < 10 && absl::Now() < deadline; ++i) {
      absl::SleepFor(absl::Milliseconds(50));
      if (done()) return absl::OkStatus();
    }
  }
  return absl::DeadlineExceededError(absl::StrCat("shard ", shard, ": membership change of node ",
                                                  cc.node_id(), " not applied in time"));
}

absl::Status NodeHost::AddNode(uint64_t shard, uint64_t node, const std::string& address,
                               absl::Duration timeout) {
  v1::ConfChange cc;
  cc.set_type(v1::CONF_CHANGE_ADD_NODE);
  cc.set_node_id(node);
  cc.set_context(address);
  return ProposeConfChangeAndWait(shard, cc, timeout);
}

absl::Status NodeHost::AddLearner(uint64_t shard, uint64_t node, const std::string& address,
                                  absl::Duration timeout) {
  v1::ConfChange cc;
  cc.set_type(v1::CONF_CHANGE_ADD_LEARNER);
  cc.set_node_id(node);
  cc.set_context(address);
  cc.set_promote_when_caught_up(true);
  return ProposeConfChangeAndWait(shard, cc, timeout);
}

void NodeHost::PromoteCaughtUpLearners() {
  for (auto& shard : shards_) {
    const Raft& r = shard->raw->raft();
    // Cheap for the usual shard: nobody to promote.
    if (r.tracker().learners_to_promote().empty() || r.state() != StateType::kLeader ||
        r.ConfChangePending()) {
      continue;
    }
    uint64_t learner = 0;
    for (uint64_t id : r.tracker().learners_to_promote()) {
      if (r.IsCaughtUp(id, config_.promotion_max_lag)) {
        learner = id;
        break;
      }
    }
    if (learner == 0) continue;
    v1::ConfChange cc;
    cc.set_type(v1::CONF_CHANGE_ADD_NODE);
    cc.set_node_id(learner);
    cc.set_expected_version(r.tracker().conf_version());
    // Members that learnt of the learner from a snapshot learn its address here.
    auto addr = addresses_.find(learner);
    if (addr != addresses_.end()) cc.set_context(addr->second);
    // Dropped during a leadership transfer or with a full uncommitted tail: tried again on a
    // later tick. Once appended, ConfChangePending() holds further tries back until it applies
    // (or a new leader finds the learner still to promote and tries itself).
    auto s = shard->raw->ProposeConfChange(cc);
    if (s.ok()) {
      LOG(INFO) << LogPrefix(shard->id, config_.node_id) << "learner " << learner
                << " caught up (match " << r.tracker().Get(learner)->match << ", commit "
                << r.log().committed() << "), proposing its promotion to voter";
    } else {
      VLOG(1) << LogPrefix(shard->id, config_.node_id) << "promotion of "
              << learner << ": " << s;
    }
  }
}

absl::Status NodeHost::RemoveNode(uint64_t shard, uint64_t node, absl::Duration timeout) {
  v1::ConfChange cc;
  cc.set_type(v1::CONF_CHANGE_REMOVE_NODE);
  cc.set_node_id(node);
  return ProposeConfChangeAndWait(shard, cc, timeout);
}

std::map<uint64_t, std::string> NodeHost::PeerAddresses() const {
  std::lock_guard<std::mutex> l(info_mu_);
  return published_addresses_;
}

ShardInfo NodeHost::GetShardInfo(uint64_t shard) const {
  std::lock_guard<std::mutex> l(info_mu_);
  return info_.at(shard);
}

}  // namespace marmot::raft::host
