// Node incarnations: telling a node that restarted from a second process started with the same
// node id (by mistake: another -bind and folders, the same -node-id).
//
// Raft assumes one process per node id. A second one breaks it for good: the cluster took the
// impostor's answers as the real node's (its acknowledgements raised what the leaders believe
// the node holds, and Raft ignores later refusals below that), so the real node was never sent
// what it missed and stayed behind until every node restarted, and entries counted as committed
// on an impostor. So the transport must never let a second process carry a node's messages.
//
// Each transport draws a random incarnation when it starts and sends it, with the address it
// listens on, in every stream's handshake (proto/transport.proto); every stream carries at
// least a keepalive per GrpcTransportOptions::keepalive_interval, so the acceptor knows when it
// last heard from the stream's peer. A new stream of node N from another incarnation than an
// open one is:
//   - refused while the open one was heard within the liveness window: another process of N
//     is alive (the caller is told so, see below);
//   - admitted, and the open one ended, when the open one is silent: N restarted and its old
//     connection is not seen dead yet (power loss, a cut cable); or when the newcomer listens at
//     the address recorded for N and the open one does not (the impostor got in while N was
//     away; N takes its place back).
//
// The refused process exits (ExitOnDuplicateNode), but only when a peer goes on refusing it for
// two liveness windows: a node that restarted may be refused for up to one window after the last
// sign of its previous process reached that peer (later than the death itself when the peer was
// paused and reads that process's last bytes on waking), and must not take that for a
// duplicate. A real duplicate is refused for as long as the live node runs. The node with the
// highest id dials nobody, so every process also asks its peers (Identify) whether they hear
// another live process with its id, and takes a yes only when a second question two windows
// later names the same process.
//
// What this does not catch: an impostor that arrives while the real node's streams are silent
// (down or paused for longer than the window) at a node where addresses do not tell them apart
// (the recorded address is a name, -bind a wildcard) is admitted; when the real node comes back
// it is then the one refused, and exits.
#ifndef MARMOT_RAFT_HOST_NODE_INCARNATION_H_
#define MARMOT_RAFT_HOST_NODE_INCARNATION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace marmot::raft::host {

// EX_CONFIG of sysexits.h: the process was started with a node id another process uses.
inline constexpr int kDuplicateNodeExitCode = 78;

// A random, non-zero incarnation from the operating system's secure random generator.
uint64_t NewIncarnation();

// What the acceptor knows of where a stream of a node pair comes from.
struct StreamOrigin {
  // 0: a peer of an older version, which does not say (never compared).
  uint64_t incarnation = 0;
  // Where that process listens, as it says.
  std::string bind_address;
  // The connection's remote address, as gRPC reports it.
  std::string peer;
  // When the stream last carried something (its handshake, a batch, a keepalive).
  absl::Time last_heard;
};

struct Admission {
  // Empty: admitted. Otherwise why not, for the caller and the log; it starts with
  // "node <N> already runs".
  std::string refusal;
  // Indexes of the open streams to end: other incarnations that the newcomer replaces.
  std::vector<size_t> replaced;
};

// Whether a new stream of node `node` from `incoming` may join the pair's `open` streams (see the
// file comment). `recorded_address` is where this node knows `node` listens ("" if unknown).
Admission AdmitStream(uint64_t node, const StreamOrigin& incoming,
                      const std::vector<StreamOrigin>& open, absl::string_view recorded_address,
                      absl::Time now, absl::Duration liveness_window);

// Logs, as an ERROR, "[node <N>] another process runs with this node's id: <why>; exiting ...",
// flushes the logs and ends the process at once with kDuplicateNodeExitCode. This process has
// done nothing the cluster kept (no stream of it was admitted where the other one lives), and
// everything of its own it acknowledged is on disk.
[[noreturn]] void ExitOnDuplicateNode(uint64_t node_id, absl::string_view why);

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_NODE_INCARNATION_H_
