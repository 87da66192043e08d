#include "tests/testing/loopback_port.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace marmot::testing {
namespace {

std::pair<int, int> EphemeralRange() {
  int low = 0, high = 0;
  FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
  EXPECT_NE(f, nullptr);
  EXPECT_EQ(std::fscanf(f, "%d %d", &low, &high), 2);
  std::fclose(f);
  return {low, high};
}

bool Listen(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = LoopbackAddress(port);
  const bool ok =
      bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && listen(fd, 1) == 0;
  close(fd);
  return ok;
}

TEST(FreeLoopbackPortTest, PortsAreBindableDistinctAndOutsideTheEphemeralRange) {
  const auto [low, high] = EphemeralRange();
  std::set<int> seen;
  for (int i = 0; i < 200; ++i) {
    const int port = FreeLoopbackPort();
    EXPECT_TRUE(port < low || port > high) << port << " is in " << low << "-" << high;
    EXPECT_TRUE(seen.insert(port).second) << port << " handed out twice";
    EXPECT_TRUE(Listen(port)) << port;
  }
}

TEST(FreeLoopbackPortTest, AnotherProcessNeverGetsAPortThisOneHolds) {
  // After fork both processes would walk the same sequence of ports: the child takes five and
  // reports them, then the parent takes five while the child still runs.
  int to_parent[2], to_child[2];
  ASSERT_EQ(pipe(to_parent), 0);
  ASSERT_EQ(pipe(to_child), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int ports[5];
    for (int& p : ports) p = FreeLoopbackPort();
    if (write(to_parent[1], ports, sizeof ports) != sizeof ports) _exit(1);
    char done;
    _exit(read(to_child[0], &done, 1) == 1 ? 0 : 2);  // Hold the ports until the parent is done.
  }
  int theirs[5];
  ASSERT_EQ(read(to_parent[0], theirs, sizeof theirs), static_cast<ssize_t>(sizeof theirs));
  std::set<int> child_ports(theirs, theirs + 5);
  for (int i = 0; i < 5; ++i) {
    const int port = FreeLoopbackPort();
    EXPECT_EQ(child_ports.count(port), 0u) << port << " was given to both processes";
  }
  ASSERT_EQ(write(to_child[1], "x", 1), 1);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace marmot::testing
