// What the control pane asks of the node it runs in. marmot.cc wires an implementation over the
// replicator and the Raft host; tests may use their own. Every call is answered with a status a
// client can act on: UNAVAILABLE (no leader, draining: retry), FAILED_PRECONDITION (refused in
// the current state), INVALID_ARGUMENT (bad request), UNIMPLEMENTED (not in this version).
#ifndef MARMOT_PANE_NODE_CONTROL_H_
#define MARMOT_PANE_NODE_CONTROL_H_

#include "absl/status/statusor.h"
#include "proto/admin.pb.h"

namespace marmot::pane {

class NodeControl {
 public:
  virtual ~NodeControl() = default;
  virtual absl::StatusOr<admin::v1::GetStatusResponse> GetStatus() = 0;
  virtual absl::StatusOr<admin::v1::ListDeadLettersResponse> ListDeadLetters(int limit) = 0;
  // Ready = joined every shard and caught up (never "is leader").
  virtual bool Ready() = 0;
};

}  // namespace marmot::pane

#endif  // MARMOT_PANE_NODE_CONTROL_H_
