#include "raft/progress.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace marmot::raft {

const char* ProgressStateName(ProgressState s) {
  switch (s) {
    case ProgressState::kProbe:
      return "probe";
    case ProgressState::kReplicate:
      return "replicate";
    case ProgressState::kSnapshot:
      return "snapshot";
  }
  return "?";
}

void Progress::ResetState(ProgressState s) {
  msg_app_flow_paused = false;
  pending_snapshot = 0;
  state = s;
  inflights.Reset();
}

void Progress::BecomeProbe() {
  // Coming from snapshot state, the follower will have the snapshot unless it failed: probing
  // right after it is the cheapest guess.
  if (state == ProgressState::kSnapshot) {
    const uint64_t pending = pending_snapshot;
    ResetState(ProgressState::kProbe);
    next = std::max(match + 1, pending + 1);
  } else {
    ResetState(ProgressState::kProbe);
    next = match + 1;
  }
}

void Progress::BecomeReplicate() {
  ResetState(ProgressState::kReplicate);
  next = match + 1;
}

void Progress::BecomeSnapshot(uint64_t snapshot_index) {
  ResetState(ProgressState::kSnapshot);
  pending_snapshot = snapshot_index;
}

void Progress::SentEntries(size_t entries, uint64_t last_index, uint64_t bytes) {
  switch (state) {
    case ProgressState::kReplicate:
      if (entries > 0) {
        next = last_index + 1;
        inflights.Add(last_index, bytes);
      }
      break;
    case ProgressState::kProbe:
      // One probe at a time: the answer tells where to go next.
      msg_app_flow_paused = true;
      break;
    case ProgressState::kSnapshot:
      LOG(FATAL) << "sending append in unhandled state " << DebugString();
  }
}

bool Progress::MaybeUpdate(uint64_t n) {
  bool updated = false;
  if (match < n) {
    match = n;
    updated = true;
    msg_app_flow_paused = false;
  }
  next = std::max(next, n + 1);
  return updated;
}

bool Progress::MaybeDecrTo(uint64_t rejected, uint64_t match_hint) {
  if (state == ProgressState::kReplicate) {
    // A rejection at or below match answers an old message: the follower's log has matched
    // there since.
    if (rejected <= match) return false;
    // Resend everything after match: the rejection means the optimistic stream broke.
    next = match + 1;
    return true;
  }
  // Probe (or snapshot): only the answer to the latest probe counts.
  if (next - 1 != rejected) return false;
  next = std::max(std::min(rejected, match_hint + 1), match + 1);
  msg_app_flow_paused = false;
  return true;
}

bool Progress::IsPaused() const {
  switch (state) {
    case ProgressState::kProbe:
      return msg_app_flow_paused;
    case ProgressState::kReplicate:
      return inflights.Full();
    case ProgressState::kSnapshot:
      return true;
  }
  return true;
}

std::string Progress::DebugString() const {
  return absl::StrCat(ProgressStateName(state), " match=", match, " next=", next,
                      is_learner ? " learner" : "", pending_snapshot ? " pending_snap=" : "",
                      pending_snapshot ? absl::StrCat(pending_snapshot) : "",
                      msg_app_flow_paused ? " paused" : "", " inflight=", inflights.Count());
}

}  // namespace marmot::raft
