// Socket helpers of the control pane's one port (pane_listener.h): an owned descriptor, and
// waiting on one socket that stays interruptible. Every thread that serves a pane connection
// blocks only in WaitForSocket, with the listener's stop signals among the descriptors it waits
// on, so that draining or stopping the pane reaches each of them at once.
#ifndef MARMOT_PANE_SOCKET_IO_H_
#define MARMOT_PANE_SOCKET_IO_H_

#include <functional>
#include <initializer_list>
#include <string>

#include "absl/time/time.h"

namespace marmot::pane {

// Closes its descriptor when destroyed. -1 holds nothing.
class OwnedFd {
 public:
  OwnedFd() = default;
  explicit OwnedFd(int fd) : fd_(fd) {}
  OwnedFd(OwnedFd&& other) noexcept : fd_(other.Release()) {}
  OwnedFd& operator=(OwnedFd&& other) noexcept;
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
  ~OwnedFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Gives up ownership without closing.
  int Release();
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Level-triggered signals the listener raises once and never clears (eventfds): `drain_fd`
// becomes readable when the pane stops taking new work (connections that wait for a first byte
// or a next request end), `stop_fd` when every connection must end now.
struct StopSignals {
  int drain_fd = -1;
  int stop_fd = -1;
  // Told the connection's socket while it waits for its client with nothing under way (before
  // a next request), and -1 once busy again. While idle, the listener may shut the socket
  // down (shutdown(2): the wait ends, reading finds the end) to make room for a new client.
  // Empty: never.
  std::function<void(int fd)> idle;
};

enum class WaitResult { kReady, kTimedOut, kWoken, kFailed };

// Waits until `fd` has one of `events` (POLLIN, POLLOUT; a hang-up or an error counts as ready:
// the next read or write reports it), `timeout` passes (absl::InfiniteDuration() waits without
// limit), or one of `wake_fds` is readable (entries of -1 are skipped). kWoken wins over kReady.
WaitResult WaitForSocket(int fd, short events, absl::Duration timeout,
                         std::initializer_list<int> wake_fds);

// Makes `fd` non-blocking; false on failure.
bool SetNonBlocking(int fd);

// The IP address and port of the other end of a TCP socket; false when it has none (e.g. a
// socket pair).
bool PeerEndpoint(int fd, std::string* ip, int* port);
// "ip:port" (IPv6 in brackets) of the other end of a TCP socket; "" when it has none.
std::string PeerAddress(int fd);

}  // namespace marmot::pane

#endif  // MARMOT_PANE_SOCKET_IO_H_
