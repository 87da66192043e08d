// Issue 20 hunt, second round: what an operator and an application do around conflicts, Verify
// and Repair, and the flags that bring rows in. Real marmot processes, the sqlite3 shell as the
// application, the pane over REST.
#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "proto/admin.pb.h"
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
  constexpr int kBatches = 100, kPerBatch = 200, kRows = kBatches * kPerBatch;
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
  testing::LocalCluster c({.nodes = 3,
                           .shards = 1,
                           .schema = "CREATE TABLE f (id INTEGER PRIMARY KEY, data BLOB);",
                           .extra_flags = {"-snapshot-entries=20", "-snapshot-piece-bytes=65536"}});
  c.Start();
  c.Sql(1, "INSERT INTO f VALUES (1, x'00'), (2, x'00');");
  constexpr char kRows[] = "SELECT id, length(data), hex(substr(data, 1, 4)) FROM f;";
  ASSERT_TRUE(c.WaitForSame(kRows, 30s));
  ASSERT_EQ(c.StopNode(3), 0);
  constexpr int kBytes = 5 << 20;
  c.Sql(3, absl::StrCat("UPDATE f SET data = CAST(x'03' || zeroblob(", kBytes, ") AS BLOB);"));
  c.Sql(1, "UPDATE f SET data = x'01';");
  ASSERT_TRUE(testing::WaitFor([&] { return c.Sql(2, kRows) == "1|1|01\n2|1|01\n"; }, 30s));
  c.StartNode(3);
  constexpr char kKept[] =
      "SELECT origin, op, length(change) > 5242880 FROM \"__marmot__conflicts\";";
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
  // Node 2 falls behind the compacted log and installs a snapshot: it carries them whole.
  ASSERT_EQ(c.StopNode(2), 0);
  for (int i = 0; i < 50; ++i) {
    c.Sql(1 + 2 * (i % 2), absl::StrCat("INSERT INTO f VALUES (", 10 + i, ", x'00');"));
  }
  // Both live nodes snapshot and compact their logs past what node 2 has.
  ASSERT_TRUE(testing::WaitFor([&] { return c.Sql(1, kRows) == c.Sql(3, kRows); }, 30s));
  for (int id : {1, 3}) {
    auto snapshot = testing::PaneCall(c, id, kAuth, "POST", "/v1/snapshots", "{\"all\": true}");
    ASSERT_TRUE(snapshot);
    ASSERT_EQ(snapshot->status, 200) << snapshot->body;
  }
  c.StartNode(2);
  constexpr char kConflicts[] =
      "SELECT shard, raft_index, tbl, key, origin, change_id, op, winner_origin, "
      "winner_change_id, at_ms, length(change), hex(sha3(change)) FROM \"__marmot__conflicts\" "
      "ORDER BY origin, change_id;";
  EXPECT_TRUE(c.WaitForSame(kRows, 60s));
  EXPECT_TRUE(c.WaitForSame(kConflicts, 30s)) << c.Sql(1, kConflicts) << c.Sql(2, kConflicts);
  EXPECT_THAT(c.log(2), HasSubstr("installed a snapshot"));
}

// Every node killed at once while all three edit the same rows, the edits going on while they
// are down, then all started at once: every edit is in its row's history or kept as a
// conflict, the same on every node.
TEST_F(ConflictsHunt2Test, EveryNodeKilledAtOnceDuringConflictingEditsLosesNoEdit) {
  testing::LocalCluster c({.nodes = 3,
                           .shards = 2,
                           .schema = "CREATE TABLE doc (id INTEGER PRIMARY KEY, body TEXT, "
                                     "edits INTEGER);",
                           .extra_flags = {"-snapshot-entries=20"}});
  c.Start();
  constexpr int kDocs = 4;
  c.Sql(1, "INSERT INTO doc VALUES (1, 's', 0), (2, 's', 0), (3, 's', 0), (4, 's', 0);");
  constexpr char kRows[] = "SELECT id, body, edits FROM doc ORDER BY id;";
  ASSERT_TRUE(c.WaitForSame(kRows, 30s));
  constexpr int kRounds = 24;
  std::atomic<int> rounds_done = 0, written = 0;
  std::vector<std::thread> writers;
  for (int node = 1; node <= 3; ++node) {
    writers.emplace_back([&, node] {
      for (int i = 0; i < kRounds; ++i) {
        std::string sql;
        for (int id = 1; id <= kDocs; ++id) {
          absl::StrAppend(&sql, "UPDATE doc SET body = 'n", node, ".", i,
                          "', edits = edits + 1 WHERE id = ", id, ";");
        }
        // One transaction per round; a busy database is waited out, never skipped.
        absl::StatusOr<std::string> done = sqlite::testing::RunSqliteCli(
            c.db_path(node), absl::StrCat(".timeout 20000\nBEGIN;", sql, "COMMIT;"));
        EXPECT_TRUE(done.ok()) << done.status();
        if (done.ok()) ++written;
        ++rounds_done;
      }
    });
  }
  ASSERT_TRUE(testing::WaitFor([&] { return rounds_done >= 3 * 8; }, 60s));
  for (int id = 1; id <= 3; ++id) c.KillNode(id);
  ASSERT_TRUE(testing::WaitFor([&] { return rounds_done >= 3 * 16; }, 60s));
  for (int id = 1; id <= 3; ++id) c.StartNode(id);
  for (std::thread& w : writers) w.join();
  for (int id = 1; id <= 3; ++id) ASSERT_TRUE(c.WaitUntilReady(id, 60s)) << c.log(id);
  // Each of the 3 x kRounds edits of a row: applied (counted in edits) or kept.
  const std::string accounted = absl::StrCat(
      "SELECT group_concat(n) FROM (SELECT d.edits + (SELECT count(*) FROM "
      "\"__marmot__conflicts\" AS f WHERE f.tbl = 'doc' AND f.key = quote(d.id)) AS n "
      "FROM doc AS d ORDER BY d.id);");
  const int w = written;
  const std::string expected = absl::StrCat(w, ",", w, ",", w, ",", w, "\n");
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        for (int id = 1; id <= 3; ++id) {
          if (c.Sql(id, accounted) != expected) return false;
        }
        return true;
      },
      90s))
      << c.Sql(1, accounted) << c.Sql(2, accounted) << c.Sql(3, accounted);
  EXPECT_TRUE(c.WaitForSame(kRows, 30s));
  constexpr char kConflicts[] =
      "SELECT tbl, key, origin, change_id, op, winner_origin, winner_change_id FROM "
      "\"__marmot__conflicts\" ORDER BY origin, change_id;";
  EXPECT_TRUE(c.WaitForSame(kConflicts, 30s));
  for (int id = 1; id <= 3; ++id) {
    EXPECT_EQ(c.Sql(id, "SELECT count(*) FROM \"__marmot__dead_letters\";"), "0\n");
    EXPECT_EQ(c.Sql(id, "SELECT count(*) FROM \"__marmot__versions\" WHERE held IS NOT NULL;"),
              "0\n");
  }
  std::printf("kept %s", c.Sql(1, "SELECT count(*) FROM \"__marmot__conflicts\";").c_str());
}

// The seeding node crashes right after it put capture on its big table (its rows copied into
// its change log, few shipped), while the others write rows of their own; restarted, with
// -seed as before, it ships the rest: every row everywhere.
TEST_F(ConflictsHunt2Test, ASeedingNodeKilledRightAfterCaptureStillSeedsEveryRow) {
  constexpr int kSeeded = 50000;
  testing::LocalCluster c(
      {.nodes = 3,
       .shards = 4,
       .schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);",
       .rows_before = {
           {1, absl::StrCat("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
                            "FROM n WHERE i < ",
                            kSeeded, ") INSERT INTO t SELECT i, 'seed ' || i FROM n;")}}});
  c.SetNodeFlags(1, {"-seed"});
  c.Start();
  c.KillNode(1);
  const std::string shipped = c.Sql(2, "SELECT count(*) FROM t;");
  c.Sql(2, "INSERT INTO t VALUES (-2, 'node 2');");
  c.Sql(3, "INSERT INTO t VALUES (-3, 'node 3');");
  c.StartNode(1);
  ASSERT_TRUE(c.WaitUntilReplicating(1, 30s)) << c.log(1);
  constexpr char kCount[] = "SELECT count(*), sum(id) FROM t;";
  EXPECT_TRUE(c.WaitForSame(kCount, 90s)) << c.Sql(1, kCount) << c.Sql(2, kCount);
  EXPECT_EQ(c.Sql(3, kCount),
            absl::StrCat(kSeeded + 2, "|", int64_t{kSeeded} * (kSeeded + 1) / 2 - 5, "\n"));
  std::printf("node 2 had %s rows when node 1 was killed\n", shipped.c_str());
  EXPECT_EQ(c.Sql(2, "SELECT count(*) FROM \"__marmot__conflicts\";"), "0\n");
}

// Nodes 2 and 3 edit one row at once, round after round, while the operator resolves every
// conflict on node 1 as they come: no edit is lost (applied, kept, or resolved on the node
// asked), and every node clears the same ones.
TEST_F(ConflictsHunt2Test, ResolvingConflictsWhileNewOnesOfTheSameRowArriveLosesNone) {
  testing::LocalCluster c({.nodes = 3,
                           .shards = 2,
                           .schema = "CREATE TABLE doc (id INTEGER PRIMARY KEY, body TEXT, "
                                     "edits INTEGER);"});
  c.Start();
  c.Sql(1, "INSERT INTO doc VALUES (7, 's', 0);");
  constexpr char kRows[] = "SELECT id, body, edits FROM doc;";
  ASSERT_TRUE(c.WaitForSame(kRows, 30s));
  constexpr int kEdits = 30;
  std::atomic<int> writing = 2;
  std::vector<std::thread> writers;
  for (int node : {2, 3}) {
    writers.emplace_back([&, node] {
      for (int i = 0; i < kEdits; ++i) {
        c.Sql(node, absl::StrCat(".timeout 20000\nUPDATE doc SET body = 'n", node, ".", i,
                                 "', edits = edits + 1 WHERE id = 7;"));
      }
      --writing;
    });
  }
  int64_t resolved = 0;
  auto resolve_all = [&] {
    auto res = testing::PaneCall(c, 1, kAuth, "POST", "/v1/conflicts:resolve",
                                 "{\"all\": true, \"table\": \"doc\"}");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    admin::v1::ResolveConflictResponse out;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(res->body, &out).ok()) << res->body;
    resolved += out.resolved();
  };
  while (writing > 0) resolve_all();
  for (std::thread& w : writers) w.join();
  // Every edit applied, kept or resolved, on node 1; then the rest resolved too.
  const auto accounted = [&] {
    return std::stoll(c.Sql(1, "SELECT edits FROM doc;")) +
           std::stoll(c.Sql(1, "SELECT count(*) FROM \"__marmot__conflicts\";")) + resolved;
  };
  EXPECT_TRUE(testing::WaitFor([&] { return accounted() == 2 * kEdits; }, 60s))
      << accounted() << " resolved " << resolved;
  resolve_all();
  EXPECT_TRUE(c.WaitForSame(kRows, 30s));
  for (int id = 1; id <= 3; ++id) {
    EXPECT_TRUE(testing::WaitFor(
        [&] { return c.Sql(id, "SELECT count(*) FROM \"__marmot__conflicts\";") == "0\n"; }, 30s))
        << "node " << id;
  }
  EXPECT_EQ(std::stoll(c.Sql(2, "SELECT edits FROM doc;")) + resolved, 2 * kEdits);
  std::printf("resolved %lld\n", static_cast<long long>(resolved));
}

// The pane's conflict calls as README shows them, and wrong input to each: refused with the
// status README gives, nothing cleared.
TEST_F(ConflictsHunt2Test, ConflictCallsAsTheReadmeShowsThemAndWrongInput) {
  testing::LocalCluster c({.nodes = 3,
                           .shards = 2,
                           .schema = "CREATE TABLE doc (id INTEGER PRIMARY KEY, body TEXT);"
                                     "CREATE TABLE \"we'i\"\"rd\" (k TEXT PRIMARY KEY, v);"});
  c.Start();
  c.Sql(1,
        "INSERT INTO doc VALUES (1, 'a'), (2, 'b'); INSERT INTO \"we'i\"\"rd\" VALUES ('k', 1);");
  constexpr char kRows[] = "SELECT * FROM doc; SELECT * FROM \"we'i\"\"rd\";";
  ASSERT_TRUE(c.WaitForSame(kRows, 30s));
  ASSERT_EQ(c.StopNode(3), 0);
  c.Sql(3, "UPDATE doc SET body = 'n3'; UPDATE \"we'i\"\"rd\" SET v = 3;");
  c.Sql(1, "UPDATE doc SET body = 'n1'; UPDATE \"we'i\"\"rd\" SET v = 1;");
  ASSERT_TRUE(testing::WaitFor([&] { return c.Sql(2, kRows) == c.Sql(1, kRows); }, 30s));
  c.StartNode(3);
  constexpr char kCount[] = "SELECT count(*) FROM \"__marmot__conflicts\";";
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        for (int id = 1; id <= 3; ++id) {
          if (c.Sql(id, kCount) != "3\n") return false;
        }
        return true;
      },
      30s));
  auto call = [&](const std::string& method, const std::string& path, const std::string& body) {
    auto res = testing::PaneCall(c, 2, kAuth, method, path, body);
    EXPECT_TRUE(res) << path;
    return res ? std::make_pair(res->status, res->body) : std::make_pair(0, std::string());
  };
  // Listing: a page, a table of its own (quotes in its name), the next page.
  auto [status, body] = call("GET", "/v1/conflicts?limit=2", "");
  ASSERT_EQ(status, 200) << body;
  admin::v1::ListConflictsResponse page;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(body, &page).ok());
  EXPECT_EQ(page.total(), 3);
  ASSERT_EQ(page.conflicts_size(), 2);
  std::tie(status, body) =
      call("GET", absl::StrCat("/v1/conflicts?limit=2&before_id=", page.conflicts(1).id()), "");
  admin::v1::ListConflictsResponse rest;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(body, &rest).ok()) << body;
  ASSERT_EQ(rest.conflicts_size(), 1);
  std::tie(status, body) = call("GET", "/v1/conflicts?table=we'i%22rd", "");
  admin::v1::ListConflictsResponse weird;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(body, &weird).ok()) << body;
  EXPECT_EQ(weird.total(), 1);
  ASSERT_EQ(weird.conflicts_size(), 1);
  EXPECT_EQ(weird.conflicts(0).table(), "we'i\"rd");
  EXPECT_EQ(weird.conflicts(0).key(), "'k'");
  EXPECT_EQ(weird.conflicts(0).origin_node(), 3);
  // Wrong input: refused, nothing cleared.
  for (const char* path : {"/v1/conflicts?limit=-1", "/v1/conflicts?limit=10001",
                           "/v1/conflicts?before_id=-3", "/v1/conflicts?limit=abc"}) {
    EXPECT_EQ(call("GET", path, "").first, 400) << path;
  }
  std::tie(status, body) = call("GET", "/v1/conflicts?table=x%27%3B%20DROP%20TABLE%20doc", "");
  EXPECT_EQ(status, 200);
  EXPECT_THAT(body, HasSubstr("\"total\":\"0\""));
  const std::vector<std::pair<std::string, int>> bad = {
      {"{}", 400},
      {"{\"ids\": [\"-1\"]}", 400},
      {"{\"ids\": [\"0\"]}", 400},
      {"{\"all\": true, \"ids\": [\"1\"]}", 400},
      {"{\"ids\": [\"987654\"]}", 404},
      {"{\"conflicts\": [{\"originNode\": \"18446744073709551615\", \"table\": \"doc\", "
       "\"changeId\": \"1\"}]}",
       404},
      {absl::StrCat("{\"conflicts\": [{\"originNode\": \"3\", \"table\": \"nope\", \"changeId\": "
                    "\"",
                    weird.conflicts(0).change_id(), "\"}]}"),
       404},
      {"{\"conflicts\": [{\"table\": \"doc\", \"changeId\": \"1\"}]}", 400},
      {"not json", 400},
  };
  for (const auto& [request, expected] : bad) {
    EXPECT_EQ(call("POST", "/v1/conflicts:resolve", request).first, expected) << request;
  }
  EXPECT_EQ(c.Sql(1, kCount), "3\n");
  // README's three ways: by name, by this node's id, all of a table.
  std::tie(status, body) =
      call("POST", "/v1/conflicts:resolve",
           absl::StrCat("{\"conflicts\": [{\"originNode\": \"3\", \"table\": \"we'i\\\"rd\", "
                        "\"changeId\": \"",
                        weird.conflicts(0).change_id(), "\"}]}"));
  EXPECT_EQ(status, 200) << body;
  EXPECT_THAT(body, HasSubstr("\"resolved\":\"1\""));
  std::tie(status, body) = call("POST", "/v1/conflicts:resolve",
                                absl::StrCat("{\"ids\": [\"", rest.conflicts(0).id(), "\"]}"));
  EXPECT_EQ(status, 200) << body;
  std::tie(status, body) =
      call("POST", "/v1/conflicts:resolve", "{\"all\": true, \"table\": \"doc\"}");
  EXPECT_EQ(status, 200) << body;
  for (int id = 1; id <= 3; ++id) {
    EXPECT_TRUE(testing::WaitFor([&] { return c.Sql(id, kCount) == "0\n"; }, 30s)) << id;
  }
  EXPECT_EQ(call("POST", "/v1/conflicts:resolve", "{\"all\": true}").second,
            "{\"resolved\":\"0\"}\n");
}

// Repair called again and again while every node edits the same rows: its rewrites are writes
// like any other, and no edit is lost (each applied or kept), the same rows and conflicts on
// every node after.
TEST_F(ConflictsHunt2Test, RepairDuringConflictingEditsLosesNoEdit) {
  testing::LocalCluster c({.nodes = 3,
                           .shards = 1,
                           .schema = "CREATE TABLE doc (id INTEGER PRIMARY KEY, body TEXT, "
                                     "edits INTEGER);"});
  c.Start();
  for (int id = 1; id <= 3; ++id) ASSERT_TRUE(c.WaitUntilReady(id, 30s));
  c.Sql(1, "INSERT INTO doc VALUES (1, 's', 0), (2, 's', 0), (3, 's', 0);");
  constexpr char kRows[] = "SELECT id, body, edits FROM doc ORDER BY id;";
  ASSERT_TRUE(c.WaitForSame(kRows, 30s));
  std::atomic<bool> stop = false;
  std::atomic<int> written = 0;
  std::vector<std::thread> writers;
  for (int node = 1; node <= 3; ++node) {
    writers.emplace_back([&, node] {
      for (int i = 0; !stop; ++i) {
        absl::StatusOr<std::string> done = sqlite::testing::RunSqliteCli(
            c.db_path(node), absl::StrCat(".timeout 20000\nUPDATE doc SET body = 'n", node, ".", i,
                                          "', edits = edits + 1;"));
        EXPECT_TRUE(done.ok()) << done.status();
        if (done.ok()) ++written;
      }
    });
  }
  int64_t rewritten = 0, deleted = 0;
  for (int repair = 0; repair < 3; ++repair) {
    auto res = testing::PaneCall(c, 1 + repair % 3, kAuth, "POST", "/v1/repair",
                                 "{\"shard\": 0, \"timeoutSeconds\": 2}");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    admin::v1::RepairResponse out;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(res->body, &out).ok()) << res->body;
    rewritten += out.rewritten();
    deleted += out.deleted();
  }
  stop = true;
  for (std::thread& w : writers) w.join();
  EXPECT_EQ(deleted, 0);
  EXPECT_TRUE(c.WaitForSame(kRows, 60s));
  EXPECT_TRUE(c.WaitForSame(
      "SELECT origin, change_id FROM \"__marmot__conflicts\" ORDER BY origin, change_id;", 30s));
  // Per row, every edit applied (edits counts them) or kept; a repair rewrite kept as a
  // conflict counts there too, so between written and written + rewritten.
  const std::string per_row =
      "SELECT d.edits + (SELECT count(*) FROM \"__marmot__conflicts\" AS f WHERE f.tbl = 'doc' "
      "AND f.key = quote(d.id)) FROM doc AS d ORDER BY d.id;";
  const int w = written;  // Each statement edits every row.
  const std::vector<std::string> counts =
      absl::StrSplit(c.Sql(1, per_row), '\n', absl::SkipEmpty());
  EXPECT_EQ(counts.size(), 3u);
  for (const std::string& n : counts) {
    EXPECT_GE(std::stoll(n), w);
    EXPECT_LE(std::stoll(n), w + rewritten);
  }
  std::printf("written %d edits per row, repairs rewrote %lld, kept %s", w,
              static_cast<long long>(rewritten),
              c.Sql(1, "SELECT count(*) FROM \"__marmot__conflicts\";").c_str());
}

// A node that was never a member joins a cluster whose rows (and conflicts) exist already, from
// a file holding rows of its own (other values of the same keys, and keys the cluster lacks):
// refused, then with -take-cluster-rows it ends with exactly the cluster's rows and conflicts,
// and its application's edits after /readyz are kept by every node, none a conflict.
TEST_F(ConflictsHunt2Test, ANewNodeWithRowsOfItsOwnTakesTheClusters) {
  constexpr char kSchema[] = "CREATE TABLE doc (id INTEGER PRIMARY KEY, body TEXT);";
  testing::LocalCluster c({.nodes = 3, .shards = 2, .schema = kSchema});
  c.Start();
  c.Sql(1, "INSERT INTO doc VALUES (1, 'c1'), (2, 'c2'), (3, 'c3');");
  constexpr char kRows[] = "SELECT id, body FROM doc ORDER BY id;";
  ASSERT_TRUE(c.WaitForSame(kRows, 30s));
  ASSERT_EQ(c.StopNode(3), 0);
  c.Sql(3, "UPDATE doc SET body = 'n3' WHERE id = 1;");
  c.Sql(1, "UPDATE doc SET body = 'n1' WHERE id = 1;");
  ASSERT_TRUE(testing::WaitFor([&] { return c.Sql(2, kRows) == c.Sql(1, kRows); }, 30s));
  c.StartNode(3);
  constexpr char kConflicts[] =
      "SELECT tbl, key, origin, change_id, op, winner_origin, winner_change_id, hex(change) FROM "
      "\"__marmot__conflicts\" ORDER BY origin, change_id;";
  ASSERT_TRUE(testing::WaitFor(
      [&] { return c.Sql(2, "SELECT count(*) FROM \"__marmot__conflicts\";") == "1\n"; }, 30s));
  ASSERT_TRUE(c.WaitForSame(kConflicts, 30s));

  const int four = c.StartJoiningNode();
  c.KillNode(four);
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::filesystem::remove(c.db_path(four) + suffix);
  }
  std::filesystem::remove_all(c.raft_path(four));
  c.Sql(four, absl::StrCat(kSchema, "INSERT INTO doc VALUES (1, 'mine'), (9, 'only mine');"));
  c.StartNode(four);
  ASSERT_EQ(c.WaitForExit(four, 30s), 1) << c.log(four);
  EXPECT_THAT(c.log(four), HasSubstr("-take-cluster-rows"));
  EXPECT_EQ(c.Sql(four, kRows), "1|mine\n9|only mine\n");
  c.SetNodeFlags(four, {"-take-cluster-rows"});
  c.StartNode(four);
  ASSERT_TRUE(c.WaitUntilReplicating(four, 30s)) << c.log(four);
  auto res = testing::PaneCall(
      c, 1, kAuth, "POST", "/v1/nodes",
      absl::StrCat("{\"nodeId\": \"", four, "\", \"address\": \"", c.address(four), "\"}"));
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  ASSERT_TRUE(c.WaitUntilReady(four, 60s)) << c.log(four);
  EXPECT_TRUE(c.WaitForSame(kRows, 30s)) << c.Sql(four, kRows);
  EXPECT_EQ(c.Sql(four, kRows), "1|n1\n2|c2\n3|c3\n");
  EXPECT_TRUE(c.WaitForSame(kConflicts, 30s)) << c.Sql(four, kConflicts);
  c.Sql(four, "UPDATE doc SET body = 'n4' WHERE id = 2;");
  EXPECT_TRUE(c.WaitForSame(kRows, 30s));
  EXPECT_EQ(c.Sql(1, "SELECT body FROM doc WHERE id = 2;"), "n4\n");
  EXPECT_EQ(c.Sql(four, "SELECT count(*) FROM \"__marmot__conflicts\";"), "1\n");
}

// Verify called the moment the nodes are up waits for the shards' members and leaders as for
// the nodes' reports: it answered within milliseconds, every shard "not divergent" with nothing
// measured ("the marker did not commit in time"). Repair likewise wrote nothing.
TEST_F(ConflictsHunt2Test, VerifyRightAfterTheStartMeasuresEveryShard) {
  testing::LocalCluster c(
      {.nodes = 3, .shards = 4, .schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"});
  c.Start();
  auto res = testing::PaneCall(c, 1, kAuth, "POST", "/v1/verify", "{\"timeoutSeconds\": 30}");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  admin::v1::VerifyResponse verified;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(res->body, &verified).ok());
  ASSERT_EQ(verified.shards_size(), 4);
  for (const admin::v1::ShardVerification& s : verified.shards()) {
    EXPECT_EQ(s.error(), "") << res->body;
    EXPECT_EQ(s.reported_size(), 3) << res->body;
  }
  EXPECT_EQ(verified.divergent_shards(), 0u) << res->body;
}

}  // namespace
}  // namespace marmot
