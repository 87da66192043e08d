// Fuzz target: Raft messages from the network stepped into node 2 of a three-voter group
// (raft/raft.h, raw_node.h), with ticks between them, hosted the way NodeHost hosts a shard: each
// Ready persisted (a snapshot older than the log is skipped, anything else must persist),
// committed entries applied (an undecodable conf change is skipped, the others applied to the
// core), Advance. Node 2's own messages go nowhere, but the snapshots it sends are reported
// delivered. Every message reaches the core, also those the host's SenderPolicy would refuse:
// the core must stand them too.
//
// Whatever the bytes: nothing crashes; the commit index never goes back; entries apply in
// order, each index once (a snapshot may jump ahead); an applied entry is never overwritten,
// neither by entries nor by a snapshot.
#include <map>
#include <memory>
#include <vector>

#include "glog/logging.h"
#include "raft/errors.h"
#include "raft/raw_node.h"
#include "raft/storage.h"
#include "tests/fuzz/fuzz_input.pb.h"
#include "tests/fuzz/fuzz_target.h"

namespace marmot::fuzz {
namespace {

namespace rv1 = ::marmot::raft::v1;
using raft::MemoryLogStorage;
using raft::RawNode;

constexpr uint64_t kNode = 2;
// The log is compacted behind a snapshot of the applied state every this many entries.
constexpr uint64_t kCompactEvery = 16;

class Host {
 public:
  Host() : storage_(MemoryLogStorage::Bootstrap(Voters())) {
    raft::Config c;
    c.id = kNode;
    c.election_tick = 10;
    c.heartbeat_tick = 2;
    c.align_heartbeats = true;
    c.storage = &storage_;
    c.applied = 1;
    c.random_seed = 7;
    c.max_uncommitted_entries_size = 1 << 20;
    auto raw = RawNode::Create(c);
    CHECK(raw.ok()) << raw.status();
    node_ = std::move(*raw);
    conf_ = Voters();
  }

  void Tick(int n) {
    for (int i = 0; i < n; ++i) {
      node_->Tick();
      HandleReady();
    }
  }

  void Step(rv1::Message m) {
    (void)node_->Step(std::move(m));  // errors are answers (a dropped proposal, a local type)
    HandleReady();
  }

 private:
  static rv1::ConfState Voters() {
    rv1::ConfState cs;
    for (uint64_t id : {1, 2, 3}) cs.add_voters(id);
    return cs;
  }

  void HandleReady() {
    while (node_->HasReady()) {
      absl::StatusOr<raft::Ready> rd = node_->GetReady();
      CHECK(rd.ok()) << rd.status();
      uint64_t snap_index = 0;
      if (rd->snapshot) {
        absl::Status s = storage_.ApplySnapshot(*rd->snapshot);
        CHECK(s.ok() || raft::IsSnapshotOutOfDate(s)) << "persist snapshot: " << s;
        snap_index = rd->snapshot->metadata().index();
        CHECK_GE(snap_index, applied_) << "a snapshot behind the applied index was installed";
        applied_ = snap_index;
        conf_ = rd->snapshot->metadata().conf_state();
      }
      if (rd->snapshot) {
        auto it = committed_terms_.find(snap_index);
        CHECK(it == committed_terms_.end() || it->second == rd->snapshot->metadata().term())
            << "a snapshot replaced the committed entry at " << snap_index;
      }
      for (const rv1::Entry& e : rd->entries) {
        auto it = committed_terms_.find(e.index());
        CHECK(it == committed_terms_.end() || it->second == e.term())
            << "the committed entry at " << e.index() << " was overwritten";
      }
      if (!rd->entries.empty()) {
        absl::Status s = storage_.Append(rd->entries);
        CHECK(s.ok()) << "append: " << s;
      }
      if (rd->hard_state) {
        CHECK_GE(rd->hard_state->commit(), commit_) << "the commit index went back";
        commit_ = rd->hard_state->commit();
        storage_.SetHardState(*rd->hard_state);
      }
      for (const rv1::Entry& e : rd->committed_entries) {
        if (e.index() <= snap_index) continue;
        CHECK_EQ(e.index(), applied_ + 1) << "entries applied out of order";
        committed_terms_[e.index()] = e.term();
        if (e.type() == rv1::ENTRY_CONF_CHANGE) {
          rv1::ConfChange cc;
          if (cc.ParseFromString(e.data())) conf_ = node_->ApplyConfChange(cc);
        }
        applied_ = e.index();
      }
      for (const rv1::Message& m : rd->messages) {
        if (m.type() == rv1::MSG_SNAP) node_->ReportSnapshot(m.to(), raft::SnapshotStatus::kFinish);
      }
      absl::Status s = node_->Advance();
      CHECK(s.ok()) << s;
      MaybeCompact();
    }
  }

  // As the host does after its state machine saved a snapshot.
  void MaybeCompact() {
    if (applied_ < storage_.FirstIndex() + kCompactEvery || applied_ > storage_.LastIndex()) return;
    absl::StatusOr<rv1::Snapshot> snap = storage_.CreateSnapshot(applied_, conf_, "state");
    if (!snap.ok()) return;  // not newer than the one held
    CHECK(storage_.Compact(applied_).ok());
  }

  MemoryLogStorage storage_;
  std::unique_ptr<RawNode> node_;
  rv1::ConfState conf_;
  uint64_t applied_ = 1;
  uint64_t commit_ = 1;
  // The term of every entry applied, by index.
  std::map<uint64_t, uint64_t> committed_terms_;
};

int Run(const uint8_t* data, size_t size) {
  inputs::RaftStepInput in;
  if (!in.ParseFromArray(data, static_cast<int>(size))) return -1;
  Host host;
  for (auto& step : *in.mutable_steps()) {
    host.Tick(static_cast<int>(step.ticks() % 64));
    if (step.has_message()) host.Step(std::move(*step.mutable_message()));
  }
  return 0;
}

}  // namespace
}  // namespace marmot::fuzz

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  marmot::fuzz::QuietLogs((*argv)[0]);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return marmot::fuzz::Run(data, size);
}
