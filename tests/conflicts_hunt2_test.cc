// Issue 20 hunt, second round: what an operator and an application do around conflicts, Verify
// and Repair, and the flags that bring rows in. Real marmot processes, the sqlite3 shell as the
// application, the pane over REST.
#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/pane_client.h"
#include "tests/testing/paths.h"
#include "tests/testing/subprocess.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

constexpr char kAuth[] = "Basic aHVudDpodW50";

class ConflictsHunt2Test : public ::testing::Test {
 protected:
  void SetUp() override { setenv("AUTH_KEY", kAuth, 1); }
};

// Repair while an application inserts on one node: rows on their way (committed on their node,
// not yet in the shard when Repair listed the differing keys) show as rows only that node has.
// Repair deleted them there, with capture on: the delete followed the insert everywhere, and
// the inserts were gone on every node, kept nowhere (1,000 of 18,000 rows in one run). Real
// divergence (rows written behind marmot's back) is still repaired.
TEST_F(ConflictsHunt2Test, RepairDuringInsertsDeletesNoInsertedRow) {
  testing::LocalCluster c({.nodes = 3,
                           .shards = 1,
                           .schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
                                     "CREATE TABLE u (id INTEGER PRIMARY KEY, v TEXT);"});
  c.Start();
  for (int id = 1; id <= 3; ++id) ASSERT_TRUE(c.WaitUntilReady(id, 30s));
  c.Sql(1, "INSERT INTO u VALUES (1, 'one'), (2, 'two');");
  constexpr char kU[] = "SELECT id, v FROM u ORDER BY id;";
  ASSERT_TRUE(c.WaitForSame(kU, 30s));
  // Behind marmot's back on node 2: one row changed, one only it has.
  c.Sql(2,
        ".dbconfig enable_trigger off\n"
        "UPDATE u SET v = 'changed' WHERE id = 1; INSERT INTO u VALUES (3, 'extra');");
  constexpr int kBatches = 150, kPerBatch = 200, kRows = kBatches * kPerBatch;
  std::atomic<bool> done = false;
  std::thread writer([&] {
    for (int b = 0; b < kBatches; ++b) {
      c.Sql(3, absl::StrCat("WITH RECURSIVE n(i) AS (SELECT ", b * kPerBatch + 1,
                            " UNION ALL SELECT i + 1 FROM n WHERE i < ", (b + 1) * kPerBatch,
                            ") INSERT INTO t SELECT i, 'row ' || i FROM n;"));
    }
    done = true;
  });
  int repairs = 0;
  while (!done || repairs < 2) {
    auto res = testing::PaneCall(c, 1, kAuth, "POST", "/v1/repair",
                                 "{\"shard\": 0, \"timeoutSeconds\": 5}");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << res->body;
    ++repairs;
  }
  writer.join();
  constexpr char kCount[] = "SELECT count(*) FROM t;";
  EXPECT_TRUE(c.WaitForSame(kCount, 60s));
  for (int id = 1; id <= 3; ++id) {
    EXPECT_EQ(c.Sql(id, kCount), absl::StrCat(kRows, "\n")) << "node " << id;
    EXPECT_EQ(c.Sql(id, "SELECT count(*) FROM \"__marmot__conflicts\";"), "0\n");
  }
  // The divergence is repaired: node 1's version of row 1, row 3 gone.
  auto res = testing::PaneCall(c, 1, kAuth, "POST", "/v1/repair",
                               "{\"shard\": 0, \"timeoutSeconds\": 30}");
  ASSERT_TRUE(res);
  EXPECT_THAT(res->body, HasSubstr("\"divergent\":false"));
  EXPECT_TRUE(c.WaitForSame(kU, 30s));
  EXPECT_EQ(c.Sql(2, kU), "1|one\n2|two\n");
  std::printf("repairs: %d; node 3 left rows alone: %s\n", repairs,
              c.log(3).find("row(s) of \"t\" alone") != std::string::npos ? "yes" : "no");
}

// Conflicts of rows of a few MiB: kept on every node and listed, a page at a time. Over REST a
// conflict above 4 MiB was refused (429, "Received message larger than max (6291542 vs.
// 4194304)": the gateway's own channel had gRPC's default limit), and the operator could list
// no page holding it; a page of many of them was read whole into memory.
TEST_F(ConflictsHunt2Test, ConflictsOfHugeRowsAreKeptAndListedPageByPage) {
  testing::LocalCluster c(
      {.nodes = 3, .shards = 1, .schema = "CREATE TABLE f (id INTEGER PRIMARY KEY, data BLOB);"});
  c.Start();
  c.Sql(1, "INSERT INTO f VALUES (1, x'00'), (2, x'00');");
  constexpr char kRows[] = "SELECT id, length(data), hex(substr(data, 1, 4)) FROM f;";
  ASSERT_TRUE(c.WaitForSame(kRows, 30s));
  ASSERT_EQ(c.StopNode(3), 0);
  constexpr int kBytes = 6 << 20;
  c.Sql(3, absl::StrCat("UPDATE f SET data = CAST(x'03' || zeroblob(", kBytes, ") AS BLOB);"));
  c.Sql(1, "UPDATE f SET data = x'01';");
  ASSERT_TRUE(testing::WaitFor([&] { return c.Sql(2, kRows) == "1|1|01\n2|1|01\n"; }, 30s));
  c.StartNode(3);
  constexpr char kKept[] =
      "SELECT origin, op, length(change) > 6291456 FROM \"__marmot__conflicts\";";
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        for (int id = 1; id <= 3; ++id) {
          if (c.Sql(id, kKept) != "3|U|1\n3|U|1\n") return false;
        }
        return true;
      },
      60s))
      << c.Sql(1, kKept) << c.Sql(3, kKept);
  EXPECT_TRUE(c.WaitForSame(kRows, 30s));
  EXPECT_EQ(c.Sql(3, kRows), "1|1|01\n2|1|01\n");
  // One conflict per page (each is above the page's budget), both found by paging on.
  std::string before;
  for (int page = 0; page < 2; ++page) {
    auto res = testing::PaneCall(c, 1, kAuth, "GET", absl::StrCat("/v1/conflicts", before));
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body.substr(0, 1000);
    admin::v1::ListConflictsResponse list;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(res->body, &list).ok());
    EXPECT_EQ(list.total(), 2);
    ASSERT_EQ(list.conflicts_size(), 1);
    const admin::v1::Conflict& kept = list.conflicts(0);
    ASSERT_EQ(kept.row_size(), 2);
    EXPECT_EQ(kept.row(1).value().blob().size(), kBytes + 1);
    EXPECT_EQ(kept.row(1).value().blob().substr(0, 1), "\x03");
    before = absl::StrCat("?before_id=", kept.id());
  }
}

}  // namespace
}  // namespace marmot
