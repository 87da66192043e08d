// Progress: what a leader knows about one follower's log, and how it feeds it.
//
//   probe      the leader does not know where the follower's log matches; it sends one MsgApp
//              at a time and waits for the answer (or a heartbeat response) before the next.
//   replicate  the follower matches up to `match`; the leader streams entries optimistically
//              (advancing `next` before acks) within the Inflights window.
//   snapshot   the follower needs entries the leader compacted; a snapshot is on its way and
//              nothing else is sent until the host reports it (ReportSnapshot) or an ack shows
//              the follower caught up.
#ifndef MARMOT_RAFT_PROGRESS_H_
#define MARMOT_RAFT_PROGRESS_H_

#include <cstdint>
#include <string>

#include "raft/inflights.h"

namespace marmot::raft {

enum class ProgressState { kProbe, kReplicate, kSnapshot };
const char* ProgressStateName(ProgressState s);

class Progress {
 public:
  Progress(uint64_t next, size_t max_inflight, uint64_t max_inflight_bytes, bool is_learner)
      : next(next), inflights(max_inflight, max_inflight_bytes), is_learner(is_learner) {}

  // Highest index known to match the leader's log.
  uint64_t match = 0;
  // Next index to send.
  uint64_t next;
  ProgressState state = ProgressState::kProbe;
  // In snapshot state: the index of the snapshot being sent.
  uint64_t pending_snapshot = 0;
  // Heard from since the last check-quorum round (leader) / counts as live for snapshots.
  bool recent_active = false;
  // Probe state: a probe is out, wait for its answer before sending another.
  bool msg_app_flow_paused = false;
  Inflights inflights;
  bool is_learner;

  void BecomeProbe();
  void BecomeReplicate();
  void BecomeSnapshot(uint64_t snapshot_index);
  // Bookkeeping after sending a MsgApp whose last entry is `last_index` (if entries > 0).
  void SentEntries(size_t entries, uint64_t last_index, uint64_t bytes);
  // An ack for index n: returns whether match advanced.
  bool MaybeUpdate(uint64_t n);
  // A rejection of the MsgApp at `rejected`, with the follower's hint that its log may match
  // up to `match_hint`. Returns false if the rejection is stale (out of order), true if next
  // moved back.
  bool MaybeDecrTo(uint64_t rejected, uint64_t match_hint);
  // Whether sending appends to this follower is currently throttled.
  bool IsPaused() const;
  std::string DebugString() const;

 private:
  void ResetState(ProgressState state);
};

}  // namespace marmot::raft

#endif  // MARMOT_RAFT_PROGRESS_H_
