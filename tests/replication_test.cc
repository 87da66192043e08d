// Marmot end to end: three real marmot processes on loopback, each beside its own SQLite file,
// applications writing with the sqlite3 shell on any node.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/loopback_port.h"
#include "tests/testing/paths.h"
#include "tests/testing/subprocess.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAuthKey[] = "Basic dGVzdDp0ZXN0";

const char* const kChinookTables[] = {"Album",    "Artist",        "Customer",    "Employee",
                                      "Genre",    "Invoice",       "InvoiceLine", "MediaType",
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
  std::string sql = testing::ReadTextFile(testing::DatasetPath("Chinook_Sqlite.sql"));
  size_t first_insert = sql.find("INSERT INTO");
  ASSERT_NE(first_insert, std::string::npos);
  setenv("AUTH_KEY", kAuthKey, 1);
  testing::LocalCluster cluster({.nodes = 3, .shards = 4, .schema = sql.substr(0, first_insert)});
  cluster.Start();

  // When the sqlite3 shell loads every row into node 1
  cluster.Sql(1, sql.substr(first_insert));

  // Then every node holds every row, with the same values and storage classes
  ASSERT_TRUE(cluster.WaitForSame(CountsQuery(), 120s)) << cluster.Sql(2, CountsQuery()) << "\n"
                                                        << cluster.log(1) << cluster.log(2);
  EXPECT_THAT(cluster.Sql(3, CountsQuery()), HasSubstr("PlaylistTrack|8715"));
  ASSERT_TRUE(cluster.WaitForSame(ChinookDump(), 30s));

  // And a write on node 2 shows on nodes 1 and 3
  cluster.Sql(2,
              "UPDATE Artist SET Name = 'Marmot Quartet' WHERE ArtistId = 1;"
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
    httplib::Client rest("127.0.0.1", cluster.pane_port(id));
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
    httplib::Client rest("127.0.0.1", cluster.pane_port(1));
    auto metrics = rest.Get("/metrics");
    ASSERT_TRUE(metrics);
    EXPECT_EQ(metrics->status, 200);
    std::string text = metrics->body;
    // The value of an unlabelled metric (-1 when it is missing).
    auto value = [&](const std::string& name) {
      const std::string line_start = "\n" + name + " ";
      const size_t at = text.find(line_start);
      return at == std::string::npos ? -1.0 : std::stod(text.substr(at + line_start.size()));
    };
    EXPECT_GE(value("marmot_changes_committed_total"), 15607) << text;
    // Node 1 copied the application's WAL into the database itself.
    EXPECT_GE(value("marmot_wal_checkpoints_total"), 1) << text;
    EXPECT_THAT(text, HasSubstr("\nmarmot_wal_frames_behind "));
    EXPECT_EQ(value("marmot_apply_paused_seconds"), 0) << text;
    EXPECT_THAT(text, HasSubstr("marmot_shard_leader{shard=\"3\"}"));
    EXPECT_THAT(text, HasSubstr("marmot_apply_duration_seconds_bucket"));
    EXPECT_THAT(text, HasSubstr("marmot_raft_fsync_duration_seconds_count"));
    EXPECT_THAT(text, HasSubstr("marmot_snapshots_sent_total{result=\"ok\"}"));
    // Prometheus' own linter accepts it.
    std::string file = testing::NewTestDir("metrics") + "/metrics.txt";
    std::ofstream(file) << text;
    FILE* lint = popen(("promtool check metrics < " + file + " 2>&1").c_str(), "r");
    ASSERT_NE(lint, nullptr);
    std::string complaints;
    char buf[1024];
    while (size_t n = fread(buf, 1, sizeof buf, lint)) complaints.append(buf, n);
    EXPECT_EQ(pclose(lint), 0) << complaints;
  }

  // No change was dead-lettered on any node
  for (int id = 1; id <= 3; ++id) {
    EXPECT_EQ(cluster.Sql(id, "SELECT count(*) FROM \"__marmot__dead_letters\";"), "0\n") << id;
  }
  for (int id = 1; id <= 3; ++id) EXPECT_EQ(cluster.StopNode(id), 0) << cluster.log(id);
}

TEST(ReplicationTest, ConcurrentWritesToTheSameRowsConvergeAndANewTableIsBackfilled) {
  testing::LocalCluster cluster(
      {.nodes = 3,
       .shards = 3,
       .schema = "CREATE TABLE counter (id INTEGER PRIMARY KEY, v, who);"});
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
      << cluster.Sql(1, "SELECT * FROM counter") << "\n"
      << cluster.Sql(2, "SELECT * FROM counter");
  EXPECT_EQ(cluster.Sql(1, "SELECT count(*) FROM counter;"), "5\n");

  // A table created on every node while marmot runs (each node's own, or another's replicated
  // first: IF NOT EXISTS), filled on node 3 in the same breath as its creation: the rows written
  // before marmot put triggers on it still replicate.
  for (int id = 1; id <= 2; ++id) {
    cluster.Sql(id, "CREATE TABLE IF NOT EXISTS late (k TEXT PRIMARY KEY, v);");
  }
  cluster.Sql(3,
              "CREATE TABLE IF NOT EXISTS late (k TEXT PRIMARY KEY, v);"
              "INSERT INTO late VALUES ('x', 1), ('y', 2);");
  ASSERT_TRUE(cluster.WaitForSame("SELECT * FROM late ORDER BY k;", 60s));
  EXPECT_EQ(cluster.Sql(1, "SELECT group_concat(k) FROM late;"), "x,y\n");
}

TEST(ReplicationTest, NothingCommittedLocallyIsLostWhenNodesAreKilledAndRestarted) {
  testing::LocalCluster cluster(
      {.nodes = 3,
       .shards = 4,
       .schema = "CREATE TABLE w (node INTEGER, seq INTEGER, v, PRIMARY KEY (node, seq));"});
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
  ASSERT_TRUE(cluster.WaitUntilReplicating(2, 30s)) << cluster.log(2);
  write(2, 200, 300);
  cluster.KillNode(3);
  write(1, 200, 300);
  cluster.StartNode(3);
  ASSERT_TRUE(cluster.WaitUntilReplicating(3, 30s)) << cluster.log(3);
  cluster.KillNode(1);
  write(2, 300, 400);
  write(1, 300, 400);
  cluster.StartNode(1);
  ASSERT_TRUE(cluster.WaitUntilReplicating(1, 30s)) << cluster.log(1);

  // Then every node ends with all 800 rows, identical everywhere
  const std::string summary = "SELECT node, count(*), min(seq), max(seq) FROM w GROUP BY node;";
  ASSERT_TRUE(cluster.WaitForSame(".mode quote\nSELECT * FROM w ORDER BY node, seq;", 120s))
      << cluster.Sql(1, summary) << "\n"
      << cluster.Sql(2, summary) << "\n"
      << cluster.Sql(3, summary);
  EXPECT_EQ(cluster.Sql(3, summary), "1|400|0|399\n2|400|0|399\n");
  for (int id = 1; id <= 3; ++id) {
    EXPECT_EQ(cluster.Sql(id, "SELECT count(*) FROM \"__marmot__dead_letters\";"), "0\n") << id;
  }
}

constexpr char kAwkwardSchema[] =
    "CREATE TABLE \"order\" (\"select\" INTEGER PRIMARY KEY, \"from\" TEXT, price REAL);"
    "CREATE TABLE \"my table\" (\"my key\" TEXT, \"we\"\"ird\" INTEGER, v, PRIMARY KEY "
    "(\"we\"\"ird\", \"my key\"));"
    "CREATE TABLE wr (k BLOB PRIMARY KEY, v) WITHOUT ROWID;"
    "CREATE TABLE \"表\" (\"键\" TEXT PRIMARY KEY, \"值\");";

const char kAwkwardDump[] =
    ".mode quote\n"
    "SELECT * FROM \"order\" ORDER BY 1;"
    "SELECT * FROM \"my table\" ORDER BY 1, 2;"
    "SELECT * FROM wr ORDER BY 1;"
    "SELECT * FROM \"表\" ORDER BY 1;";

TEST(ReplicationTest, EveryKindOfChangeFromEveryNodeArrivesWithExactTypes) {
  testing::LocalCluster cluster({.nodes = 3, .shards = 4, .schema = kAwkwardSchema});
  cluster.Start();
  // Each node inserts, updates, changes keys and deletes in tables whose names need quoting,
  // with composite keys, BLOB keys, NULLs and values whose storage class must survive.
  cluster.Sql(1,
              "INSERT INTO \"order\" VALUES (1, 'one', 2.0), (2, NULL, 3), (3, 'x', NULL);"
              "UPDATE \"order\" SET price = 2.5 WHERE \"select\" = 1;"
              "UPDATE \"order\" SET \"select\" = 30 WHERE \"select\" = 3;"
              "DELETE FROM \"order\" WHERE \"select\" = 2;");
  cluster.Sql(
      2,
      "INSERT INTO \"my table\" VALUES ('a', 1, '2024-01-01'), ('b', 1, x'00ff'), ('a', 2, 7);"
      "UPDATE \"my table\" SET \"we\"\"ird\" = 5 WHERE \"my key\" = 'b';"
      "DELETE FROM \"my table\" WHERE \"we\"\"ird\" = 2;"
      "INSERT INTO wr VALUES (x'0001', 'blob key'), (x'', 'empty blob key'), ('text key', NULL);");
  // Node 3 changes rows that node 2 wrote: wait until it has them (an UPDATE of a row a node
  // does not have yet changes nothing there, as in plain SQLite).
  ASSERT_TRUE(cluster.WaitForSame(kAwkwardDump, 60s));
  cluster.Sql(3,
              "INSERT INTO \"表\" VALUES ('鍵', '値'), ('k2', 1e300);"
              "UPDATE wr SET v = 42 WHERE k = x'0001';"
              "UPDATE \"表\" SET \"键\" = 'k3' WHERE \"键\" = 'k2';"
              "DELETE FROM wr WHERE k = 'text key';");
  ASSERT_TRUE(cluster.WaitForSame(kAwkwardDump, 60s)) << cluster.Sql(1, kAwkwardDump) << "\n----\n"
                                                      << cluster.Sql(2, kAwkwardDump);
  EXPECT_EQ(cluster.Sql(2, kAwkwardDump),
            "1,'one',2.5\n30,'x',NULL\n"
            "'a',1,'2024-01-01'\n'b',5,X'00ff'\n"
            "X'','empty blob key'\nX'0001',42\n"
            "'k3',1.0000000000000000047e+300\n'鍵','値'\n");
}

TEST(ReplicationTest, ANodeThatWasDownWhileTenThousandChangesHappenedCatchesUp) {
  testing::LocalCluster cluster(
      {.nodes = 3,
       .shards = 4,
       .schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, v, n INTEGER);"});
  cluster.Start();
  ASSERT_EQ(cluster.StopNode(3), 0);
  // 10,000 changes: 4,000 inserts, 4,000 updates, 2,000 deletes, on nodes 1 and 2.
  cluster.Sql(1,
              "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 4000) "
              "INSERT INTO t SELECT i, hex(randomblob(16)), 0 FROM s;");
  ASSERT_TRUE(
      testing::WaitFor([&] { return cluster.Sql(2, "SELECT count(*) FROM t;") == "4000\n"; }, 60s));
  cluster.Sql(2, "UPDATE t SET n = n + 1;");
  // Sequential, not concurrent: node 1 deletes once it has node 2's updates (a delete racing an
  // update of the same row resolves by Raft order, which is not what this test is about).
  ASSERT_TRUE(
      testing::WaitFor([&] { return cluster.Sql(1, "SELECT sum(n) FROM t;") == "4000\n"; }, 60s));
  cluster.Sql(1, "DELETE FROM t WHERE id % 2 = 0;");
  cluster.StartNode(3);
  ASSERT_TRUE(cluster.WaitUntilReplicating(3, 30s)) << cluster.log(3);
  ASSERT_TRUE(cluster.WaitForSame(".mode quote\nSELECT * FROM t ORDER BY id;", 120s))
      << cluster.Sql(3, "SELECT count(*), sum(n) FROM t;");
  EXPECT_EQ(cluster.Sql(3, "SELECT count(*), sum(n) FROM t;"), "2000|2000\n");
}

// Inserts rows `from`..`to` of t (id INTEGER PRIMARY KEY, v) with v = `value` on node `node`.
void InsertRange(testing::LocalCluster& cluster, int node, int from, int to,
                 const std::string& value) {
  cluster.Sql(node, absl::StrCat("WITH RECURSIVE s(i) AS (SELECT ", from,
                                 " UNION ALL SELECT i + 1 FROM s WHERE i < ", to,
                                 ") INSERT INTO t SELECT i, '", value, "' FROM s;"));
}

TEST(ReplicationTest, ANodeCleanedUpAndStartedAgainStillReplicatesItsNewWrites) {
  // `marmot -cleanup` drops node 1's change logs and state; started again, it refuses until told
  // to take the cluster's rows, then makes new logs. Their change ids must not start over below
  // the ids the other nodes have already applied from node 1, or the other nodes take every new
  // change for a duplicate and skip it.
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 2, .schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, v);"});
  cluster.Start();
  InsertRange(cluster, 1, 1, 300, "before");
  ASSERT_TRUE(cluster.WaitForSame("SELECT count(*) FROM t;", 60s));
  ASSERT_EQ(cluster.Sql(3, "SELECT count(*) FROM t;"), "300\n");
  ASSERT_EQ(cluster.StopNode(1), 0);
  testing::RunResult cleanup =
      testing::Run({testing::MarmotBinary(), "-cleanup", "-db-path=" + cluster.db_path(1)}, 30s);
  ASSERT_EQ(cleanup.exit_code, 0) << cleanup.err;
  // Its rows can no longer be told from the cluster's: refused, one line, the file untouched.
  cluster.StartNode(1);
  ASSERT_EQ(cluster.WaitForExit(1, 30s), 1) << cluster.log(1);
  EXPECT_THAT(cluster.log(1), HasSubstr("Raft store remains"));
  EXPECT_THAT(cluster.log(1), HasSubstr("-take-cluster-rows"));
  EXPECT_EQ(cluster.Sql(1, "SELECT count(*) FROM t;"), "300\n");
  cluster.SetNodeFlags(1, {"-take-cluster-rows"});
  cluster.StartNode(1);
  ASSERT_TRUE(cluster.WaitUntilReady(1, 60s)) << cluster.log(1);
  // Ready is within 64 entries of the shards' logs (README, "Ready"): the whole of these logs.
  // Once its shards applied them again, it holds the cluster's rows.
  EXPECT_TRUE(
      testing::WaitFor([&] { return cluster.Sql(1, "SELECT count(*) FROM t;") == "300\n"; }, 30s))
      << cluster.Sql(1, "SELECT count(*) FROM t;");
  cluster.Sql(1, "INSERT INTO t VALUES (1001, 'after'); UPDATE t SET v = 'after' WHERE id <= 5;");
  EXPECT_TRUE(cluster.WaitForSame(".mode quote\nSELECT * FROM t ORDER BY id;", 60s))
      << "node 2: " << cluster.Sql(2, "SELECT count(*), sum(v = 'after') FROM t;")
      << "node 1 log:\n"
      << cluster.log(1);
  EXPECT_EQ(cluster.Sql(2, "SELECT count(*), sum(v = 'after') FROM t;"), "301|6\n");
}

TEST(ReplicationTest, ANodeWhoseDatabaseIsRestoredFromABackupStillReplicatesItsNewWrites) {
  // A database file restored from a backup has change logs whose ids are older than the ids its
  // node has shipped since the backup; its new changes must not reuse those ids.
  testing::LocalCluster cluster(
      {.nodes = 3, .shards = 2, .schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, v);"});
  cluster.Start();
  InsertRange(cluster, 1, 1, 100, "before");
  ASSERT_TRUE(cluster.WaitForSame("SELECT count(*) FROM t;", 60s));
  const std::string backup = testing::NewTestDir("restore") + "/backup.db";
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(cluster.db_path(1), ".backup '" + backup + "'").ok());
  InsertRange(cluster, 1, 101, 300, "shipped");
  ASSERT_TRUE(
      testing::WaitFor([&] { return cluster.Sql(3, "SELECT count(*) FROM t;") == "300\n"; }, 60s));
  ASSERT_EQ(cluster.StopNode(1), 0);
  for (const char* suffix : {"", "-wal", "-shm"})
    std::filesystem::remove(cluster.db_path(1) + suffix);
  std::filesystem::copy_file(backup, cluster.db_path(1));
  cluster.StartNode(1);
  ASSERT_TRUE(cluster.WaitUntilReplicating(1, 30s)) << cluster.log(1);
  // Node 1 gets rows 101-300 back from the Raft log, and its new writes reach every node.
  cluster.Sql(1, "INSERT INTO t VALUES (1001, 'after'); UPDATE t SET v = 'after' WHERE id <= 5;");
  EXPECT_TRUE(cluster.WaitForSame(".mode quote\nSELECT * FROM t ORDER BY id;", 60s))
      << "node 1: " << cluster.Sql(1, "SELECT count(*), sum(v = 'after') FROM t;")
      << "node 2: " << cluster.Sql(2, "SELECT count(*), sum(v = 'after') FROM t;");
  EXPECT_EQ(cluster.Sql(2, "SELECT count(*), sum(v = 'after') FROM t;"), "301|6\n");
}

TEST(ReplicationTest, TwoNodesStartedAsTheReadmeShows) {
  // The README's two commands: each node's -bootstrap names only the other node.
  std::string dir = testing::NewTestDir("readme-two");
  int bind1 = testing::FreeLoopbackPort(), bind2 = testing::FreeLoopbackPort();
  auto start = [&](int id, int bind, int other_id, int other_bind) {
    return std::make_unique<testing::Subprocess>(
        std::vector<std::string>{
            testing::MarmotBinary(), absl::StrCat("-bootstrap"),
            absl::StrCat(other_id, "@127.0.0.1:", other_bind), "-bind",
            absl::StrCat("127.0.0.1:", bind), "-bind-pane",
            absl::StrCat("localhost:", testing::FreeLoopbackPort()), "-node-id", absl::StrCat(id),
            "-db-path", absl::StrCat(dir, "/cache-", id, ".db"), "-raft-path",
            absl::StrCat(dir, "/raft")},  // Shared, as the default /tmp/raft is.
        dir);
  };
  for (int id : {1, 2}) {
    ASSERT_TRUE(sqlite::testing::RunSqliteCli(absl::StrCat(dir, "/cache-", id, ".db"),
                                              "CREATE TABLE kv (k TEXT PRIMARY KEY, v);")
                    .ok());
  }
  auto one = start(1, bind1, 2, bind2);
  auto two = start(2, bind2, 1, bind1);
  for (auto* p : {one.get(), two.get()}) {
    ASSERT_TRUE(testing::WaitFor(
        [&] { return p->Stderr().find(" replicating ") != std::string::npos; }, 30s))
        << p->Stderr();
  }
  auto sql = [&](int id, const std::string& q) {
    auto out = sqlite::testing::RunSqliteCli(absl::StrCat(dir, "/cache-", id, ".db"), q);
    return out.ok() ? *out : out.status().ToString();
  };
  sql(1, "INSERT INTO kv VALUES ('from', 'node 1');");
  sql(2, "INSERT INTO kv VALUES ('to', 'node 2');");
  const std::string all = "SELECT * FROM kv ORDER BY k;";
  EXPECT_TRUE(
      testing::WaitFor([&] { return sql(1, all) == sql(2, all) && sql(1, all).size() > 20; }, 30s))
      << sql(1, all) << "\n"
      << sql(2, all);
  for (auto* p : {one.get(), two.get()}) {
    p->Signal(SIGTERM);
    EXPECT_EQ(p->Wait(30s), std::optional<int>(0)) << p->Stderr();
  }
}

}  // namespace
}  // namespace marmot
