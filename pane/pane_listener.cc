#include "pane/pane_listener.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "raft/host/host_port.h"

namespace marmot::pane {
namespace {

void Raise(const OwnedFd& event) {
  const uint64_t one = 1;
  // An eventfd counter only overflows after 2^64 - 2 writes: this write cannot fail.
  (void)!::write(event.get(), &one, sizeof one);
}

void SetPort(sockaddr* addr, uint16_t port) {
  if (addr->sa_family == AF_INET) reinterpret_cast<sockaddr_in*>(addr)->sin_port = htons(port);
  if (addr->sa_family == AF_INET6) reinterpret_cast<sockaddr_in6*>(addr)->sin6_port = htons(port);
}

int BoundPort(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return 0;
}

// Binds every address `host` resolves to on one port (`port`, or the one the first bind picks
// when 0) and listens on each.
absl::Status Listen(const std::string& address, std::vector<OwnedFd>* out, int* bound) {
  absl::StatusOr<raft::host::HostPort> parsed =
      raft::host::ParseHostPort(address, raft::host::PortZero::kAllowed);
  if (!parsed.ok()) return parsed.status();
  const std::string& host = parsed->host;
  const int port = parsed->port;
  addrinfo hints{};
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), "0", &hints, &found);
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", address, ": ", gai_strerror(rc)));
  }
  std::set<std::string> seen;
  std::string failure;
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    const std::string key(reinterpret_cast<const char*>(ai->ai_addr), ai->ai_addrlen);
    if (!seen.insert(key).second) continue;
    SetPort(ai->ai_addr, static_cast<uint16_t>(*bound != 0 ? *bound : port));
    OwnedFd fd(::socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid()) continue;  // An address family this machine lacks.
    // SO_REUSEADDR lets a restarted node take its port back at once; never SO_REUSEPORT, with
    // which a second process could listen on the same port and silently take half the calls.
    const int yes = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (ai->ai_family == AF_INET6) {
      ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &yes, sizeof yes);
    }
    if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd.get(), 128) != 0) {
      const int err = errno;
      // A busy port is an error, except for a further address of a port picked at random.
      if (err == EADDRINUSE && (port != 0 || out->empty())) {
        ::freeaddrinfo(found);
        out->clear();
        return absl::UnavailableError(absl::StrCat("cannot listen on ", address, " (in use?)"));
      }
      failure = std::strerror(err);
      continue;
    }
    if (*bound == 0) *bound = BoundPort(fd.get());
    out->push_back(std::move(fd));
  }
  ::freeaddrinfo(found);
  if (out->empty()) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address, ": ", failure));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PaneListener>> PaneListener::Start(ListenerOptions options,
                                                                  ConnectionHandlers handlers) {
  std::unique_ptr<PaneListener> l(new PaneListener());
  l->options_ = std::move(options);
  l->handlers_ = std::move(handlers);
  l->drain_.Reset(::eventfd(0, EFD_CLOEXEC));
  l->stop_.Reset(::eventfd(0, EFD_CLOEXEC));
  if (!l->drain_.valid() || !l->stop_.valid()) {
    return absl::ResourceExhaustedError(absl::StrCat("eventfd: ", std::strerror(errno)));
  }
  if (absl::Status s = Listen(l->options_.address, &l->listening_, &l->port_); !s.ok()) return s;
  l->acceptor_ = std::thread([raw = l.get()] { raw->AcceptLoop(); });
  return l;
}

PaneListener::~PaneListener() { Stop(); }

void PaneListener::AcceptLoop() {
  std::vector<pollfd> fds;
  for (const OwnedFd& fd : listening_) {
    fds.push_back({.fd = fd.get(), .events = POLLIN, .revents = 0});
  }
  fds.push_back({.fd = drain_.get(), .events = POLLIN, .revents = 0});
  while (true) {
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      PLOG(ERROR) << "control pane on " << options_.address << ": poll failed; accepting no more";
      return;
    }
    if (fds.back().revents != 0) return;
    for (size_t i = 0; i + 1 < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      while (true) {
        OwnedFd conn(::accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC));
        if (!conn.valid()) {
          if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            LOG_EVERY_N(WARNING, 100) << "control pane on " << options_.address
                                      << ": cannot accept: " << std::strerror(errno);
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
          }
          break;  // EAGAIN: all accepted; ECONNABORTED and such: that client left.
        }
        const int fd = conn.get();
        auto shared = std::make_shared<OwnedFd>(std::move(conn));
        // Idle from now until it tells its protocol.
        if (!Spawn([this, shared](Worker* self) { Serve(self, std::move(*shared)); }, fd)) {
          LOG_EVERY_N(WARNING, 100)
              << "control pane on " << options_.address << ": " << options_.max_connections
              << " connections are busy already; closed one from " << PeerAddress(fd);
        }
      }
    }
    Reap();
  }
}

void PaneListener::Serve(Worker* self, OwnedFd connection) {
  const int one = 1;
  ::setsockopt(connection.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (options_.tls != nullptr) {
    options_.tls->Serve(std::move(connection), options_.first_bytes_timeout, SignalsFor(self),
                        [this, self](PaneProtocol protocol, OwnedFd plaintext) {
                          SetIdle(self, -1);
                          return Dispatch(protocol, std::move(plaintext), nullptr);
                        });
    return;
  }
  const PaneProtocol protocol =
      SniffProtocol(connection.get(), options_.first_bytes_timeout, drain_.get());
  SetIdle(self, -1);
  Dispatch(protocol, std::move(connection), self);
}

StopSignals PaneListener::SignalsFor(Worker* worker) {
  return {.drain_fd = drain_.get(), .stop_fd = stop_.get(), .idle = [this, worker](int fd) {
            SetIdle(worker, fd);
          }};
}

bool PaneListener::Dispatch(PaneProtocol protocol, OwnedFd fd, Worker* self) {
  if (protocol == PaneProtocol::kGrpc && handlers_.grpc) {
    if (!SetNonBlocking(fd.get())) return false;
    handlers_.grpc(fd.Release());
    return true;
  }
  if (protocol == PaneProtocol::kHttp1 && handlers_.rest) {
    if (self != nullptr) {
      handlers_.rest(fd.Release(), SignalsFor(self));
      return true;
    }
    auto shared = std::make_shared<OwnedFd>(std::move(fd));
    return Spawn([this, shared](Worker* w) { handlers_.rest(shared->Release(), SignalsFor(w)); });
  }
  VLOG(1) << "control pane on " << options_.address << ": closing a connection from "
          << PeerAddress(fd.get()) << " that is silent or speaks no protocol served here";
  return false;
}

bool PaneListener::Spawn(std::function<void(Worker*)> work, int idle_fd) {
  absl::MutexLock lock(&mu_);
  // Evicted connections end at once, but their threads still count: at most as many again.
  if (stopping_ || live_ >= 2 * options_.max_connections) return false;
  if (live_ - evicted_ >= options_.max_connections && !EvictIdlest()) return false;
  auto it = workers_.emplace(workers_.end());
  SetIdleLocked(&*it, idle_fd);
  try {
    it->thread = std::thread([this, it, work = std::move(work)] {
      work(&*it);
      absl::MutexLock lock(&mu_);
      it->idle.Reset();
      if (it->evicted) --evicted_;
      it->done = true;
      --live_;
    });
  } catch (const std::system_error& e) {
    workers_.erase(it);
    LOG_EVERY_N(WARNING, 100) << "control pane on " << options_.address
                              << ": cannot start a thread: " << e.what();
    return false;
  }
  ++live_;
  return true;
}

void PaneListener::SetIdle(Worker* worker, int fd) {
  absl::MutexLock lock(&mu_);
  SetIdleLocked(worker, fd);
}

void PaneListener::SetIdleLocked(Worker* worker, int fd) {
  // A duplicate, so that the socket outlives the connection's own descriptor while it is here.
  worker->idle.Reset(fd >= 0 && !worker->evicted ? ::fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1);
  worker->idle_since = absl::Now();
}

bool PaneListener::EvictIdlest() {
  // A connection whose client sent bytes that nobody read yet has a request waiting for its
  // thread (on a busy machine a thread can start late): it goes only when every idle one has.
  Worker* idlest = nullptr;
  Worker* idlest_quiet = nullptr;
  for (Worker& w : workers_) {
    if (!w.idle.valid()) continue;
    if (idlest == nullptr || w.idle_since < idlest->idle_since) idlest = &w;
    int unread = 0;
    const bool quiet = ::ioctl(w.idle.get(), FIONREAD, &unread) == 0 && unread == 0;
    if (quiet && (idlest_quiet == nullptr || w.idle_since < idlest_quiet->idle_since)) {
      idlest_quiet = &w;
    }
  }
  if (idlest_quiet != nullptr) idlest = idlest_quiet;
  if (idlest == nullptr) return false;
  LOG_EVERY_N(WARNING, 100) << "control pane on " << options_.address << ": "
                            << options_.max_connections
                            << " connections are served already; closed the one idle longest, "
                               "from "
                            << PeerAddress(idlest->idle.get());
  ::shutdown(idlest->idle.get(), SHUT_RDWR);
  idlest->idle.Reset();
  idlest->evicted = true;
  ++evicted_;
  return true;
}

void PaneListener::Reap() {
  std::list<Worker> finished;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = workers_.begin(); it != workers_.end();) {
      auto next = std::next(it);
      if (it->done) finished.splice(finished.end(), workers_, it);
      it = next;
    }
  }
  for (Worker& w : finished) w.thread.join();
}

void PaneListener::Drain() {
  {
    absl::MutexLock lock(&mu_);
    if (drained_) return;
    drained_ = true;
  }
  Raise(drain_);
  if (acceptor_.joinable()) acceptor_.join();
  listening_.clear();
}

void PaneListener::Stop() {
  Drain();
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  Raise(stop_);
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](int* live) { return *live == 0; }, &live_));
  }
  Reap();
}

}  // namespace marmot::pane
