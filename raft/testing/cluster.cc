#include "raft/testing/cluster.h"

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace marmot::raft::testing {

std::string Describe(const v1::Message& m) {
  return absl::StrCat(v1::MessageType_Name(m.type()), " ", m.from(), "->", m.to(),
                      " term=", m.term(), " log_term=", m.log_term(), " index=", m.index(),
                      " entries=", m.entries_size(), " commit=", m.commit(),
                      m.reject() ? " reject" : "", m.has_snapshot() ? " snap@" : "",
                      m.has_snapshot() ? absl::StrCat(m.snapshot().metadata().index()) : "");
}

Config Cluster::DefaultConfig() {
  Config c;
  c.election_tick = 10;
  c.heartbeat_tick = 1;
  c.max_size_per_msg = 1 << 20;
  c.max_inflight_msgs = 256;
  return c;
}

v1::ConfState Cluster::Voters(std::initializer_list<uint64_t> ids) {
  v1::ConfState cs;
  for (uint64_t id : ids) cs.add_voters(id);
  return cs;
}

Cluster::Cluster(int n, Config base) : base_(base) {
  v1::ConfState cs;
  for (int i = 1; i <= n; ++i) cs.add_voters(i);
  for (int i = 1; i <= n; ++i) AddNode(i, MemoryLogStorage::Bootstrap(cs));
}

TestNode& Cluster::AddNode(uint64_t id, MemoryLogStorage storage) {
  Config c = base_;
  c.random_seed = base_.random_seed * 1000 + id;
  auto node = std::make_unique<TestNode>(id, std::move(storage), c);
  TestNode& ref = *node;
  nodes_[id] = std::move(node);
  return ref;
}

std::vector<uint64_t> Cluster::ids() const {
  std::vector<uint64_t> out;
  for (const auto& [id, n] : nodes_) out.push_back(id);
  return out;
}

bool Cluster::Blocked(const v1::Message& m) const {
  if (cut_.count({m.from(), m.to()})) return true;
  if (dropped_types_.count(m.type())) return true;
  if (filter_ && !filter_(m)) return true;
  return false;
}

void Cluster::Deliver(v1::Message m) {
  auto it = nodes_.find(m.to());
  if (it == nodes_.end() || !it->second->alive()) return;
  const bool is_snap = m.type() == v1::MSG_SNAP;
  const uint64_t from = m.from(), to = m.to();
  (void)it->second->raw().Step(std::move(m));
  if (is_snap) {
    // The transport tells the sender the snapshot arrived.
    auto f = nodes_.find(from);
    if (f != nodes_.end() && f->second->alive()) {
      f->second->raw().ReportSnapshot(to, SnapshotStatus::kFinish);
    }
  }
}

void Cluster::DeliverQueued() {
  std::deque<v1::Message> q;
  q.swap(queue_);
  for (auto& m : q) {
    if (Blocked(m)) {
      if (m.type() == v1::MSG_SNAP) {
        auto f = nodes_.find(m.from());
        if (f != nodes_.end() && f->second->alive()) {
          f->second->raw().ReportSnapshot(m.to(), SnapshotStatus::kFailure);
        }
      }
      continue;
    }
    Deliver(std::move(m));
  }
}

bool Cluster::HandleReadys() {
  bool any = false;
  for (auto& [id, n] : nodes_) {
    if (!n->alive()) continue;
    std::vector<v1::Message> out;
    if (!n->HandleReady(&out)) continue;
    any = true;
    for (auto& m : out) queue_.push_back(std::move(m));
  }
  return any;
}

void Cluster::Settle() {
  for (int round = 0; round < 10000; ++round) {
    const bool readys = HandleReadys();
    if (!readys && queue_.empty()) return;
    DeliverQueued();
  }
  LOG(FATAL) << "cluster did not settle";
}

void Cluster::Tick(uint64_t id, int n) {
  for (int i = 0; i < n; ++i) {
    if (node(id).alive()) raw(id).Tick();
    Settle();
  }
}

void Cluster::TickAll(int n) {
  for (int i = 0; i < n; ++i) {
    for (auto& [id, node] : nodes_) {
      if (node->alive()) node->raw().Tick();
    }
    Settle();
  }
}

void Cluster::ExpireLease(uint64_t id) {
  Raft& r = raw(id).mutable_raft();
  const int saved = r.randomized_election_timeout();
  r.set_randomized_election_timeout(1 << 30);
  for (int i = 0; i < base_.election_tick; ++i) r.Tick();
  r.set_randomized_election_timeout(saved);
  Settle();
}

void Cluster::Campaign(uint64_t id) {
  (void)raw(id).Campaign();
  Settle();
}

void Cluster::ElectLeader(uint64_t id) {
  Campaign(id);
  CHECK(raft(id).state() == StateType::kLeader) << raft(id).DebugString();
}

absl::Status Cluster::Propose(uint64_t id, std::string data) {
  auto s = raw(id).Propose(std::move(data));
  Settle();
  return s;
}

absl::Status Cluster::ProposeConfChange(uint64_t id, v1::ConfChangeType type, uint64_t node) {
  v1::ConfChange cc;
  cc.set_type(type);
  cc.set_node_id(node);
  auto s = raw(id).ProposeConfChange(cc);
  Settle();
  return s;
}

uint64_t Cluster::Leader() {
  uint64_t best = 0, best_term = 0;
  for (auto& [id, n] : nodes_) {
    if (!n->alive()) continue;
    if (n->raft().state() == StateType::kLeader && n->raft().term() >= best_term) {
      best = id;
      best_term = n->raft().term();
    }
  }
  return best;
}

void Cluster::Cut(uint64_t a, uint64_t b) {
  cut_.insert({a, b});
  cut_.insert({b, a});
}

void Cluster::CutOneWay(uint64_t from, uint64_t to) { cut_.insert({from, to}); }

void Cluster::Isolate(uint64_t id) {
  for (auto& [other, n] : nodes_) {
    if (other != id) Cut(id, other);
  }
}

void Cluster::Heal() {
  cut_.clear();
  dropped_types_.clear();
  filter_ = nullptr;
}

void Cluster::Restart(uint64_t id) {
  nodes_.at(id)->Restart(base_.random_seed * 1000 + id + 7919 * ++restarts_);
}

}  // namespace marmot::raft::testing
