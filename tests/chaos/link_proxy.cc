#include "tests/chaos/link_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <glog/logging.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>

#include "tests/testing/loopback_port.h"

namespace marmot::chaos {
namespace {

int ConnectLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  PCHECK(fd >= 0);
  sockaddr_in addr = testing::LoopbackAddress(port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Writes all of `n` bytes unless the peer is gone or the proxy stops.
bool WriteAll(int fd, const char* data, size_t n, const std::atomic<bool>& stopping) {
  while (n > 0 && !stopping.load()) {
    ssize_t w = write(fd, data, n);
    if (w < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<size_t>(w);
  }
  return n == 0;
}

}  // namespace

LinkProxy::LinkProxy(int target_port) : target_port_(target_port) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  PCHECK(listen_fd_ >= 0);
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr = testing::LoopbackAddress(0);
  PCHECK(bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  PCHECK(listen(listen_fd_, 64) == 0);
  socklen_t len = sizeof addr;
  PCHECK(getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

LinkProxy::~LinkProxy() {
  stopping_ = true;
  shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  close(listen_fd_);
  std::lock_guard<std::mutex> lock(mu_);
  for (std::thread& t : pumps_) t.join();
}

void LinkProxy::SetMode(LinkMode mode) {
  if (mode == LinkMode::kBlocked) ++block_epoch_;
  mode_ = mode;
}

void LinkProxy::AcceptLoop() {
  while (!stopping_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    if (mode_.load() == LinkMode::kBlocked) {
      close(client);
      continue;
    }
    int server = ConnectLoopback(target_port_);
    if (server < 0) {  // The peer is down: the dialer sees what it would see without us.
      close(client);
      continue;
    }
    int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // A write that cannot progress gives up after a second and is retried, so a stopping proxy
    // never hangs in write().
    timeval timeout{1, 0};
    setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    setsockopt(server, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    std::lock_guard<std::mutex> lock(mu_);
    pumps_.emplace_back([this, client, server] { Pump(client, server); });
  }
}

void LinkProxy::Pump(int client, int server) {
  const uint64_t epoch = block_epoch_.load();
  char buf[64 << 10];
  while (!stopping_.load() && block_epoch_.load() == epoch) {
    LinkMode mode = mode_.load();
    pollfd p[2] = {{client, 0, 0}, {server, 0, 0}};
    if (mode != LinkMode::kStallForward) p[0].events = POLLIN;
    if (mode != LinkMode::kStallBackward) p[1].events = POLLIN;
    int r = poll(p, 2, 50);
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    bool broken = false;
    for (int i = 0; i < 2 && !broken; ++i) {
      if (p[i].revents & (POLLERR | POLLNVAL)) broken = true;
      if (!(p[i].revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = read(p[i].fd, buf, sizeof buf);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0 || !WriteAll(p[1 - i].fd, buf, static_cast<size_t>(n), stopping_)) broken = true;
    }
    if (broken) break;
  }
  close(client);
  close(server);
}

}  // namespace marmot::chaos
