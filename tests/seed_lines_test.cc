// The original Marmot's "Running" lines, run verbatim (the binary's path for `marmot`): two
// nodes on one machine, fixed ports, databases in /tmp, the deprecated -replicate, and the
// default -raft-path, /tmp/raft, shared by both. Users of the original expect them to work.
//
// Verbatim means machine-wide paths and ports, so the test guards them:
// - One run at a time on the machine: an exclusive lock on kLockFile (and `exclusive` in
//   BUILD, so that runs of one `bazel test` do not queue on it).
// - It never deletes what it did not make. Before it creates anything it writes kOwnedFile,
//   and removes it after its cleanup: a run that was killed leaves the marker, and the next run
//   cleans up after it. Without the marker, any of the paths below existing (a user's own run
//   of these lines, say) fails the test with the list, and nothing is touched.
// - Ports 8161, 8162, 6001 and 6002 must be free (the test ports of this repository come from
//   10000 and up, tests/testing/loopback_port.h); a busy one fails the test naming it.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/paths.h"
#include "tests/testing/subprocess.h"

namespace marmot {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr const char* kSeedLines[] = {
    "marmot -bootstrap 2@127.0.0.1:8162 -bind 127.0.0.1:8161 -bind-pane localhost:6001 -node-id 1 "
    "-replicate table1,table2 -db-path /tmp/cache-1.db",
    "marmot -bootstrap 1@127.0.0.1:8161 -bind 127.0.0.1:8162 -bind-pane localhost:6002 -node-id 2 "
    "-replicate table1,table2 -db-path /tmp/cache-2.db",
};
constexpr char kLockFile[] = "/tmp/marmot-seed-lines-test.lock";
constexpr char kOwnedFile[] = "/tmp/marmot-seed-lines-test.owned";
constexpr char kRaftPath[] = "/tmp/raft";  // marmot's default -raft-path.

// Everything the two lines create, and the store of an older version that they would use.
std::vector<std::string> SeedPaths() {
  std::vector<std::string> paths;
  for (int id : {1, 2}) {
    const std::string db = absl::StrCat("/tmp/cache-", id, ".db");
    for (const char* suffix : {"", "-wal", "-shm", "-journal", "-marmot.lock"})
      paths.push_back(db + suffix);
    paths.push_back(absl::StrCat(kRaftPath, "/node-", id));
  }
  paths.push_back(std::string(kRaftPath) + "/db");
  return paths;
}

bool PortFree(int family, int port) {
  const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return true;  // No such family here: nothing can listen on it.
  bool ok;
  if (family == AF_INET) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  } else {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    a.sin6_port = htons(static_cast<uint16_t>(port));
    ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 || errno == EADDRNOTAVAIL;
  }
  ::close(fd);
  return ok;
}

// Holds the machine-wide lock and the paths for one run; cleans up what the run made.
class SeedPathsOwner {
 public:
  ~SeedPathsOwner() {
    if (owned_) {
      Clean();
      fs::remove(kOwnedFile);
    }
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }

  // Waits for the lock (up to 10 minutes: other worktrees may run this test too), then takes
  // the paths; "" on success, else why not.
  std::string Acquire() {
    lock_fd_ = ::open(kLockFile, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (lock_fd_ < 0) return absl::StrCat("cannot open ", kLockFile);
    if (!testing::WaitFor([&] { return ::flock(lock_fd_, LOCK_EX | LOCK_NB) == 0; }, 10min)) {
      return absl::StrCat("another run held ", kLockFile, " for 10 minutes");
    }
    std::error_code ec;
    if (fs::exists(kOwnedFile, ec)) {
      Clean();  // What a killed run of this test left.
    } else {
      std::vector<std::string> found;
      for (const std::string& p : SeedPaths()) {
        if (fs::exists(fs::symlink_status(p, ec))) found.push_back(p);
      }
      if (!found.empty()) {
        return absl::StrCat(
            "these paths exist and this test did not make them (it never deletes what it did not "
            "make); "
            "move them away to run it: ",
            absl::StrJoin(found, " "));
      }
    }
    for (int port : {8161, 8162, 6001, 6002}) {
      if (!PortFree(AF_INET, port) || !PortFree(AF_INET6, port)) {
        return absl::StrCat("port ", port, " is in use on loopback (a tools/dev demo running?)");
      }
    }
    std::ofstream(kOwnedFile) << "owned by the test process " << ::getpid() << "\n";
    owned_ = true;
    raft_path_existed_ = fs::exists(kRaftPath, ec);
    return "";
  }

 private:
  void Clean() {
    std::error_code ec;
    for (const std::string& p : SeedPaths()) {
      if (p != std::string(kRaftPath) + "/db") fs::remove_all(p, ec);
    }
    if (!raft_path_existed_ && fs::is_empty(kRaftPath, ec)) fs::remove(kRaftPath, ec);
  }

  int lock_fd_ = -1;
  bool owned_ = false;
  bool raft_path_existed_ = true;
};

TEST(SeedLinesTest, TheOriginalRunningLinesReplicateBothWays) {
  SeedPathsOwner owner;
  const std::string refused = owner.Acquire();
  ASSERT_EQ(refused, "");

  // Given both databases with the two tables, made with the sqlite3 shell
  const std::string schema =
      "CREATE TABLE table1 (id INTEGER PRIMARY KEY, name TEXT);"
      "CREATE TABLE table2 (id INTEGER PRIMARY KEY, amount REAL, note BLOB);";
  for (int id : {1, 2}) {
    ASSERT_TRUE(sqlite::testing::RunSqliteCli(absl::StrCat("/tmp/cache-", id, ".db"), schema).ok());
  }
  // when the two lines run as they are written
  const std::string logs = testing::NewTestDir("seed-lines");
  std::vector<std::unique_ptr<testing::Subprocess>> nodes;
  for (const char* line : kSeedLines) {
    std::vector<std::string> argv = absl::StrSplit(line, ' ');
    ASSERT_EQ(argv[0], "marmot");
    argv[0] = testing::MarmotBinary();
    nodes.push_back(std::make_unique<testing::Subprocess>(argv, logs));
  }
  for (auto& node : nodes) {
    ASSERT_TRUE(testing::WaitFor(
        [&] { return node->Stderr().find(" replicating ") != std::string::npos; }, 60s))
        << node->Stderr();
    EXPECT_THAT(node->Stderr(), ::testing::HasSubstr("-replicate is deprecated and ignored"));
  }
  EXPECT_TRUE(fs::exists(std::string(kRaftPath) + "/node-1/db/CURRENT"));
  EXPECT_TRUE(fs::exists(std::string(kRaftPath) + "/node-2/db/CURRENT"));

  // then rows written on either node reach the other, in both tables
  auto sql = [](int id, const std::string& q) {
    auto out = sqlite::testing::RunSqliteCli(absl::StrCat("/tmp/cache-", id, ".db"), q);
    return out.ok() ? *out : out.status().ToString();
  };
  auto both_hold = [&](const std::string& expected) {
    const std::string all =
        "SELECT id, name FROM table1 ORDER BY id; SELECT id, amount, hex(note) FROM table2 ORDER "
        "BY id;";
    const bool same =
        testing::WaitFor([&] { return sql(1, all) == expected && sql(2, all) == expected; }, 60s);
    EXPECT_TRUE(same) << "node 1:\n"
                      << sql(1, all) << "node 2:\n"
                      << sql(2, all) << nodes[0]->Stderr() << nodes[1]->Stderr();
    return same;
  };
  ASSERT_EQ(sql(1,
                "INSERT INTO table1 VALUES (1, 'written on node 1');"
                "INSERT INTO table2 VALUES (1, 1.5, x'00ff');"),
            "");
  ASSERT_EQ(sql(2,
                "INSERT INTO table1 VALUES (2, 'written on node 2');"
                "INSERT INTO table2 VALUES (2, -2.25, NULL);"),
            "");
  ASSERT_TRUE(both_hold("1|written on node 1\n2|written on node 2\n1|1.5|00FF\n2|-2.25|\n"));
  // Each node changes a row the other wrote.
  ASSERT_EQ(sql(2, "UPDATE table1 SET name = name || ', changed on node 2' WHERE id = 1;"), "");
  ASSERT_EQ(sql(1, "DELETE FROM table2 WHERE id = 2;"), "");
  both_hold("1|written on node 1, changed on node 2\n2|written on node 2\n1|1.5|00FF\n");

  // and each node's one pane port answers REST (health, metrics) beside gRPC.
  for (int port : {6001, 6002}) {
    testing::RunResult health =
        testing::Run({"/usr/bin/curl", "-fsS", absl::StrCat("localhost:", port, "/healthz")}, 20s);
    EXPECT_EQ(health.exit_code, 0) << health.err;
    EXPECT_EQ(health.out, "ok\n");
    testing::RunResult metrics =
        testing::Run({"/usr/bin/curl", "-fsS", absl::StrCat("localhost:", port, "/metrics")}, 20s);
    EXPECT_THAT(metrics.out, ::testing::HasSubstr("marmot_"));
  }
  for (auto& node : nodes) {
    node->Signal(SIGTERM);
    EXPECT_EQ(node->Wait(30s), std::optional<int>(0)) << node->Stderr();
  }
}

}  // namespace
}  // namespace marmot
