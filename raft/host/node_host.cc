#include "raft/host/node_host.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "raft/errors.h"
#include "raft/host/grpc_transport.h"
#include "raft/host/host_meta.h"
#include "raft/host/node_incarnation.h"
#include "raft/host/proposal_batches.h"
#include "raft/host/proposal_codec.h"
#include "raft/host/sender_policy.h"
#include "raft/host/shard_recovery.h"
#include "raft/host/snapshot_payloads.h"
#include "raft/host/storage_failure.h"
#include "raft/log_prefix.h"

namespace marmot::raft::host {

namespace {

// A proposal's timeout grows by a second per this many bytes of payload (see Propose).
constexpr double kTimeoutBytesPerSecond = 8 << 20;

// A resuming shard's entries are read from the log again in parts of about this size.
constexpr uint64_t kReplayBytes = 8 << 20;

// Adds committed entry `e` to `task` as the state machine sees it: an empty AppliedEntry for a
// conf change or an empty entry, its payloads for a proposal (several for a pack), whose bytes
// move. This node's proposals among them go to task.mine. `decoded`: scratch space.
void AddCommittedEntry(uint64_t me, uint64_t shard, v1::Entry& e, ApplyTask& task,
                       std::vector<DecodedProposal>& decoded) {
  AppliedEntry ae;
  ae.index = e.index();
  ae.term = e.term();
  if (e.type() != v1::ENTRY_CONF_CHANGE && !e.data().empty()) {
    uint64_t proposer = 0;
    auto ds = DecodeProposals(std::move(*e.mutable_data()), &proposer, &decoded);
    if (!ds.ok()) {
      LOG(ERROR) << LogPrefix(shard, me) << "entry " << e.index()
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

}  // namespace

NodeHost::NodeHost(NodeHostConfig config, std::unique_ptr<RocksLogStore> store)
    : config_(std::move(config)), store_(std::move(store)) {}

absl::StatusOr<std::unique_ptr<NodeHost>> NodeHost::Start(NodeHostConfig config,
                                                          std::unique_ptr<RocksLogStore> store,
                                                          TransportFactory transport,
                                                          StateMachineFactory factory) {
  if (config.node_id == 0) return absl::InvalidArgumentError("node id must be positive");
  if (config.shards <= 0) return absl::InvalidArgumentError("shard count must be positive");
  if (store == nullptr || store->shard_count() != config.shards) {
    return absl::InvalidArgumentError(absl::StrCat(
        "node ", config.node_id, ": the log store is not open for ", config.shards, " shards"));
  }
  std::unique_ptr<NodeHost> host(new NodeHost(std::move(config), std::move(store)));
  auto s = host->Init(std::move(transport), std::move(factory));
  if (!s.ok()) return s;
  return host;
}

absl::Status NodeHost::Init(TransportFactory transport, StateMachineFactory factory) {
  const uint64_t me = config_.node_id;

  absl::StatusOr<HostMeta> meta = StartHostMeta(*store_, config_);
  if (!meta.ok()) return meta.status();
  pending_ = std::make_unique<PendingProposals>(config_.shards, (meta->run << 40) + 1);
  removed_ = std::move(meta->removed);

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
  wo.env = config_.env;
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
    absl::StatusOr<RecoveredShard> recovered =
        RecoverShard(me, s, *shard->log, *sm, store_->SnapshotDir());
    if (!recovered.ok()) return recovered.status();
    shard->applied_conf = recovered->conf;
    const uint64_t snapshot_index = shard->log->snapshot_metadata().index();
    Config c;
    c.id = me;
    c.shard = s;
    c.election_tick = config_.election_ticks;
    c.heartbeat_tick = config_.heartbeat_ticks;
    c.align_heartbeats = true;  // one batch of heartbeats per peer per interval
    c.storage = shard->log;
    // A halted shard's core starts as if the snapshot were installed; nothing is applied.
    c.applied = std::max(recovered->applied, snapshot_index);
    c.random_seed = (me << 32) ^ (static_cast<uint64_t>(s) * 0x9e3779b97f4a7c15ull);
    auto raw = RawNode::Create(c);
    if (!raw.ok()) return raw.status();
    shard->raw = std::move(*raw);
    shard->worker->AddShard(s, std::move(sm), recovered->applied, recovered->applied_term,
                            recovered->conf, snapshot_index, !recovered->halted.empty());
    info_[s].applied = recovered->applied;
    info_[s].halted = recovered->halted;
    shards_.push_back(std::move(shard));
  }
  absl::StatusOr<std::shared_ptr<ClusterIdentity>> cluster =
      LoadClusterIdentity(*store_, me, shards_[0]->applied_conf);
  if (!cluster.ok()) return cluster.status();
  cluster_ = *std::move(cluster);
  transport_ = transport(cluster_);
  if (transport_ == nullptr) return absl::InvalidArgumentError("the transport factory gave none");
  grpc_ = dynamic_cast<GrpcTransport*>(transport_.get());
  for (const auto& [id, addr] : meta->addresses) {
    if (id != me) transport_->SetPeerAddress(id, addr);
  }
  addresses_ = std::move(meta->addresses);
  {
    std::lock_guard<std::mutex> l(info_mu_);
    published_addresses_ = addresses_;
  }

  auto ts = transport_->Start(this);
  if (!ts.ok()) return ts;
  for (auto& w : workers_) w->Start();
  loop_ = std::thread([this] { RunLoop(); });
  LOG(INFO) << "[node " << me << "] node host started: " << config_.shards << " shards, "
            << nworkers << " apply workers, raft path " << store_->dir();
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

void NodeHost::HandleUnreachable(uint64_t node) {
  if (config_.observer != nullptr) config_.observer->OnPeerUnreachable(node);
  Post([this, node] {
    for (auto& s : shards_) s->raw->ReportUnreachable(node);
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
      LOG(WARNING) << LogPrefix(m.shard(), config_.node_id) << allowed.message() << " (" << n
                   << " refused so far)";
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
  Env* env = config_.env;
  absl::Time next_tick = env->MonotonicNow() + tick;
  absl::Time next_expiry = env->MonotonicNow() + absl::Milliseconds(100);
  for (;;) {
    std::vector<v1::Message> in;
    std::vector<std::function<void()>> tasks;
    std::vector<std::pair<uint64_t, ProposalQueue>> proposals;
    {
      std::unique_lock<std::mutex> l(mu_);
      env->WaitUntil(l, cv_, next_tick, [this] {
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
    const absl::Time now = env->MonotonicNow();
    if (now >= next_tick) {
      for (auto& s : shards_) {
        s->raw->Tick();
        if (s->resume_at <= now) EnqueueResume(*s);  // a wait's bound passed
      }
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
    if (!cs.ok()) ExitOnStorageFailure(config_.node_id, store_->dir(), "log write", cs);
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
        ExitOnStorageFailure(me, store_->dir(), "snapshot write", s);
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
  const absl::Time write_start = config_.env->MonotonicNow();
  auto cs = store_->Commit(sync);
  if (!cs.ok()) ExitOnStorageFailure(me, store_->dir(), "log write", cs);
  if (config_.observer != nullptr)
    config_.observer->OnLogWrite(config_.env->MonotonicNow() - write_start, sync);
  if (!late.empty()) transport_->Send(std::move(late));
}

ApplyTask NodeHost::TaskFromReady(Shard& shard, Ready& rd, std::vector<DecodedProposal>& decoded) {
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
    absl::StatusOr<std::shared_ptr<SnapshotSource>> payload =
        OpenRecordedPayload(store_->SnapshotDir(), rd.snapshot->data());
    if (!payload.ok()) {
      ExitOnStorageFailure(me, store_->dir(), "snapshot read", payload.status());
    }
    task.payload = *std::move(payload);
    task.snapshot = std::move(*rd.snapshot);
  }
  for (auto& e : rd.committed_entries) {
    if (e.index() <= snap_index) continue;
    if (e.type() == v1::ENTRY_CONF_CHANGE) {
      v1::ConfChange cc;
      if (!cc.ParseFromString(e.data())) {
        LOG(ERROR) << LogPrefix(shard.id, me) << "undecodable conf change at " << e.index()
                   << ", skipped";
      } else {
        ApplyConfChange(shard, cc);
      }
    }
    // The Ready is ours: payloads move to the task where they can.
    AddCommittedEntry(me, shard.id, e, task, decoded);
  }
  task.conf_after = shard.applied_conf;
  return task;
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
    const std::string why =
        absl::StrCat("a proposal of ", data.size(), " bytes is larger than a Raft entry may be (",
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
  const uint64_t id = pending_->Add(shard, std::move(done), config_.env->MonotonicNow() + timeout);
  // Packs are framed on the loop, when it knows which proposals go together.
  std::string payload =
      config_.pack_proposals ? std::move(data) : EncodeSingle(config_.node_id, id, data);
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
  QueuedEntries queued =
      EntriesOfQueue(config_.node_id, config_.pack_proposals, q.ids, std::move(q.payloads));
  for (auto [begin, end] : ProposeChunks(queued.entries)) {
    std::vector<std::string> chunk(std::make_move_iterator(queued.entries.begin() + begin),
                                   std::make_move_iterator(queued.entries.begin() + end));
    auto s = shards_[shard]->raw->ProposeBatch(std::move(chunk));
    if (s.ok()) continue;
    for (size_t i = queued.proposals[begin].first; i < queued.proposals[end - 1].second; ++i) {
      pending_->Resolve(shard, q.ids[i], s, 0);
    }
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
  {
    std::lock_guard<std::mutex> l(info_mu_);
    info_[shard].halted = reason;
    info_[shard].waiting.clear();
  }
  // A halt is not a wait: no bound resumes it (a wake of an earlier wait may have posted one
  // after the resume that ended that wait).
  Post([this, shard] { shards_[shard]->resume_at = absl::InfiniteFuture(); });
}

void NodeHost::OnWaiting(uint64_t shard, const std::string& reason, absl::Duration at_most) {
  {
    std::lock_guard<std::mutex> l(info_mu_);
    info_[shard].waiting = reason;
    info_[shard].halted.clear();
  }
  Post([this, shard, at_most] {
    shards_[shard]->resume_at = config_.env->MonotonicNow() + at_most;
  });
}

void NodeHost::OnReplayNeeded(uint64_t shard, uint64_t from, uint64_t through) {
  Post([this, shard, from, through] { EnqueueReplay(*shards_[shard], from, through); });
}

void NodeHost::OnResumed(uint64_t shard) {
  LOG(INFO) << LogPrefix(shard, config_.node_id) << "resumed";
  {
    std::lock_guard<std::mutex> l(info_mu_);
    info_[shard].halted.clear();
    info_[shard].waiting.clear();
  }
  // Posted in the worker's order: a wait it reports later sets its own bound after this.
  Post([this, shard] { shards_[shard]->resume_at = absl::InfiniteFuture(); });
}

void NodeHost::ResumeShard(uint64_t shard) {
  if (shard >= static_cast<uint64_t>(config_.shards)) return;
  Post([this, shard] { EnqueueResume(*shards_[shard]); });
}

void NodeHost::EnqueueResume(Shard& s) {
  s.resume_at = absl::InfiniteFuture();
  // Every Ready handed out so far is queued before this task, and nothing of a later one.
  ApplyTask task;
  task.kind = ApplyTask::Kind::kResume;
  task.shard = s.id;
  task.handed = s.raw->raft().log().applied();
  task.handed_term = s.raw->raft().log().ZeroTermOnError(task.handed);
  task.conf_after = s.applied_conf;
  s.worker->Enqueue(std::move(task));
}

void NodeHost::EnqueueReplay(Shard& shard, uint64_t from, uint64_t through) {
  ApplyTask task;
  task.kind = ApplyTask::Kind::kReplay;
  task.shard = shard.id;
  const ShardLog& log = *shard.log;
  if (from < log.FirstIndex()) {
    // Behind the log's start (the state machine holds less than the log's snapshot, or a
    // snapshot from the leader replaced the log meanwhile): the snapshot covers them.
    absl::StatusOr<v1::Snapshot> snapshot = log.Snapshot();
    absl::StatusOr<std::shared_ptr<SnapshotSource>> payload =
        snapshot.ok() ? OpenRecordedPayload(store_->SnapshotDir(), snapshot->data())
                      : absl::StatusOr<std::shared_ptr<SnapshotSource>>(snapshot.status());
    if (payload.ok()) {
      task.snapshot = *std::move(snapshot);
      task.payload = *std::move(payload);
    } else {
      task.replay_error = payload.status();
    }
  } else if (from > log.LastIndex()) {
    task.replay_error = absl::InternalError(
        absl::StrCat("entry ", from, " is past the log's end (", log.LastIndex(), ")"));
  } else {
    absl::StatusOr<std::vector<v1::Entry>> entries =
        log.Entries(from, std::min(through, log.LastIndex()) + 1, kReplayBytes);
    if (entries.ok()) {
      std::vector<DecodedProposal> decoded;
      for (v1::Entry& e : *entries) AddCommittedEntry(config_.node_id, shard.id, e, task, decoded);
    } else {
      task.replay_error = entries.status();
    }
  }
  shard.worker->Enqueue(std::move(task));
}

void NodeHost::TransferLeadership(uint64_t shard, uint64_t transferee) {
  Post([this, shard, transferee] {
    auto s = shards_[shard]->raw->TransferLeader(transferee);
    if (!s.ok()) {
      LOG(WARNING) << LogPrefix(shard, config_.node_id) << "transfer to " << transferee << ": "
                   << s;
    }
  });
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
