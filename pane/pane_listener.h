// The control pane's port: one listening socket serving gRPC and REST side by side, as etcd
// serves its gateway beside gRPC. Each accepted connection is told apart by its first bytes
// (protocol_sniff.h) and goes, untouched, to the server of its protocol: gRPC takes over the
// socket itself (grpc::AddInsecureChannelFromFd), REST is served on a thread of this listener.
//
// With TLS the listener terminates it and relays the plaintext to the same servers (pane_tls.h).
//
// No client holds up another: every connection has its own thread until it reaches gRPC (or
// ends, for REST), and a client that sends nothing is dropped after `first_bytes_timeout`. At
// most `max_connections` are served at once; when that many are, a new connection takes the
// place of the one that has been idle longest (waiting for its client with nothing under way:
// for its first bytes or TLS handshake, or between two REST requests), which is closed; one
// whose client's bytes wait unread (its thread has not read them yet) only when every idle one
// has some. Only when none is idle is the new connection closed at once (with a log line).
#ifndef MARMOT_PANE_PANE_LISTENER_H_
#define MARMOT_PANE_PANE_LISTENER_H_

#include <functional>
#include <list>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pane/pane_tls.h"
#include "pane/protocol_sniff.h"
#include "pane/socket_io.h"

namespace marmot::pane {

struct ListenerOptions {
  // host:port; port 0 picks a free one. Every address the host resolves to is bound
  // (`localhost`: 127.0.0.1, and ::1 where the machine has it).
  std::string address;
  // When set, every connection must speak TLS (pane_tls.h); not owned, outlives the listener.
  const PaneTls* tls = nullptr;
  // A connection that has not told its protocol by then (TLS: completed its handshake and
  // sent its first bytes) is closed.
  absl::Duration first_bytes_timeout = absl::Seconds(10);
  // Connections served at once; idle ones give way to new ones (above).
  int max_connections = 128;
};

// A protocol without a handler is not served: its connections are closed.
struct ConnectionHandlers {
  // Takes over a connected non-blocking socket that opens with the HTTP/2 preface; returns at
  // once.
  std::function<void(int fd)> grpc;
  // Serves a connected socket that opens with an HTTP/1 request line until the connection ends
  // (or the signals say so), then closes it; tells `signals.idle` when it waits for a request.
  std::function<void(int fd, const StopSignals& signals)> rest;
};

class PaneListener {
 public:
  // Binds and listens, or fails with UnavailableError naming the address (in use, say).
  static absl::StatusOr<std::unique_ptr<PaneListener>> Start(ListenerOptions options,
                                                             ConnectionHandlers handlers);
  ~PaneListener();

  int port() const { return port_; }

  // Stops accepting and closes the port. Connections waiting for their first bytes or for
  // their next request end; requests being served go on. Idempotent.
  void Drain();
  // Drain(), then ends every connection this listener still serves and waits for their
  // threads. Connections handed to gRPC are gRPC's to end. Idempotent.
  void Stop();

 private:
  // A thread serving one connection.
  struct Worker {
    std::thread thread;
    bool done = false;
    // While the connection is idle (StopSignals::idle): a duplicate of its socket, and since when.
    OwnedFd idle;
    absl::Time idle_since;
    bool evicted = false;  // Its socket was shut down to make room for a new connection.
  };

  PaneListener() = default;
  void AcceptLoop();
  void Serve(Worker* self, OwnedFd connection);
  // Hands `fd` to the server of `protocol` (closing it when this listener serves no such
  // server). REST runs on the thread of `self`, or on a new one when it is null.
  bool Dispatch(PaneProtocol protocol, OwnedFd fd, Worker* self);
  // Runs `work` on a thread of its own, counted against max_connections (evicting the idlest
  // connection when that many are served), idle on socket `idle_fd` unless -1; false (nothing
  // runs) when none is idle, or the listener stops.
  bool Spawn(std::function<void(Worker*)> work, int idle_fd = -1);
  StopSignals SignalsFor(Worker* worker);
  // StopSignals::idle of `worker`.
  void SetIdle(Worker* worker, int fd);
  void SetIdleLocked(Worker* worker, int fd) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Shuts down the socket of the connection idle longest (preferring those without unread
  // bytes); false when none is idle.
  bool EvictIdlest() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Joins the threads that finished.
  void Reap();

  ListenerOptions options_;
  ConnectionHandlers handlers_;
  std::vector<OwnedFd> listening_;
  int port_ = 0;
  OwnedFd drain_, stop_;
  std::thread acceptor_;

  absl::Mutex mu_;
  bool drained_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int live_ ABSL_GUARDED_BY(mu_) = 0;     // Threads running.
  int evicted_ ABSL_GUARDED_BY(mu_) = 0;  // Of those, evicted ones (on their way out).
  std::list<Worker> workers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace marmot::pane

#endif  // MARMOT_PANE_PANE_LISTENER_H_
