// A second process started with the -node-id of a live node (its own -bind, database and raft
// folder, the same -bootstrap list), as an operator might by mistake (issue 18, item 7): it is
// refused at once and exits with a line naming the id and the live node's address, and the
// cluster it tried to enter stays whole: rows written on every node reach every node, every
// shard keeps a leader.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "raft/host/node_incarnation.h"
#include "sqlite/database.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/loopback_port.h"
#include "tests/testing/paths.h"
#include "tests/testing/subprocess.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

constexpr int kShards = 4;
constexpr char kSchema[] = "CREATE TABLE t (id INTEGER PRIMARY KEY, node INTEGER, seq INTEGER);";
constexpr char kAuthKey[] = "Basic bWFybW90OnNlY3JldA==";

// Node `id`'s view of the leader of each shard (0: none known), from its GET /v1/status.
std::map<int, uint64_t> ShardLeaders(const testing::LocalCluster& c, int id) {
  httplib::Client rest("127.0.0.1", c.pane_port(id));
  rest.set_read_timeout(5, 0);
  httplib::Result r = rest.Get("/v1/status", {{"Authorization", kAuthKey}});
  std::map<int, uint64_t> leaders;
  if (!r || r->status != 200) return leaders;
  static const std::regex kShard(R"re("shard"\s*:\s*"?(\d+)"?\s*,\s*"leader"\s*:\s*"?(\d+)"?)re");
  for (auto it = std::sregex_iterator(r->body.begin(), r->body.end(), kShard);
       it != std::sregex_iterator(); ++it) {
    leaders[std::stoi((*it)[1])] = std::stoull((*it)[2]);
  }
  return leaders;
}

bool EveryShardHasALeaderEverywhere(const testing::LocalCluster& c) {
  for (int id = 1; id <= c.nodes(); ++id) {
    const std::map<int, uint64_t> leaders = ShardLeaders(c, id);
    if (leaders.size() != kShards) return false;
    for (const auto& [shard, leader] : leaders) {
      if (leader == 0) return false;
    }
  }
  return true;
}

// One writer per node inserting rows (id = node * 10^7 + seq) into that node's database as an
// application would, until stopped.
class Writers {
 public:
  explicit Writers(const testing::LocalCluster& c) {
    for (int id = 1; id <= c.nodes(); ++id) {
      threads_.emplace_back([this, id, path = c.db_path(id)] {
        absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(path, {.busy_timeout = 10s});
        ASSERT_TRUE(db.ok()) << db.status();
        for (int seq = 1; !stop_.load(); ++seq) {
          const absl::Status s = db->Exec(absl::StrCat(
              "INSERT INTO t VALUES (", id * 10000000 + seq, ", ", id, ", ", seq, ");"));
          ASSERT_TRUE(s.ok()) << s;
          ++written_;
          std::this_thread::sleep_for(5ms);
        }
      });
    }
  }
  ~Writers() { Stop(); }
  void Stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  int written() const { return written_.load(); }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> written_{0};
  std::vector<std::thread> threads_;
};

std::string RowsPerNode(const testing::LocalCluster& c) {
  std::string out;
  for (int id = 1; id <= c.nodes(); ++id) {
    absl::StrAppend(&out, "node ", id, ": ",
                    c.Sql(id, "SELECT node, count(*) FROM t GROUP BY node ORDER BY node;"), "\n");
  }
  return out;
}

// The argv of a process that takes node `id`'s place with its own ports and folders in `dir`
// and -bootstrap list `bootstrap`.
std::vector<std::string> DuplicateArgv(int id, const std::string& dir, const std::string& bootstrap,
                                       int port) {
  return {testing::MarmotBinary(),
          absl::StrCat("-node-id=", id),
          absl::StrCat("-bind=127.0.0.1:", port),
          absl::StrCat("-bind-pane=127.0.0.1:", testing::FreeLoopbackPort()),
          absl::StrCat("-bind-rest=127.0.0.1:", testing::FreeLoopbackPort()),
          "-bootstrap=" + bootstrap,
          absl::StrCat("-shards=", kShards),
          "-db-path=" + dir + "/duplicate.db",
          "-raft-path=" + dir + "/duplicate-raft"};
}

class DuplicateNodeProcessTest : public ::testing::TestWithParam<int> {};

TEST_P(DuplicateNodeProcessTest, IsRefusedAndTheClusterStaysWhole) {
  const int dup_id = GetParam();
  setenv("AUTH_KEY", kAuthKey, 1);
  testing::LocalCluster c({.nodes = 3, .shards = kShards, .schema = kSchema});
  c.Start();
  ASSERT_TRUE(testing::WaitFor([&] { return EveryShardHasALeaderEverywhere(c); }, 30s));
  Writers writers(c);
  ASSERT_TRUE(testing::WaitFor([&] { return writers.written() > 100; }, 30s));

  // When a second process starts as node `dup_id` with the cluster's -bootstrap list,
  const std::string dir = testing::NewTestDir("duplicate");
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(dir + "/duplicate.db", kSchema).ok());
  // (the other members, as the seed's README lists them: marmot refuses a list that gives this
  // id another address than -bind)
  std::vector<std::string> members;
  for (int id = 1; id <= c.nodes(); ++id) {
    if (id != dup_id) members.push_back(absl::StrCat(id, "@", c.address(id)));
  }
  const int dup_port = testing::FreeLoopbackPort();
  testing::Subprocess dup(DuplicateArgv(dup_id, dir, absl::StrJoin(members, ","), dup_port), dir);

  // then it exits, non-zero, with a line naming its id and the live node's address,
  std::optional<int> code = dup.Wait(20s);
  if (!code) code = dup.Stop(SIGTERM, 30s);
  const std::string dup_log = dup.Stderr();
  EXPECT_EQ(*code, raft::host::kDuplicateNodeExitCode) << dup_log;
  std::smatch line;
  ASSERT_TRUE(
      std::regex_search(dup_log, line, std::regex("another process runs with this node's id: .*")))
      << dup_log;
  std::cerr << "the duplicate's last line: " << line[0] << "\n";
  EXPECT_THAT(line[0].str(),
              HasSubstr(absl::StrCat("node ", dup_id, " already runs: the process listening at ",
                                     c.address(dup_id))));
  // It never took part: none of the cluster's rows reached its database.
  EXPECT_EQ(
      sqlite::testing::RunSqliteCli(dir + "/duplicate.db", "SELECT count(*) FROM t;").value_or(""),
      "0\n");

  // and once it is gone the cluster is whole: rows written on every node reach every node within
  // seconds, and every shard has a leader on every node.
  std::this_thread::sleep_for(1s);
  writers.Stop();
  EXPECT_TRUE(
      c.WaitForSame("SELECT node, count(*), sum(seq) FROM t GROUP BY node ORDER BY node;", 20s))
      << RowsPerNode(c);
  EXPECT_TRUE(testing::WaitFor([&] { return EveryShardHasALeaderEverywhere(c); }, 10s));
  for (int id = 1; id <= c.nodes(); ++id) {
    c.Sql(id, absl::StrCat("INSERT INTO t VALUES (", 900000000 + id, ", ", id, ", 0);"));
  }
  // (The probe names the rows: a count would agree at once, each node holding only its own.)
  const std::string probe =
      "SELECT group_concat(id) FROM (SELECT id FROM t WHERE id > 900000000 ORDER BY id);";
  EXPECT_TRUE(c.WaitForSame(probe, 20s)) << RowsPerNode(c);
  EXPECT_EQ(c.Sql(1, probe), "900000001,900000002,900000003\n");
  if (HasFailure()) {
    for (int id = 1; id <= c.nodes(); ++id) {
      const std::string l = c.log(id);
      std::cerr << "==== node " << id << ", last lines:\n"
                << (l.size() > 8000 ? l.substr(l.size() - 8000) : l);
      httplib::Client rest("127.0.0.1", c.pane_port(id));
      httplib::Result r = rest.Get("/v1/status", {{"Authorization", kAuthKey}});
      if (r) std::cerr << "==== node " << id << ", status:\n" << r->body << "\n";
    }
  }
  for (int id = 1; id <= c.nodes(); ++id) {
    EXPECT_THAT(c.log(id), ::testing::Not(HasSubstr("Check failed"))) << "node " << id;
  }
}

INSTANTIATE_TEST_SUITE_P(EveryId, DuplicateNodeProcessTest, ::testing::Values(1, 2, 3),
                         [](const auto& info) { return absl::StrCat("Node", info.param); });

}  // namespace
}  // namespace marmot
