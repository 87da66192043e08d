// Marmot end to end: three real marmot processes on loopback, each beside its own SQLite file,
// applications writing with the sqlite3 shell on any node.
#include <signal.h>

#include <fstream>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include "absl/strings/str_cat.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/paths.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAuthKey[] = "Basic dGVzdDp0ZXN0";

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

const char* const kChinookTables[] = {"Album",    "Artist",   "Customer",      "Employee",
                                      "Genre",    "Invoice",  "InvoiceLine",   "MediaType",
                                      "Playlist", "PlaylistTrack", "Track"};

// Every row of every Chinook table in key order, each value as an SQL literal (so that 2, 2.0,
// '2' and X'02' all differ).
std::string ChinookDump() {
  std::string sql = ".mode quote\n";
  for (const char* t : kChinookTables) {
    absl::StrAppend(&sql, "SELECT '", t, "', * FROM \"", t, "\" ORDER BY 2, 3;\n");
  }
  return sql;
}

std::string CountsQuery() {
  std::string sql;
  for (const char* t : kChinookTables) {
    absl::StrAppend(&sql, "SELECT '", t, "', count(*) FROM \"", t, "\";");
  }
  return sql;
}

TEST(ReplicationTest, ChinookLoadedOnOneNodeReachesEveryNodeAndWritesFlowFromAnyNode) {
  // Given three nodes whose databases have the Chinook schema and no rows
  std::string sql = ReadFile(testing::DatasetPath("Chinook_Sqlite.sql"));
  size_t first_insert = sql.find("INSERT INTO");
  ASSERT_NE(first_insert, std::string::npos);
  setenv("AUTH_KEY", kAuthKey, 1);
  testing::LocalCluster cluster({.nodes = 3, .shards = 4, .schema = sql.substr(0, first_insert)});
  cluster.Start();

  // When the sqlite3 shell loads every row into node 1
  cluster.Sql(1, sql.substr(first_insert));

  // Then every node holds every row, with the same values and storage classes
  ASSERT_TRUE(cluster.WaitForSame(CountsQuery(), 120s))
      << cluster.Sql(2, CountsQuery()) << "\n" << cluster.log(1) << cluster.log(2);
  EXPECT_THAT(cluster.Sql(3, CountsQuery()), HasSubstr("PlaylistTrack|8715"));
  ASSERT_TRUE(cluster.WaitForSame(ChinookDump(), 30s));

  // And a write on node 2 shows on nodes 1 and 3
  cluster.Sql(2, "UPDATE Artist SET Name = 'Marmot Quartet' WHERE ArtistId = 1;"
                 "INSERT INTO Genre (GenreId, Name) VALUES (100, 'Raft Rock');"
                 "DELETE FROM PlaylistTrack WHERE PlaylistId = 18;");
  const std::string probe =
      "SELECT Name FROM Artist WHERE ArtistId = 1; SELECT Name FROM Genre WHERE GenreId = 100;"
      "SELECT count(*) FROM PlaylistTrack WHERE PlaylistId = 18;";
  ASSERT_TRUE(cluster.WaitForSame(probe, 30s));
  EXPECT_EQ(cluster.Sql(1, probe), "Marmot Quartet\nRaft Rock\n0\n");
  EXPECT_TRUE(cluster.WaitForSame(ChinookDump(), 30s));

  // The control pane of every node reports every shard with a leader, and readiness
  for (int id = 1; id <= 3; ++id) {
    httplib::Client rest("127.0.0.1", cluster.rest_port(id));
    rest.set_read_timeout(10, 0);
    auto status = rest.Get("/v1/status", {{"Authorization", kAuthKey}});
    ASSERT_TRUE(status) << "node " << id;
    EXPECT_EQ(status->status, 200) << status->body;
    EXPECT_THAT(status->body, HasSubstr(absl::StrCat("\"nodeId\":\"", id, "\"")));
    EXPECT_THAT(status->body, Not(HasSubstr("\"leader\":\"0\"")));
    EXPECT_THAT(status->body, HasSubstr("\"deadLetters\":\"0\""));
    auto unauthorized = rest.Get("/v1/status");
    ASSERT_TRUE(unauthorized);
    EXPECT_EQ(unauthorized->status, 401);
    auto ready = rest.Get("/readyz");
    ASSERT_TRUE(ready);
    EXPECT_EQ(ready->status, 200) << ready->body;
  }

  // Node 1's metrics count every row it shipped, and every shard's leader
  {
    httplib::Client rest("127.0.0.1", cluster.rest_port(1));
    auto metrics = rest.Get("/metrics");
    ASSERT_TRUE(metrics);
    EXPECT_EQ(metrics->status, 200);
    std::string text = metrics->body;
    size_t at = text.find("\nmarmot_changes_committed_total ");
    ASSERT_NE(at, std::string::npos) << text;
    double committed = std::stod(text.substr(at + 32));
    EXPECT_GE(committed, 15607);
    EXPECT_THAT(text, HasSubstr("marmot_shard_leader{shard=\"3\"}"));
    EXPECT_THAT(text, HasSubstr("marmot_apply_duration_seconds_bucket"));
  }

  // No change was dead-lettered on any node
  for (int id = 1; id <= 3; ++id) {
    EXPECT_EQ(cluster.Sql(id, "SELECT count(*) FROM \"__marmot__dead_letters\";"), "0\n") << id;
  }
  for (int id = 1; id <= 3; ++id) EXPECT_EQ(cluster.StopNode(id), 0) << cluster.log(id);
}

TEST(ReplicationTest, ConcurrentWritesToTheSameRowsConvergeAndANewTableIsBackfilled) {
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 3, .schema = "CREATE TABLE counter (id INTEGER PRIMARY KEY, v, who);"});
  cluster.Start();
  // Every node writes the same hot rows at once.
  std::vector<std::thread> writers;
  for (int id = 1; id <= 3; ++id) {
    writers.emplace_back([&cluster, id] {
      for (int round = 0; round < 20; ++round) {
        cluster.Sql(id, absl::StrCat("INSERT OR REPLACE INTO counter VALUES (", round % 5, ", ",
                                     round, ", 'node ", id, "');"));
      }
    });
  }
  for (std::thread& t : writers) t.join();
  ASSERT_TRUE(cluster.WaitForSame("SELECT * FROM counter ORDER BY id;", 60s))
      << cluster.Sql(1, "SELECT * FROM counter") << "\n" << cluster.Sql(2, "SELECT * FROM counter");
  EXPECT_EQ(cluster.Sql(1, "SELECT count(*) FROM counter;"), "5\n");

  // A table created on every node while marmot runs, filled on node 3 in the same breath as
  // its creation: the rows written before marmot put triggers on it still replicate.
  for (int id = 1; id <= 2; ++id) cluster.Sql(id, "CREATE TABLE late (k TEXT PRIMARY KEY, v);");
  cluster.Sql(3, "CREATE TABLE late (k TEXT PRIMARY KEY, v); INSERT INTO late VALUES ('x', 1), ('y', 2);");
  ASSERT_TRUE(cluster.WaitForSame("SELECT * FROM late ORDER BY k;", 60s));
  EXPECT_EQ(cluster.Sql(1, "SELECT group_concat(k) FROM late;"), "x,y\n");
}

TEST(ReplicationTest, NothingCommittedLocallyIsLostWhenNodesAreKilledAndRestarted) {
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 4, .schema = "CREATE TABLE w (node INTEGER, seq INTEGER, v, PRIMARY KEY (node, seq));"});
  cluster.Start();
  // Writers on nodes 1 and 2 each commit numbered rows locally, in small transactions, while
  // node 2 is killed (-9) and restarted, then node 3, then node 1.
  auto write = [&](int node, int from, int to) {
    std::string sql;
    for (int seq = from; seq < to; ++seq) {
      absl::StrAppend(&sql, "INSERT INTO w VALUES (", node, ", ", seq, ", randomblob(32));");
    }
    cluster.Sql(node, sql);
  };
  write(1, 0, 100);
  write(2, 0, 100);
  cluster.KillNode(2);
  write(1, 100, 200);
  write(2, 100, 200);  // Committed locally while its marmot is down: captured, shipped later.
  cluster.StartNode(2);
  ASSERT_TRUE(cluster.WaitUntilReplicating(2, 30s));
  write(2, 200, 300);
  cluster.KillNode(3);
  write(1, 200, 300);
  cluster.StartNode(3);
  ASSERT_TRUE(cluster.WaitUntilReplicating(3, 30s));
  cluster.KillNode(1);
  write(2, 300, 400);
  write(1, 300, 400);
  cluster.StartNode(1);
  ASSERT_TRUE(cluster.WaitUntilReplicating(1, 30s));

  // Then every node ends with all 800 rows, identical everywhere
  const std::string summary = "SELECT node, count(*), min(seq), max(seq) FROM w GROUP BY node;";
  ASSERT_TRUE(cluster.WaitForSame(".mode quote\nSELECT * FROM w ORDER BY node, seq;", 120s))
      << cluster.Sql(1, summary) << "\n" << cluster.Sql(2, summary) << "\n" << cluster.Sql(3, summary);
  EXPECT_EQ(cluster.Sql(3, summary), "1|400|0|399\n2|400|0|399\n");
  for (int id = 1; id <= 3; ++id) {
    EXPECT_EQ(cluster.Sql(id, "SELECT count(*) FROM \"__marmot__dead_letters\";"), "0\n") << id;
  }
}

}  // namespace
}  // namespace marmot
