#include "raft/testing/simulator.h"

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "glog/logging.h"
#include "proto/raft.pb.h"
#include "raft/raw_node.h"
#include "raft/testing/cluster.h"
#include "raft/testing/test_node.h"

namespace marmot::raft::testing {
namespace {

struct InFlight {
  uint64_t deliver_at;
  v1::Message msg;
};

class Sim;
// The run in progress, so that a CHECK failure inside the core still prints the seed and the
// trace tail before aborting. Only the simulator's own thread touches it.
Sim* current_sim = nullptr;

class Sim {
 public:
  explicit Sim(const SimOptions& o) : opt_(o), rng_(o.seed) {
    n_ = o.nodes > 0 ? o.nodes : (Rand(2) == 0 ? 3 : 5);
    v1::ConfState cs;
    for (int i = 1; i <= n_; ++i) cs.add_voters(i);
    // Bootstrap snapshot data: the empty state machine. Index 1 has hash 0 everywhere.
    applied_[1] = {1, 0};
    for (int i = 1; i <= n_; ++i) AddNode(i, MemoryLogStorage::Bootstrap(cs));
    next_id_ = n_ + 1;
  }

  SimResult Run() {
    current_sim = this;
    google::InstallFailureFunction(&Sim::OnCheckFailure);
    for (; result_.events < static_cast<uint64_t>(opt_.events) && result_.ok; ++result_.events) {
      Step();
      CheckInvariants();
    }
    if (result_.ok) Liveness();
    current_sim = nullptr;
    if (opt_.keep_trace) result_.trace = TraceTail();
    result_.max_term = max_term_;
    result_.committed = applied_.empty() ? 0 : applied_.rbegin()->first;
    return result_;
  }

 private:
  uint64_t Rand(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool Chance(int percent) { return static_cast<int>(Rand(100)) < percent; }

  static void OnCheckFailure() {
    if (current_sim != nullptr) {
      fprintf(stderr, "simulator: seed %llu crashed in a CHECK after event %llu\n%s",
              static_cast<unsigned long long>(current_sim->opt_.seed),
              static_cast<unsigned long long>(current_sim->result_.events),
              current_sim->TraceTail().c_str());
    }
    abort();
  }

  void Trace(std::string line) {
    trace_.push_back(absl::StrCat("[e", result_.events, " t", now_, "] ", line));
    if (trace_.size() > static_cast<size_t>(opt_.trace_tail)) trace_.pop_front();
  }

  std::string TraceTail() const {
    std::string s = "--- trace tail ---\n";
    for (const auto& l : trace_) absl::StrAppend(&s, l, "\n");
    for (const auto& [id, n] : nodes_) {
      absl::StrAppend(&s, "node ", id, ": ",
                      n->alive() ? n->raft().DebugString() : std::string("crashed"),
                      " sm.applied=", n->sm().applied, "\n");
    }
    return s;
  }

  void Fail(const std::string& what) {
    if (!result_.ok) return;
    result_.ok = false;
    result_.failure =
        absl::StrCat("seed ", opt_.seed, ": invariant violated: ", what, "\n", TraceTail());
  }

  // ------------------------------------------------------------------------------------------
  // Nodes.

  void AddNode(uint64_t id, MemoryLogStorage storage) {
    Config c = Cluster::DefaultConfig();
    c.heartbeat_tick = 2;
    c.random_seed = rng_();
    // Small, sometimes one entry per message: catch-up takes several round trips, and a new
    // leader's old-term entries travel (and get acknowledged) apart from its own entries, as
    // in the paper's figure 8.
    c.max_size_per_msg = Chance(50) ? 1 + Rand(64) : 4 * 1024;
    c.max_inflight_msgs = 4 + Rand(16);
    c.max_uncommitted_entries_size = 1 << 16;
    TestNode::Hooks hooks;
    hooks.on_apply = [this](uint64_t node, const v1::Entry& e, const StateMachine& sm) {
      OnApply(node, e, sm);
    };
    hooks.on_install_snapshot = [this](uint64_t node, const v1::Snapshot& s,
                                       const StateMachine& sm) { OnInstall(node, s, sm); };
    hooks.on_persist = [this](uint64_t node, const std::vector<v1::Entry>& es) {
      OnPersist(node, es);
    };
    nodes_[id] = std::make_unique<TestNode>(id, std::move(storage), c, hooks);
    last_applied_[id] = nodes_[id]->sm().applied;
  }

  std::vector<uint64_t> Alive() const {
    std::vector<uint64_t> out;
    for (const auto& [id, n] : nodes_) {
      if (n->alive()) out.push_back(id);
    }
    return out;
  }

  uint64_t Leader() const {
    uint64_t best = 0, best_term = 0;
    for (const auto& [id, n] : nodes_) {
      if (n->alive() && n->raft().state() == StateType::kLeader && n->raft().term() >= best_term) {
        best = id;
        best_term = n->raft().term();
      }
    }
    return best;
  }

  // ------------------------------------------------------------------------------------------
  // Network.

  void SendAll(std::vector<v1::Message>& out) {
    for (auto& m : out) {
      ++result_.messages;
      if (faults_ && Chance(3)) {
        Trace("drop " + Describe(m));
        if (m.type() == v1::MSG_SNAP) ReportSnap(m, SnapshotStatus::kFailure);
        continue;
      }
      const uint64_t delay = faults_ ? Rand(3) : 0;
      if (faults_ && Chance(2)) net_.push_back({now_ + Rand(4), m});  // duplicate
      net_.push_back({now_ + delay, std::move(m)});
    }
    out.clear();
  }

  void ReportSnap(const v1::Message& m, SnapshotStatus st) {
    auto it = nodes_.find(m.from());
    if (it != nodes_.end() && it->second->alive()) it->second->raw().ReportSnapshot(m.to(), st);
  }

  // Delivers one message whose time has come, picked at random among them (reordering).
  bool DeliverOne(uint64_t only_to = 0) {
    std::vector<size_t> ready;
    for (size_t i = 0; i < net_.size() && ready.size() < 16; ++i) {
      if (net_[i].deliver_at <= now_ && (only_to == 0 || net_[i].msg.to() == only_to)) {
        ready.push_back(i);
      }
    }
    if (ready.empty()) return false;
    const size_t k = faults_ ? ready[Rand(ready.size())] : ready[0];
    v1::Message m = std::move(net_[k].msg);
    net_.erase(net_.begin() + k);
    if (cut_.count({m.from(), m.to()})) {
      Trace("cut " + Describe(m));
      if (m.type() == v1::MSG_SNAP) ReportSnap(m, SnapshotStatus::kFailure);
      if (Chance(20)) {
        auto it = nodes_.find(m.from());
        if (it != nodes_.end() && it->second->alive()) it->second->raw().ReportUnreachable(m.to());
      }
      return true;
    }
    auto it = nodes_.find(m.to());
    if (it == nodes_.end() || !it->second->alive()) {
      if (m.type() == v1::MSG_SNAP) ReportSnap(m, SnapshotStatus::kFailure);
      return true;
    }
    Trace("deliver " + Describe(m));
    const bool snap = m.type() == v1::MSG_SNAP;
    v1::Message copy_for_report;
    if (snap) {
      copy_for_report.set_from(m.from());
      copy_for_report.set_to(m.to());
    }
    (void)it->second->raw().Step(std::move(m));
    if (snap) ReportSnap(copy_for_report, SnapshotStatus::kFinish);
    return true;
  }

  void Tick() {
    ++now_;
    ++result_.ticks;
    if (Leader() == 0) ++result_.leaderless_ticks;
    for (auto& [id, n] : nodes_) {
      if (n->alive()) n->raw().Tick();
    }
  }

  bool HandleReady(uint64_t id) {
    TestNode& n = *nodes_[id];
    std::vector<v1::Message> out;
    const size_t reads_before = n.read_states().size();
    if (!n.HandleReady(&out)) return false;
    Trace(absl::StrCat("ready node ", id, " -> ", out.size(), " msgs, applied ", n.sm().applied));
    for (size_t i = reads_before; i < n.read_states().size(); ++i)
      OnReadState(id, n.read_states()[i]);
    SendAll(out);
    return true;
  }

  // ------------------------------------------------------------------------------------------
  // The chaos phase.

  void Step() {
    const uint64_t r = Rand(1000);
    if (r < 450) {
      if (!DeliverBatch()) Tick();
    } else if (r < 700) {
      ReadyOfRandomNode();
    } else if (r < 750) {
      Trace("tick");
      Tick();
    } else if (r < 810) {
      Propose();
    } else if (r < 816) {
      auto alive = Alive();
      if (alive.size() > 1) {
        uint64_t id = alive[Rand(alive.size())];
        Trace(absl::StrCat("CRASH node ", id));
        nodes_[id]->Crash();
        ++result_.crashes;
      }
    } else if (r < 830) {
      std::vector<uint64_t> down;
      for (auto& [id, n] : nodes_) {
        if (!n->alive()) down.push_back(id);
      }
      if (!down.empty()) {
        uint64_t id = down[Rand(down.size())];
        Trace(absl::StrCat("RESTART node ", id));
        nodes_[id]->Restart(rng_());
      }
    } else if (r < 837) {
      ChangePartition();
    } else if (r < 862) {
      if (opt_.compaction) {
        auto alive = Alive();
        uint64_t id = alive[Rand(alive.size())];
        const uint64_t keep = Rand(8);
        Trace(absl::StrCat("compact node ", id, " at applied ", nodes_[id]->sm().applied, " keep ",
                           keep));
        nodes_[id]->SnapshotAndCompact(keep);
      }
    } else if (r < 882) {
      if (opt_.membership_churn) ConfChange();
    } else if (r < 892) {
      if (opt_.transfer_churn) Transfer();
    } else if (r < 912) {
      Read();
    } else {
      ReadyOfRandomNode();
    }
  }

  void ReadyOfRandomNode() {
    auto alive = Alive();
    // Handle a Ready of a random node; nodes with nothing to do are skipped.
    const size_t start = Rand(alive.size());
    for (size_t k = 0; k < alive.size(); ++k) {
      if (HandleReady(alive[(start + k) % alive.size()])) break;
    }
  }

  // One node receives a few of the messages that reached it, in random order.
  bool DeliverBatch() {
    std::vector<uint64_t> dests;
    for (const auto& f : net_) {
      if (f.deliver_at <= now_) dests.push_back(f.msg.to());
    }
    if (dests.empty()) return false;
    const uint64_t to = dests[Rand(dests.size())];
    const int n = 1 + Rand(8);
    for (int i = 0; i < n; ++i) {
      if (!DeliverOne(to)) break;
    }
    return true;
  }

  void Propose() {
    auto alive = Alive();
    uint64_t id = Leader();
    if (id == 0 || Chance(30)) id = alive[Rand(alive.size())];
    std::string data = absl::StrCat("v", ++proposals_, "@", id);
    // Vary the size: some entries are big enough to split messages.
    if (Chance(5)) data.append(1500 + Rand(3000), 'x');
    auto s = nodes_[id]->raw().Propose(data);
    ++(s.ok() ? result_.proposals_accepted : result_.proposals_dropped);
    Trace(absl::StrCat("propose ", data.substr(0, 16), " at ", id, ": ",
                       s.ok() ? "ok" : std::string(s.message())));
  }

  void ChangePartition() {
    cut_.clear();
    if (Chance(40)) {
      Trace("heal");
      return;
    }
    std::vector<uint64_t> ids;
    for (auto& [id, n] : nodes_) ids.push_back(id);
    std::set<uint64_t> side;
    for (uint64_t id : ids) {
      if (Chance(40)) side.insert(id);
    }
    const bool one_way = Chance(30);
    for (uint64_t a : side) {
      for (uint64_t b : ids) {
        if (side.count(b)) continue;
        cut_.insert({a, b});
        if (!one_way) cut_.insert({b, a});
      }
    }
    Trace(absl::StrCat("partition {", absl::StrJoin(side, ","), "}", one_way ? " one-way" : ""));
  }

  void ConfChange() {
    const uint64_t lead = Leader();
    if (lead == 0) return;
    TestNode& l = *nodes_[lead];
    const v1::ConfState cs = l.raft().tracker().ConfState();
    v1::ConfChange cc;
    const uint64_t r = Rand(100);
    if (r < 35 && next_id_ <= static_cast<uint64_t>(n_) + 6) {
      cc.set_type(Chance(50) ? v1::CONF_CHANGE_ADD_NODE : v1::CONF_CHANGE_ADD_LEARNER);
      cc.set_node_id(next_id_);
    } else if (r < 60 && cs.learners_size() > 0) {
      cc.set_type(v1::CONF_CHANGE_ADD_NODE);  // promote
      cc.set_node_id(cs.learners(Rand(cs.learners_size())));
    } else if (cs.voters_size() + cs.learners_size() > 3) {
      cc.set_type(v1::CONF_CHANGE_REMOVE_NODE);
      const int k = Rand(cs.voters_size() + cs.learners_size());
      cc.set_node_id(k < cs.voters_size() ? cs.voters(k) : cs.learners(k - cs.voters_size()));
    } else {
      return;
    }
    auto s = l.raw().ProposeConfChange(cc);
    Trace(absl::StrCat("conf change ", v1::ConfChangeType_Name(cc.type()), " ", cc.node_id(),
                       " at ", lead, ": ", s.ok() ? "ok" : std::string(s.message())));
    if (s.ok()) {
      ++result_.conf_changes;
      if (cc.node_id() == next_id_) {
        AddNode(next_id_, MemoryLogStorage());
        ++next_id_;
      }
    }
  }

  void Transfer() {
    const uint64_t lead = Leader();
    if (lead == 0) return;
    const v1::ConfState cs = nodes_[lead]->raft().tracker().ConfState();
    if (cs.voters_size() == 0) return;
    const uint64_t to = cs.voters(Rand(cs.voters_size()));
    auto s = nodes_[lead]->raw().TransferLeader(to);
    ++result_.transfers;
    Trace(absl::StrCat("transfer ", lead, " -> ", to, ": ",
                       s.ok() ? "ok" : std::string(s.message())));
  }

  void Read() {
    auto alive = Alive();
    const uint64_t id = alive[Rand(alive.size())];
    const std::string ctx = absl::StrCat("r", ++reads_);
    // Linearizability: whatever was committed (applied anywhere) before the request must be
    // visible at the read index.
    read_floor_[ctx] = applied_.empty() ? 0 : applied_.rbegin()->first;
    auto s = nodes_[id]->raw().ReadIndex(ctx);
    Trace(absl::StrCat("read ", ctx, " at ", id, ": ", s.ok() ? "ok" : std::string(s.message())));
  }

  // ------------------------------------------------------------------------------------------
  // Invariants.

  void OnPersist(uint64_t node, const std::vector<v1::Entry>& es) {
    const MemoryLogStorage& st = nodes_[node]->storage();
    for (const auto& e : es) {
      uint64_t prev_term = 0;
      bool have_prev = false;
      if (e.index() >= st.FirstIndex()) {
        auto t = st.Term(e.index() - 1);
        if (t.ok()) {
          prev_term = *t;
          have_prev = true;
        }
      }
      const uint64_t h = ChainHash(e.type(), 0, 0, e.data());
      auto key = std::make_pair(e.index(), e.term());
      auto it = entries_.find(key);
      if (it == entries_.end()) {
        entries_[key] = {have_prev ? prev_term : UINT64_MAX, h};
        continue;
      }
      if (it->second.second != h) {
        Fail(absl::StrCat("log matching: node ", node, " persisted a different entry at index ",
                          e.index(), " term ", e.term()));
      }
      if (have_prev) {
        if (it->second.first == UINT64_MAX) {
          it->second.first = prev_term;
        } else if (it->second.first != prev_term) {
          Fail(absl::StrCat("log matching: node ", node, " has entry ", e.index(), "/", e.term(),
                            " after term ", prev_term, ", another node after term ",
                            it->second.first));
        }
      }
    }
  }

  void OnApply(uint64_t node, const v1::Entry& e, const StateMachine& sm) {
    uint64_t& last = last_applied_[node];
    if (e.index() != last + 1) {
      Fail(absl::StrCat("node ", node, " applied index ", e.index(), " after ", last));
    }
    last = e.index();
    auto it = applied_.find(e.index());
    if (it == applied_.end()) {
      applied_[e.index()] = {e.term(), sm.hash};
    } else if (it->second.first != e.term() || it->second.second != sm.hash) {
      Fail(absl::StrCat("state machine safety: node ", node, " applied ", e.index(), "/", e.term(),
                        " hash ", sm.hash, " but another node applied ", it->second.first, " hash ",
                        it->second.second));
    }
  }

  void OnInstall(uint64_t node, const v1::Snapshot& s, const StateMachine& sm) {
    ++result_.snapshots_installed;
    const uint64_t idx = s.metadata().index();
    uint64_t& last = last_applied_[node];
    if (idx <= last) {
      Fail(absl::StrCat("node ", node, " installed snapshot ", idx, " at applied ", last));
    }
    last = idx;
    auto it = applied_.find(idx);
    if (it != applied_.end() && it->second.second != sm.hash) {
      Fail(absl::StrCat("state machine safety: node ", node, " installed snapshot at ", idx,
                        " with hash ", sm.hash, " but ", it->second.second, " was applied"));
    }
    Trace(absl::StrCat("node ", node, " installed snapshot ", idx));
  }

  void OnReadState(uint64_t node, const ReadState& rs) {
    ++result_.reads_served;
    auto it = read_floor_.find(rs.request_ctx);
    if (it == read_floor_.end()) return;
    if (rs.index < it->second) {
      Fail(absl::StrCat("read index: node ", node, " got index ", rs.index, " for ", rs.request_ctx,
                        " but ", it->second, " was committed before"));
    }
    read_floor_.erase(it);
  }

  // Committed entries survive any minority crash: for every entry some node applied, every
  // quorum of the configurations that can elect a leader (the applied one of the most
  // advanced state machine, and the current leader's latest one) contains a node that holds
  // it on disk, in its log or under its snapshot. Such a node refuses its vote to a candidate
  // lacking the entry, so no leader can be elected without it, whatever minority crashes.
  // (Not "a majority holds it": with membership taking effect on append, an entry may be
  // committed by a majority of the new configuration only, e.g. {5,6} of {5,6,7} while the
  // committed one is {5,7}; every quorum of {5,7} still contains 5.)
  void CheckDurability() {
    CheckDurabilityIn(ConfigOfMostAdvanced());
    if (const uint64_t lead = Leader(); lead != 0) {
      CheckDurabilityIn(nodes_[lead]->raft().tracker().ConfState());
    }
  }

  std::pair<uint64_t, v1::ConfState> ConfigOfMostAdvanced() {
    uint64_t best = 0, best_applied = 0;
    for (const auto& [id, n] : nodes_) {
      if (n->sm().applied > best_applied) {
        best = id;
        best_applied = n->sm().applied;
      }
    }
    if (best == 0) return {0, {}};
    return {best_applied, nodes_[best]->sm().conf_state};
  }

  void CheckDurabilityIn(const v1::ConfState& cs) {
    CheckDurabilityIn({applied_.empty() ? 0 : applied_.rbegin()->first, cs});
  }

  void CheckDurabilityIn(const std::pair<uint64_t, v1::ConfState>& at) {
    const uint64_t best_applied = at.first;
    const v1::ConfState& cs = at.second;
    if (best_applied == 0 || cs.voters_size() == 0) return;
    // A quorum has n/2+1 members, so it always contains a holder iff at least n - n/2 do.
    const size_t need = cs.voters_size() - cs.voters_size() / 2;
    struct Disk {
      const MemoryLogStorage* st;
      uint64_t snap_index;
    };
    std::vector<Disk> disks;
    for (uint64_t v : cs.voters()) {
      auto nit = nodes_.find(v);
      if (nit == nodes_.end()) continue;
      const MemoryLogStorage& st = nit->second->storage();
      disks.push_back({&st, st.InitialState()->conf_index});  // the snapshot's index
    }
    // Walk from the newest applied entry down: the newest 8 after every event, a longer tail
    // now and then (older entries are mostly under snapshots by then).
    const int depth = result_.events % 64 == 0 ? 1024 : 8;
    int checked = 0;
    for (auto it = applied_.upper_bound(best_applied); it != applied_.begin() && checked < depth;
         ++checked) {
      --it;
      const uint64_t index = it->first, term = it->second.first;
      size_t have = 0;
      for (const Disk& d : disks) {
        if (d.snap_index >= index) {
          ++have;
        } else if (index + 1 >= d.st->FirstIndex() && index <= d.st->LastIndex()) {
          auto t = d.st->Term(index);
          if (t.ok() && *t == term) ++have;
        }
      }
      if (have < need) {
        Fail(absl::StrCat("durability: applied entry ", index, "/", term, " is on the disks of ",
                          have, " of ", cs.voters_size(), " voters (need ", need,
                          " so that every quorum has it)"));
        return;
      }
    }
  }

  void CheckInvariants() {
    CheckDurability();
    for (const auto& [id, n] : nodes_) {
      if (!n->alive()) continue;
      const Raft& r = n->raft();
      max_term_ = std::max(max_term_, r.term());
      if (r.state() != StateType::kLeader) continue;
      auto [it, inserted] = leaders_.emplace(r.term(), id);
      if (!inserted && it->second != id) {
        Fail(absl::StrCat("election safety: nodes ", it->second, " and ", id,
                          " both leaders of term ", r.term()));
        return;
      }
      if (inserted) CheckLeaderCompleteness(id);
    }
  }

  void CheckLeaderCompleteness(uint64_t id) {
    const Raft& r = nodes_[id]->raft();
    const RaftLog& log = r.log();
    if (applied_.empty()) return;
    const uint64_t max_applied = applied_.rbegin()->first;
    if (log.LastIndex() < max_applied) {
      Fail(absl::StrCat("leader completeness: leader ", id, " of term ", r.term(),
                        " has last index ", log.LastIndex(), " < applied ", max_applied));
      return;
    }
    for (auto it = applied_.lower_bound(log.FirstIndex()); it != applied_.end(); ++it) {
      auto t = log.Term(it->first);
      if (!t.ok() || *t != it->second.first) {
        Fail(absl::StrCat("leader completeness: leader ", id, " of term ", r.term(), " has term ",
                          t.ok() ? *t : 0, " at index ", it->first, " where term ",
                          it->second.first, " was applied"));
        return;
      }
    }
  }

  // ------------------------------------------------------------------------------------------
  // Liveness: no more faults; every member must be up, a leader must emerge and proposals
  // must commit on every member within a bounded number of ticks.

  void Liveness() {
    faults_ = false;
    cut_.clear();
    Trace("=== faults stop ===");
    for (auto& [id, n] : nodes_) {
      if (!n->alive()) n->Restart(rng_());
    }
    // Proposals go to the current leader one at a time. One accepted by a leader that is
    // then deposed may be lost (it never committed): after a while it is proposed again
    // under a new name. Done when every member of the leader's configuration applied each.
    const int kProposals = 3;
    int done = 0, attempts = 0;
    std::string pending;
    int pending_since = 0;
    for (int t = 0; t < opt_.liveness_ticks && result_.ok; ++t) {
      Tick();
      // Drain: handle every Ready and deliver every message until quiet.
      for (int round = 0; round < 1000; ++round) {
        bool any = false;
        for (auto& [id, n] : nodes_) any |= HandleReady(id);
        while (DeliverOne()) any = true;
        CheckInvariants();
        if (!any) break;
      }
      const uint64_t lead = Leader();
      if (lead == 0) continue;
      if (pending.empty()) {
        if (done == kProposals) {
          Trace(absl::StrCat("liveness ok after ", t, " ticks"));
          return;
        }
        pending = absl::StrCat("live", ++attempts);
        pending_since = t;
        if (!nodes_[lead]->raw().Propose(pending).ok()) pending.clear();
        continue;
      }
      const v1::ConfState cs = nodes_[lead]->raft().tracker().ConfState();
      std::vector<uint64_t> members(cs.voters().begin(), cs.voters().end());
      members.insert(members.end(), cs.learners().begin(), cs.learners().end());
      bool all = true;
      for (uint64_t m : members) {
        const auto& p = nodes_[m]->sm().payloads;
        all &= std::find(p.begin(), p.end(), pending) != p.end();
      }
      if (all) {
        ++done;
        pending.clear();
      } else if (t - pending_since > 50) {
        pending.clear();  // lost with a deposed leader: try again
      }
    }
    const int proposed = attempts;
    if (result_.ok) {
      Fail(absl::StrCat("liveness: no leader committed ", kProposals,
                        " proposals on every member within ", opt_.liveness_ticks,
                        " ticks after faults stopped (leader ", Leader(), ", proposed ", proposed,
                        ")"));
    }
  }

  SimOptions opt_;
  std::mt19937_64 rng_;
  int n_;
  uint64_t next_id_;
  uint64_t now_ = 0;
  bool faults_ = true;
  uint64_t proposals_ = 0;
  uint64_t reads_ = 0;
  uint64_t max_term_ = 0;
  std::map<uint64_t, std::unique_ptr<TestNode>> nodes_;
  std::vector<InFlight> net_;
  std::set<std::pair<uint64_t, uint64_t>> cut_;
  // term -> leader
  std::map<uint64_t, uint64_t> leaders_;
  // (index, term) -> (previous term or UINT64_MAX if unknown, data hash)
  std::map<std::pair<uint64_t, uint64_t>, std::pair<uint64_t, uint64_t>> entries_;
  // index -> (term, state machine hash after applying it)
  std::map<uint64_t, std::pair<uint64_t, uint64_t>> applied_;
  std::map<uint64_t, uint64_t> last_applied_;
  std::map<std::string, uint64_t> read_floor_;
  std::deque<std::string> trace_;
  SimResult result_;
};

}  // namespace

SimResult RunSimulation(const SimOptions& options) { return Sim(options).Run(); }

}  // namespace marmot::raft::testing
