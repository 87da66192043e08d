#include "tests/testing/loopback_port.h"

#include <glog/logging.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <string>

namespace marmot::testing {
namespace {

// The kernel's ephemeral range, from which outgoing connections take their source ports.
std::pair<int, int> EphemeralRange() {
  int low = 32768, high = 60999;
  if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    if (std::fscanf(f, "%d %d", &low, &high) != 2) low = 32768, high = 60999;
    std::fclose(f);
  }
  return {low, high};
}

// Holds an abstract unix socket named after the port for the rest of the process; fails if
// another process (another test running beside this one) holds it.
bool Reserve(int port) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  PCHECK(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string name = "marmot-test-port-" + std::to_string(port);
  std::memcpy(addr.sun_path + 1, name.data(), name.size());  // sun_path[0] = 0: abstract.
  const socklen_t len = offsetof(sockaddr_un, sun_path) + 1 + name.size();
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    close(fd);
    return false;
  }
  return true;  // The descriptor stays open until the process exits.
}

bool FreeNow(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  PCHECK(fd >= 0);
  sockaddr_in addr = LoopbackAddress(port);
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

}  // namespace

sockaddr_in LoopbackAddress(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
}

int FreeLoopbackPort() {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  // Ports from 10000 up to the ephemeral range (or above it when the range starts low), tried
  // from a random start so that concurrent test processes rarely contend.
  const auto [low, high] = EphemeralRange();
  const int first = low > 12000 ? 10000 : high + 1;
  const int last = low > 12000 ? low - 1 : 65535;
  CHECK_LT(first, last) << "no ports outside the ephemeral range " << low << "-" << high;
  static std::mt19937 rng(std::random_device{}());
  static int next = std::uniform_int_distribution<int>(first, last)(rng);
  for (int tried = 0; tried <= last - first; ++tried) {
    const int port = next;
    next = next == last ? first : next + 1;
    if (Reserve(port) && FreeNow(port)) return port;
  }
  LOG(FATAL) << "no free loopback port in " << first << "-" << last;
}

}  // namespace marmot::testing
