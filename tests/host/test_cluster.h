// TestCluster: NodeHosts of one process talking real gRPC on loopback, with a recording state
// machine per shard, for scenario tests of the host (start, stop, restart, partition, join).
#ifndef MARMOT_TESTS_HOST_TEST_CLUSTER_H_
#define MARMOT_TESTS_HOST_TEST_CLUSTER_H_

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "raft/host/grpc_transport.h"
#include "raft/host/node_host.h"

namespace marmot::raft::host::testing {

// Records applied payloads in order; snapshots are the whole list. Thread-safe reads.
class RecordingStateMachine : public StateMachine {
 public:
  uint64_t Open() override { return 0; }
  absl::Status Apply(const std::vector<AppliedEntry>& entries, ApplyRound* round) override;
  absl::Status SaveSnapshot(SnapshotSink& out, ApplyRound* round) override;
  absl::Status RecoverFromSnapshot(uint64_t index, const SnapshotSource& in,
                                   ApplyRound* round) override;

  std::vector<std::string> payloads() const;
  // The log index of each payload applied since the last snapshot installed.
  std::vector<uint64_t> indexes() const;
  uint64_t applied() const;
  int snapshots_installed() const;
  // Makes every later Apply take this long (a slow state machine).
  void set_apply_delay(absl::Duration d);
  // Makes SaveSnapshot fail half-way, after writing part of the payload (a full disk, say);
  // counts its calls either way.
  void set_snapshot_fails(bool fails);
  // Makes Apply fail with `error` (not OK: the shard halts) once it reaches a payload equal to
  // `payload`, before applying it.
  void set_apply_fails_at(const std::string& payload, absl::Status error);
  // As set_apply_fails_at, the first time only: applied when it comes again (a wait,
  // ShardWaitStatus, that is over once the shard resumes).
  void set_apply_fails_once_at(const std::string& payload, absl::Status error);
  int snapshot_attempts() const;

 private:
  mutable std::mutex mu_;
  uint64_t applied_ = 0;
  std::vector<std::string> payloads_;
  std::vector<uint64_t> indexes_;
  int snapshots_installed_ = 0;
  bool snapshot_fails_ = false;
  std::string fail_payload_;
  absl::Status apply_error_;
  bool fail_once_ = false;
  int snapshot_attempts_ = 0;
  absl::Duration apply_delay_ = absl::ZeroDuration();
};

// A loopback port nobody listens on right now.
int PickFreePort();

class TestCluster {
 public:
  // `n` founding members, ids 1..n; nothing started yet.
  TestCluster(std::string dir, int n, int shards);
  ~TestCluster();

  // Changes applied to every node's config before it starts.
  std::function<void(NodeHostConfig*)> tweak;

  // Starts node `id` (a founding member, or with join=true a new empty node).
  void Start(uint64_t id, bool join = false);
  void StartAll();
  void Stop(uint64_t id);
  NodeHost* host(uint64_t id) { return hosts_.at(id).get(); }
  bool running(uint64_t id) const { return hosts_.count(id) && hosts_.at(id) != nullptr; }
  std::string address(uint64_t id) const { return addresses_.at(id); }
  // The state machine of the node's current run.
  RecordingStateMachine* sm(uint64_t id, uint64_t shard);

  // Waits until every running member agrees on one leader for each shard; false on timeout.
  bool WaitForLeaders(absl::Duration timeout = absl::Seconds(20));
  // The leader of `shard` as seen by the running nodes (0 if none or no agreement).
  uint64_t Leader(uint64_t shard);
  // The leader of `shard` once the running members agree on one (a leader can change at any
  // time, more so on a busy machine: ask this, not Leader(), for "the leader now"); 0 if
  // they did not agree within `timeout`.
  uint64_t WaitForLeader(uint64_t shard, absl::Duration timeout = absl::Seconds(20));
  // Proposes through node `via`, retrying while there is no leader; OK once applied there.
  absl::Status Propose(uint64_t via, uint64_t shard, const std::string& data,
                       absl::Duration timeout = absl::Seconds(15));
  // Waits until node `id`'s state machine of `shard` holds exactly `want`.
  bool WaitForPayloads(uint64_t id, uint64_t shard, const std::vector<std::string>& want,
                       absl::Duration timeout = absl::Seconds(20));
  // Blocks traffic between `id` and every other node, both ways (or lifts it).
  void Isolate(uint64_t id, bool isolated);

  std::vector<uint64_t> ids() const;

 private:
  std::string dir_;
  int shards_;
  std::map<uint64_t, std::string> addresses_;  // every node ever started or founding
  std::vector<uint64_t> founders_;
  std::map<uint64_t, std::unique_ptr<NodeHost>> hosts_;
  std::mutex sms_mu_;
  std::map<std::pair<uint64_t, uint64_t>, RecordingStateMachine*> sms_;
  std::map<uint64_t, std::set<uint64_t>> blocked_;
};

}  // namespace marmot::raft::host::testing

#endif  // MARMOT_TESTS_HOST_TEST_CLUSTER_H_
