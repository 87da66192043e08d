// Which protocol a connection to the control pane speaks, told from its first bytes. The pane
// serves gRPC and REST on one port (as etcd serves its gateway beside gRPC): gRPC clients speak
// HTTP/2 with prior knowledge and open with the connection preface
// "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"; REST clients speak HTTP/1.x and open with a request line,
// "<METHOD> <target> HTTP/1.1".
#ifndef MARMOT_PANE_PROTOCOL_SNIFF_H_
#define MARMOT_PANE_PROTOCOL_SNIFF_H_

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pane/socket_io.h"

namespace marmot::pane {

enum class PaneProtocol {
  kNeedMore,  // The bytes so far could still be either: wait for more.
  kGrpc,      // The whole HTTP/2 connection preface.
  kHttp1,     // A method (1 to 16 capital letters) and a space: an HTTP/1 request line.
  kUnknown,   // Neither (a TLS handshake on a plaintext port, garbage).
};

// Classifies the first bytes a client sent. Pure.
PaneProtocol ClassifyFirstBytes(absl::string_view first);

// Waits until the first bytes of the connected TCP socket `fd` tell its protocol, without
// consuming them (MSG_PEEK), so that the connection reaches its server exactly as the client
// sent it. Returns kUnknown when the client closes first, sends something else, is silent
// until `timeout` passes, or when `wake_fd` becomes readable. Leaves the socket as it found it.
PaneProtocol SniffProtocol(int fd, absl::Duration timeout, int wake_fd);

}  // namespace marmot::pane

#endif  // MARMOT_PANE_PROTOCOL_SNIFF_H_
