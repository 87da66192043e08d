// Raft core throughput: committed entries per second of one group of three in-memory
// replicas, all driven by one thread (no network, no disk: the cost of the protocol code,
// the log bookkeeping and the message/entry copies).
//
//   bazel run -c opt //tools/bench:raft_bench
//
// Each iteration proposes a batch of entries at the leader (one ProposeBatch) and pumps
// Readys and messages until the leader has applied them. Items/s = committed entries/s.
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "glog/logging.h"
#include "raft/raw_node.h"
#include "raft/storage.h"

namespace marmot::raft {
namespace {

class Replica {
 public:
  Replica(uint64_t id, const v1::ConfState& cs) : storage_(MemoryLogStorage::Bootstrap(cs)) {
    Config c;
    c.id = id;
    c.storage = &storage_;
    c.random_seed = id;
    c.max_size_per_msg = 4 << 20;
    c.max_inflight_msgs = 256;
    c.max_committed_size_per_ready = 64 << 20;
    auto n = RawNode::Create(c);
    CHECK(n.ok()) << n.status();
    node_ = std::move(*n);
  }

  RawNode& node() { return *node_; }
  uint64_t applied() const { return applied_; }

  // The host loop of one replica: persist, "apply", hand out messages.
  bool HandleReady(std::deque<v1::Message>* out) {
    if (!node_->HasReady()) return false;
    auto rd = node_->GetReady();
    CHECK(rd.ok());
    if (rd->snapshot) CHECK(storage_.ApplySnapshot(*rd->snapshot).ok());
    if (!rd->entries.empty()) CHECK(storage_.Append(std::move(rd->entries)).ok());
    if (rd->hard_state) storage_.SetHardState(*rd->hard_state);
    for (const auto& e : rd->committed_entries) {
      benchmark::DoNotOptimize(e.data().data());
      applied_ = e.index();
    }
    for (auto& m : rd->messages) out->push_back(std::move(m));
    CHECK(node_->Advance().ok());
    // Keep memory bounded: compact what everyone surely has.
    if (applied_ > storage_.FirstIndex() + 20000) {
      CHECK(storage_.Compact(applied_ - 10000).ok());
    }
    return true;
  }

 private:
  MemoryLogStorage storage_;
  std::unique_ptr<RawNode> node_;
  uint64_t applied_ = 0;
};

class Group {
 public:
  Group() {
    v1::ConfState cs;
    for (uint64_t id = 1; id <= 3; ++id) cs.add_voters(id);
    for (uint64_t id = 1; id <= 3; ++id) replicas_.push_back(std::make_unique<Replica>(id, cs));
    CHECK(leader().node().Campaign().ok());
    Pump();
    CHECK(leader().node().raft().state() == StateType::kLeader);
  }

  Replica& leader() { return *replicas_[0]; }

  void Pump() {
    for (;;) {
      bool any = false;
      for (auto& r : replicas_) any |= r->HandleReady(&queue_);
      while (!queue_.empty()) {
        v1::Message m = std::move(queue_.front());
        queue_.pop_front();
        (void)replicas_[m.to() - 1]->node().Step(std::move(m));
        any = true;
      }
      if (!any) return;
    }
  }

 private:
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::deque<v1::Message> queue_;
};

void BM_CommitThreeReplicas(benchmark::State& state) {
  const size_t entry_bytes = state.range(0);
  const size_t batch = state.range(1);
  Group g;
  const std::string payload(entry_bytes, 'x');
  uint64_t committed = 0;
  for (auto _ : state) {
    const uint64_t target = g.leader().applied() + batch;
    if (batch == 1) {
      CHECK(g.leader().node().Propose(payload).ok());
    } else {
      CHECK(g.leader().node().ProposeBatch(std::vector<std::string>(batch, payload)).ok());
    }
    g.Pump();
    CHECK_GE(g.leader().applied(), target);
    committed += batch;
  }
  state.SetItemsProcessed(committed);
  state.SetBytesProcessed(committed * entry_bytes);
  state.counters["entries/s"] = benchmark::Counter(committed, benchmark::Counter::kIsRate);
}

BENCHMARK(BM_CommitThreeReplicas)
    ->ArgNames({"entry_bytes", "batch"})
    ->Args({64, 1})
    ->Args({64, 64})
    ->Args({64, 256})
    ->Args({64, 1024})
    ->Args({1024, 1})
    ->Args({1024, 64})
    ->Args({1024, 256})
    ->Args({1024, 1024});

}  // namespace
}  // namespace marmot::raft

BENCHMARK_MAIN();
