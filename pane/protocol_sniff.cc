#include "pane/protocol_sniff.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include "absl/time/clock.h"

namespace marmot::pane {
namespace {

constexpr absl::string_view kHttp2Preface("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
// Longer than any method; enough bytes to decide every case.
constexpr size_t kMaxMethod = 16;
static_assert(kHttp2Preface.size() > kMaxMethod);

bool IsCapital(char c) { return c >= 'A' && c <= 'Z'; }

}  // namespace

PaneProtocol ClassifyFirstBytes(absl::string_view first) {
  if (first.empty()) return PaneProtocol::kNeedMore;
  if (first.size() >= kHttp2Preface.size() &&
      first.substr(0, kHttp2Preface.size()) == kHttp2Preface) {
    return PaneProtocol::kGrpc;
  }
  const bool preface_so_far =
      first.size() < kHttp2Preface.size() && kHttp2Preface.substr(0, first.size()) == first;
  // An HTTP/1 method: capital letters up to a space ("PRI /x HTTP/1.1" parts from the preface
  // at its fifth byte and is one).
  size_t i = 0;
  while (i < first.size() && i <= kMaxMethod && IsCapital(first[i])) ++i;
  if (i >= 1 && i <= kMaxMethod && i < first.size() && first[i] == ' ' && !preface_so_far) {
    return PaneProtocol::kHttp1;
  }
  if (preface_so_far) return PaneProtocol::kNeedMore;
  if (i == first.size() && i <= kMaxMethod) return PaneProtocol::kNeedMore;
  return PaneProtocol::kUnknown;
}

PaneProtocol SniffProtocol(int fd, absl::Duration timeout, int wake_fd) {
  const absl::Time deadline = absl::Now() + timeout;
  char buf[kHttp2Preface.size()];
  ssize_t seen = 0;
  PaneProtocol result = PaneProtocol::kUnknown;
  while (true) {
    // A peeked byte stays readable: wake up only once more bytes than those seen have arrived
    // (the kernel also wakes the wait at end of stream or on an error).
    const int low_water = static_cast<int>(seen + 1);
    ::setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &low_water, sizeof low_water);
    if (WaitForSocket(fd, POLLIN, deadline - absl::Now(), {wake_fd}) != WaitResult::kReady) break;
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    // Closed, failed, or woken without new bytes (the end of the stream after a few bytes).
    if (n <= seen) break;
    seen = n;
    const PaneProtocol p = ClassifyFirstBytes(absl::string_view(buf, static_cast<size_t>(n)));
    if (p != PaneProtocol::kNeedMore) {
      result = p;
      break;
    }
  }
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
  return result;
}

}  // namespace marmot::pane
