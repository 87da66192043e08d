// Hunting lost rows through UNIQUE values that are not the key (issue 20: no committed write
// disappears without a trace): what a replicated upsert replaces through another UNIQUE index is
// kept as a conflict (replicator/displaced_rows.h). Scenarios an application, an operator and
// an attacker could make, on real marmot processes with the sqlite3 shell as the application.
// The invariant of each: every committed write is on each node or kept as a conflict there, and
// with one shard the nodes agree on the rows and on what they keep.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/pane_client.h"
#include "tests/testing/stale_node.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;

constexpr char kDeadLetters[] = "SELECT count(*) FROM \"__marmot__dead_letters\";";
// What a node keeps, as every node of one shard must keep it.
constexpr char kKept[] =
    "SELECT tbl, key, origin, change_id, winner_origin FROM \"__marmot__conflicts\" "
    "ORDER BY tbl, key, origin, change_id;";
constexpr char kRows[] = "SELECT id, email, name FROM account ORDER BY id;";

// The ids of `account` on node `node` and the keys it keeps as conflicts of `account`.
std::set<int64_t> PresentOrKept(const testing::LocalCluster& c, int node) {
  std::set<int64_t> found;
  for (const char* query : {"SELECT id FROM account;",
                            "SELECT key FROM \"__marmot__conflicts\" WHERE tbl = 'account';"}) {
    for (absl::string_view line : absl::StrSplit(c.Sql(node, query), '\n', absl::SkipEmpty())) {
      int64_t id = 0;
      if (absl::SimpleAtoi(line, &id)) found.insert(id);
    }
  }
  return found;
}

// Every id in `ids` is a row of `account` on every node, or kept as a conflict there.
::testing::AssertionResult EveryIdAccountedFor(const testing::LocalCluster& c,
                                               const std::set<int64_t>& ids) {
  for (int node = 1; node <= c.nodes(); ++node) {
    const std::set<int64_t> found = PresentOrKept(c, node);
    for (int64_t id : ids) {
      if (found.count(id) == 0) {
        return ::testing::AssertionFailure()
               << "node " << node << ": row " << id << " neither present nor kept\n"
               << c.OnEveryNode(kRows) << c.OnEveryNode(kKept);
      }
    }
  }
  return ::testing::AssertionSuccess();
}

// Node 1 changes an existing row 2 to an email that node 3, down, gives row 1. Node 3's change
// comes later in the shard and replaces row 2 on nodes 1 and 2 (kept there). Node 3 keeps node
// 1's change at once when it arrives (kKeepDisplaced): row 2 must be gone there too, not left
// with the values it had before node 1's change.
TEST(UniqueHuntTest, AnExistingRowGivenAValueAStaleNodeTookEndsTheSameEverywhere) {
  testing::StaleNode s(
      {.schema = "CREATE TABLE account (id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT);",
       .start = "INSERT INTO account VALUES (1, 'a@x', 'one'), (2, 'b@x', 'two');",
       .while_down = "UPDATE account SET email = 'z@x' WHERE id = 2;",
       .stale = "UPDATE account SET email = 'z@x', name = 'three' WHERE id = 1;"});
  ASSERT_TRUE(s.Play());
  s.ExpectSettled("1|z@x|three\n", {1, 2});
}

// A unique index that compares without case on a column that compares with it: 'B@x' and
// 'b@x' are one value to the index, so the upsert of one replaces the row of the other.
TEST(UniqueHuntTest, AUniqueIndexWithItsOwnCollationKeepsTheRowItReplaced) {
  testing::StaleNode s({.schema =
                            "CREATE TABLE account (id INTEGER PRIMARY KEY, email TEXT, name TEXT);"
                            "CREATE UNIQUE INDEX account_email ON account (email COLLATE NOCASE);",
                        .start = "INSERT INTO account VALUES (1, 'a@x', 'one');",
                        .while_down = "INSERT INTO account VALUES (2, 'B@x', 'two');",
                        .stale = "UPDATE account SET email = 'b@x', name = 'three' WHERE id = 1;"});
  ASSERT_TRUE(s.Play());
  s.ExpectSettled("1|b@x|three\n", {1, 2});
}

// A partial unique index: only active accounts hold their email. Node 3, down, gives its
// inactive row 1 the email of node 1's new active row 2: the two do not clash anywhere, and
// both stay on every node.
TEST(UniqueHuntTest, RowsOutsideAPartialUniqueIndexDoNotDisplaceEachOther) {
  testing::StaleNode s({.schema =
                            "CREATE TABLE account (id INTEGER PRIMARY KEY, email TEXT, name TEXT, "
                            "active INTEGER);"
                            "CREATE UNIQUE INDEX account_email ON account (email) WHERE active;",
                        .start = "INSERT INTO account VALUES (1, 'a@x', 'one', 0);",
                        .while_down = "INSERT INTO account VALUES (2, 'b@x', 'two', 1);",
                        .stale = "UPDATE account SET email = 'b@x', name = 'three' WHERE id = 1;"});
  ASSERT_TRUE(s.Play());
  s.ExpectSettled("1|b@x|three\n2|b@x|two\n", {1, 2});
  EXPECT_TRUE(s.cluster().WaitForEverywhere(kKept, "", 30s)) << s.cluster().OnEveryNode(kKept);
}

// The same with both rows active: they clash, node 3's later write wins, row 2 is kept.
TEST(UniqueHuntTest, RowsInsideAPartialUniqueIndexDisplaceAndAreKept) {
  testing::StaleNode s({.schema =
                            "CREATE TABLE account (id INTEGER PRIMARY KEY, email TEXT, name TEXT, "
                            "active INTEGER);"
                            "CREATE UNIQUE INDEX account_email ON account (email) WHERE active;",
                        .start = "INSERT INTO account VALUES (1, 'a@x', 'one', 1);",
                        .while_down = "INSERT INTO account VALUES (2, 'b@x', 'two', 1);",
                        .stale = "UPDATE account SET email = 'b@x', name = 'three' WHERE id = 1;"});
  ASSERT_TRUE(s.Play());
  s.ExpectSettled("1|b@x|three\n", {1, 2});
}

// A UNIQUE pair: (team, email). Node 3, down, moves row 1 into the team where node 1 just
// gave row 2 the same email.
TEST(UniqueHuntTest, ACompositeUniqueConstraintKeepsTheRowItReplaced) {
  testing::StaleNode s(
      {.schema = "CREATE TABLE account (id INTEGER PRIMARY KEY, email TEXT, name TEXT, "
                 "team TEXT, UNIQUE (team, email));",
       .start = "INSERT INTO account VALUES (1, 'a@x', 'one', 'red'), (2, 'a@x', 'two', 'blue'), "
                "(3, 'b@x', 'x', 'blue');",
       .while_down = "UPDATE account SET team = 'green' WHERE id = 2;",
       .stale = "UPDATE account SET team = 'green', name = 'three' WHERE id = 1;"});
  ASSERT_TRUE(s.Play());
  s.ExpectSettled("1|a@x|three\n3|b@x|x\n", {1, 2, 3});
}

// Values that SQLite's index holds equal though their storage classes differ: 1 and 1.0 in a
// column without a type.
TEST(UniqueHuntTest, AnIntegerAndARealOfOneValueClashAndTheReplacedRowIsKept) {
  testing::StaleNode s(
      {.schema = "CREATE TABLE account (id INTEGER PRIMARY KEY, email UNIQUE, name TEXT);",
       .start = "INSERT INTO account VALUES (1, 'a@x', 'one');",
       .while_down = "INSERT INTO account VALUES (2, 1, 'two');",
       .stale = "UPDATE account SET email = 1.0, name = 'three' WHERE id = 1;"});
  ASSERT_TRUE(s.Play());
  s.ExpectSettled("1|1.0|three\n", {1, 2});
}

constexpr char kAccount[] =
    "CREATE TABLE account (id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT);";
// What every node keeps, whichever write it names the winner.
constexpr char kKeptRows[] =
    "SELECT tbl, key, origin, change_id FROM \"__marmot__conflicts\" "
    "ORDER BY tbl, key, origin, change_id;";

// Three nodes give one email to three new rows while none can commit: one row stays, the two
// others are kept, the same everywhere.
TEST(UniqueHuntTest, ThreeNodesGivingOneValueKeepTwoRowsTheSameEverywhere) {
  testing::LocalCluster c({.nodes = 3, .shards = 1, .schema = kAccount});
  c.Start();
  ASSERT_EQ(c.StopNode(2), 0);
  ASSERT_EQ(c.StopNode(3), 0);
  for (int node = 1; node <= 3; ++node) {
    c.Sql(node,
          absl::StrCat("INSERT INTO account VALUES (", 10 + node, ", 'z@x', 'node ", node, "');"));
  }
  c.StartNode(2);
  c.StartNode(3);
  ASSERT_TRUE(c.WaitUntilReady(2, 60s)) << c.log(2);
  ASSERT_TRUE(c.WaitUntilReady(3, 60s)) << c.log(3);
  constexpr char kCount[] = "SELECT count(*) FROM account;";
  EXPECT_TRUE(c.WaitForEverywhere(kCount, "1\n", 30s)) << c.OnEveryNode(kRows);
  EXPECT_TRUE(c.WaitForSame(kRows, 30s)) << c.OnEveryNode(kRows);
  EXPECT_TRUE(c.WaitForEverywhere("SELECT count(*) FROM \"__marmot__conflicts\";", "2\n", 30s))
      << c.OnEveryNode(kKept);
  EXPECT_TRUE(c.WaitForSame(kKeptRows, 30s)) << c.OnEveryNode(kKept);
  EXPECT_TRUE(EveryIdAccountedFor(c, {11, 12, 13}));
  EXPECT_TRUE(c.WaitForEverywhere(kDeadLetters, "0\n", 10s)) << c.OnEveryNode(kDeadLetters);
}

// Node 1's application swaps the emails of rows 1 and 2 (through a third value, in one
// transaction) while node 3, down, renames row 1. Node 3's rename was made without seeing the
// swap: it loses and is kept; the swap stands on every node.
TEST(UniqueHuntTest, ASwapOfTwoRowsValuesWhileAStaleNodeEditsOneEndsTheSameEverywhere) {
  testing::StaleNode s({.schema = kAccount,
                        .start = "INSERT INTO account VALUES (1, 'a@x', 'one'), (2, 'b@x', 'two');",
                        .while_down = "BEGIN; UPDATE account SET email = 'swap' WHERE id = 1;"
                                      "UPDATE account SET email = 'a@x' WHERE id = 2;"
                                      "UPDATE account SET email = 'b@x' WHERE id = 1; COMMIT;",
                        .stale = "UPDATE account SET name = 'three' WHERE id = 1;",
                        .kept_query = kKeptRows});
  ASSERT_TRUE(s.Play());
  s.ExpectSettled("1|b@x|one\n2|a@x|two\n", {1, 2});
}

// Node 1 gives row 2 the email node 3 (down) gives row 1; node 2, having seen it, moves row 2
// to another email before node 3 is back. Row 2 never meets node 3's row 1 in the shard: it
// stays on every node, node 3 included.
TEST(UniqueHuntTest, ARowThatMovesOnBeforeTheStaleNodesWriteComesStaysEverywhere) {
  testing::LocalCluster c({.nodes = 3, .shards = 1, .schema = kAccount});
  c.Start();
  c.Sql(1, "INSERT INTO account VALUES (1, 'a@x', 'one'), (2, 'b@x', 'two');");
  ASSERT_TRUE(c.WaitForEverywhere(kRows, "1|a@x|one\n2|b@x|two\n", 30s));
  ASSERT_EQ(c.StopNode(3), 0);
  c.Sql(1, "UPDATE account SET email = 'z@x' WHERE id = 2;");
  ASSERT_TRUE(testing::WaitFor([&] { return c.Sql(2, kRows) == "1|a@x|one\n2|z@x|two\n"; }, 30s));
  c.Sql(2, "UPDATE account SET email = 'y@x' WHERE id = 2;");
  ASSERT_TRUE(testing::WaitFor([&] { return c.Sql(1, kRows) == "1|a@x|one\n2|y@x|two\n"; }, 30s));
  c.Sql(3, "UPDATE account SET email = 'z@x', name = 'three' WHERE id = 1;");
  c.StartNode(3);
  ASSERT_TRUE(c.WaitUntilReady(3, 60s)) << c.log(3);
  EXPECT_TRUE(c.WaitForEverywhere(kRows, "1|z@x|three\n2|y@x|two\n", 30s))
      << c.OnEveryNode(kRows) << c.OnEveryNode(kKept);
  EXPECT_TRUE(c.WaitForSame(kKeptRows, 30s)) << c.OnEveryNode(kKept);
  EXPECT_TRUE(c.WaitForEverywhere(kDeadLetters, "0\n", 10s)) << c.OnEveryNode(kDeadLetters);
}

// As above, but node 2 renames row 2 keeping the email: node 3's row 1 then replaces row 2 as
// node 2 left it, and every node keeps that version of it, once.
TEST(UniqueHuntTest, ARowEditedAfterTakingTheValueIsKeptOnceAsItsLastVersion) {
  testing::LocalCluster c({.nodes = 3, .shards = 1, .schema = kAccount});
  c.Start();
  c.Sql(1, "INSERT INTO account VALUES (1, 'a@x', 'one'), (2, 'b@x', 'two');");
  ASSERT_TRUE(c.WaitForEverywhere(kRows, "1|a@x|one\n2|b@x|two\n", 30s));
  ASSERT_EQ(c.StopNode(3), 0);
  c.Sql(1, "UPDATE account SET email = 'z@x' WHERE id = 2;");
  ASSERT_TRUE(testing::WaitFor([&] { return c.Sql(2, kRows) == "1|a@x|one\n2|z@x|two\n"; }, 30s));
  c.Sql(2, "UPDATE account SET name = 'renamed' WHERE id = 2;");
  ASSERT_TRUE(
      testing::WaitFor([&] { return c.Sql(1, kRows) == "1|a@x|one\n2|z@x|renamed\n"; }, 30s));
  c.Sql(3, "UPDATE account SET email = 'z@x', name = 'three' WHERE id = 1;");
  c.StartNode(3);
  ASSERT_TRUE(c.WaitUntilReady(3, 60s)) << c.log(3);
  EXPECT_TRUE(c.WaitForEverywhere(kRows, "1|z@x|three\n", 30s))
      << c.OnEveryNode(kRows) << c.OnEveryNode(kKept);
  EXPECT_TRUE(c.WaitForEverywhere("SELECT key, origin FROM \"__marmot__conflicts\";", "2|2\n", 30s))
      << c.OnEveryNode(kKept);
  EXPECT_TRUE(c.WaitForSame(kKeptRows, 30s)) << c.OnEveryNode(kKept);
  EXPECT_TRUE(c.WaitForEverywhere(kDeadLetters, "0\n", 10s)) << c.OnEveryNode(kDeadLetters);
}

// The application replaces a row through the UNIQUE email itself (INSERT OR REPLACE): SQLite
// deletes row 1 there without a trigger firing, so only the insert of row 3 replicates. Row 1
// was node 2's: the other nodes' upsert of row 3 replaces it and keeps it. The origin keeps
// nothing (its application deleted the row itself, and no change says so): the nodes agree on
// the rows, not on what they keep.
TEST(UniqueHuntTest, AnApplicationsOwnInsertOrReplaceEndsTheSameEverywhere) {
  testing::LocalCluster c({.nodes = 3, .shards = 1, .schema = kAccount});
  c.Start();
  c.Sql(2, "INSERT INTO account VALUES (1, 'a@x', 'one');");
  ASSERT_TRUE(c.WaitForEverywhere(kRows, "1|a@x|one\n", 30s));
  c.Sql(1, "INSERT OR REPLACE INTO account VALUES (3, 'a@x', 'three');");
  EXPECT_TRUE(c.WaitForEverywhere(kRows, "3|a@x|three\n", 30s)) << c.OnEveryNode(kRows);
  for (int node : {2, 3}) {
    EXPECT_TRUE(testing::WaitFor([&] { return PresentOrKept(c, node).count(1) == 1; }, 30s))
        << c.OnEveryNode(kKept);
  }
  EXPECT_TRUE(c.WaitForEverywhere(kDeadLetters, "0\n", 10s)) << c.OnEveryNode(kDeadLetters);
}

// Nodes 1 and 2 insert 60 rows (ids 100..159) while node 3 is down, holding 2 rows before:
// with -snapshot-entries=20 the log is compacted past what node 3 had.
void WriteWhileNode3IsDown(testing::LocalCluster& c) {
  for (int i = 0; i < 60; ++i) {
    c.Sql(1 + i % 2,
          absl::StrCat("INSERT INTO account VALUES (", 100 + i, ", 'u", i, "@x', 'filler');"));
  }
  ASSERT_TRUE(
      testing::WaitFor([&] { return c.Sql(2, "SELECT count(*) FROM account;") == "62\n"; }, 30s));
}

// Rows kept through UNIQUE values travel with snapshots: a node that was down while the log
// was compacted installs one and keeps what the others keep.
TEST(UniqueHuntTest, KeptRowsTravelWithASnapshot) {
  testing::LocalCluster c(
      {.nodes = 3, .shards = 1, .schema = kAccount, .extra_flags = {"-snapshot-entries=20"}});
  c.Start();
  c.Sql(1, "INSERT INTO account VALUES (1, 'a@x', 'one');");
  ASSERT_TRUE(c.WaitForEverywhere(kRows, "1|a@x|one\n", 30s));
  // Node 3, down, takes the email node 1 gives a new row; the log is compacted past both.
  ASSERT_EQ(c.StopNode(3), 0);
  c.Sql(1, "INSERT INTO account VALUES (2, 'b@x', 'two');");
  c.Sql(3, "UPDATE account SET email = 'b@x', name = 'three' WHERE id = 1;");
  ASSERT_NO_FATAL_FAILURE(WriteWhileNode3IsDown(c));
  c.StartNode(3);
  ASSERT_TRUE(c.WaitUntilReady(3, 60s)) << c.log(3);
  constexpr char kFirst[] = "SELECT id, email, name FROM account WHERE id < 100 ORDER BY id;";
  EXPECT_TRUE(c.WaitForEverywhere(kFirst, "1|b@x|three\n", 30s)) << c.OnEveryNode(kFirst);
  EXPECT_TRUE(c.WaitForSame("SELECT * FROM account ORDER BY id;", 30s));
  EXPECT_TRUE(c.WaitForEverywhere(kKeptRows, c.Sql(1, kKeptRows), 30s)) << c.OnEveryNode(kKept);
  EXPECT_TRUE(EveryIdAccountedFor(c, {1, 2}));
  // Node 2 now misses a compacted stretch too, and installs a snapshot over its kept rows.
  ASSERT_EQ(c.StopNode(2), 0);
  for (int i = 60; i < 100; ++i) {
    c.Sql(1 + (i % 2) * 2,
          absl::StrCat("INSERT INTO account VALUES (", 100 + i, ", 'u", i, "@x', 'filler');"));
  }
  c.StartNode(2);
  ASSERT_TRUE(c.WaitUntilReady(2, 60s)) << c.log(2);
  EXPECT_TRUE(c.WaitForSame("SELECT * FROM account ORDER BY id;", 30s));
  EXPECT_TRUE(c.WaitForSame(kKeptRows, 30s)) << c.OnEveryNode(kKept);
  EXPECT_TRUE(EveryIdAccountedFor(c, {1, 2}));
  EXPECT_TRUE(c.WaitForEverywhere(kDeadLetters, "0\n", 10s)) << c.OnEveryNode(kDeadLetters);
}

// Reviewing fca23e2: node 3, down, gives row 1 the email node 1 then gives a new row 2, while
// node 1 edits row 1 too (so node 3's change, made over the older row 1, loses). The log is
// compacted past all that: node 3 installs a snapshot while its change is pending, which keeps
// row 2 at once for that change (it would take row 1's email here); the change then loses on
// every node, replaces nothing, and row 2 stands everywhere, node 3 included.
TEST(UniqueHuntTest, ARowKeptAtOnceByASnapshotForAnOwnChangeThatLosesStandsEverywhere) {
  testing::LocalCluster c(
      {.nodes = 3, .shards = 1, .schema = kAccount, .extra_flags = {"-snapshot-entries=20"}});
  c.Start();
  c.Sql(1, "INSERT INTO account VALUES (1, 'a@x', 'one');");
  ASSERT_TRUE(c.WaitForEverywhere(kRows, "1|a@x|one\n", 30s));
  ASSERT_EQ(c.StopNode(3), 0);
  c.Sql(3, "UPDATE account SET email = 'b@x', name = 'three' WHERE id = 1;");
  c.Sql(1, "UPDATE account SET name = 'one, edited' WHERE id = 1;");
  c.Sql(1, "INSERT INTO account VALUES (2, 'b@x', 'two');");
  ASSERT_NO_FATAL_FAILURE(WriteWhileNode3IsDown(c));
  c.StartNode(3);
  ASSERT_TRUE(c.WaitUntilReady(3, 60s)) << c.log(3);
  constexpr char kFirst[] = "SELECT id, email, name FROM account WHERE id < 100 ORDER BY id;";
  EXPECT_TRUE(c.WaitForEverywhere(kFirst, "1|a@x|one, edited\n2|b@x|two\n", 30s))
      << c.OnEveryNode(kFirst) << c.OnEveryNode(kKept);
  EXPECT_TRUE(c.WaitForSame("SELECT * FROM account ORDER BY id;", 30s));
  EXPECT_TRUE(c.WaitForSame(kKeptRows, 30s)) << c.OnEveryNode(kKept);
  EXPECT_TRUE(EveryIdAccountedFor(c, {1, 2}));
  EXPECT_TRUE(c.WaitForEverywhere(kDeadLetters, "0\n", 10s)) << c.OnEveryNode(kDeadLetters);
  // (The path taken: node 3 kept row 2 at once, and wrote it once its change lost.)
  EXPECT_THAT(c.log(3), ::testing::HasSubstr("took first here: it is kept as a conflict"));
  EXPECT_THAT(c.log(3), ::testing::HasSubstr("which lost, is written"));
}

// The stale node's write that takes row 2's new email also moves row 1 to another key.
TEST(UniqueHuntTest, ARekeyTakingAnotherRowsValueKeepsThatRow) {
  testing::StaleNode s(
      {.schema = kAccount,
       .start = "INSERT INTO account VALUES (1, 'a@x', 'one'), (2, 'b@x', 'two');",
       .while_down = "UPDATE account SET email = 'z@x' WHERE id = 2;",
       .stale = "UPDATE account SET id = 5, email = 'z@x', name = 'three' WHERE id = 1;"});
  ASSERT_TRUE(s.Play());
  s.ExpectSettled("5|z@x|three\n", {2, 5});
}

// Node 1 moves row 2 to key 7, taking the email node 3 (down) gives row 1, then edits row 7.
// Node 3 keeps the rekey at once (its own change holds the value there); the edit, made over
// the rekey, takes its place there: one conflict, row 7 as node 1 edited it, on every node (a
// rekey kept at once and looked up by another key would leave it a second conflict on node 3).
TEST(UniqueHuntTest, AnEditOverARekeyKeptAtOnceTakesItsPlace) {
  testing::StaleNode s({.schema = kAccount,
                        .start = "INSERT INTO account VALUES (1, 'a@x', 'one'), (2, 'b@x', 'two');",
                        .while_down = "UPDATE account SET id = 7, email = 'z@x' WHERE id = 2;"
                                      "UPDATE account SET name = 'later' WHERE id = 7;",
                        .stale = "UPDATE account SET email = 'z@x', name = 'three' WHERE id = 1;"});
  ASSERT_TRUE(s.Play());
  s.ExpectSettled("1|z@x|three\n", {1, 7});
  const testing::LocalCluster& c = s.cluster();
  constexpr char kWhich[] =
      "SELECT key, origin, winner_origin, instr(change, CAST('later' AS BLOB)) > 0 FROM "
      "\"__marmot__conflicts\";";
  EXPECT_TRUE(c.WaitForEverywhere(kWhich, "7|1|3|1\n", 30s)) << c.OnEveryNode(kKept);
}

// NULLs never clash in a UNIQUE column; a huge row that is replaced is kept whole.
TEST(UniqueHuntTest, NullsStayAndAHugeReplacedRowIsKeptWhole) {
  testing::StaleNode s(
      {.schema = kAccount,
       .start = "INSERT INTO account VALUES (1, 'a@x', 'one'), (3, 'c@x', 'three');",
       .while_down = "INSERT INTO account VALUES (2, NULL, 'two'), "
                     "(4, 'd@x', hex(randomblob(400000)));",
       .stale = "UPDATE account SET email = NULL WHERE id = 1;"
                "UPDATE account SET email = 'd@x' WHERE id = 3;",
       .rows_query = "SELECT id, email, length(name) FROM account ORDER BY id;"});
  ASSERT_TRUE(s.Play());
  s.ExpectSettled("1||3\n2||3\n3|d@x|5\n", {1, 2, 3, 4});
  // The kept row is node 1's whole row 4.
  EXPECT_TRUE(s.cluster().WaitForEverywhere(
      "SELECT key, origin, length(change) > 800000 FROM \"__marmot__conflicts\";", "4|1|1\n", 30s));
}

// With several shards the rows of two keys meet in no single order, but none is lost: the
// stale-node scenarios above, over four shards.
TEST(UniqueHuntTest, StaleWritesTakingValuesOverFourShardsLoseNoRow) {
  std::string rows = "INSERT INTO account VALUES ";
  for (int id = 1; id <= 20; ++id) {
    absl::StrAppend(&rows, id == 1 ? "" : ", ", "(", id, ", 'e", id, "@x', 'n", id, "')");
  }
  std::string down, stale;
  for (int id = 1; id <= 10; ++id) {
    // Node 1 gives row id+10 a new email that node 3 gives row id; for even ids node 1 then
    // moves row id+10 on, as a swap would.
    absl::StrAppend(&down, "UPDATE account SET email = 'z", id, "@x' WHERE id = ", id + 10, ";");
    if (id % 2 == 0) {
      absl::StrAppend(&down, "UPDATE account SET email = 'y", id, "@x' WHERE id = ", id + 10, ";");
    }
    absl::StrAppend(&stale, "UPDATE account SET email = 'z", id,
                    "@x', name = 'three' WHERE id = ", id, ";");
  }
  testing::StaleNode s(
      {.schema = kAccount, .shards = 4, .start = rows + ";", .while_down = down, .stale = stale});
  ASSERT_TRUE(s.Play());
  const testing::LocalCluster& c = s.cluster();
  std::set<int64_t> ids;
  for (int id = 1; id <= 20; ++id) ids.insert(id);
  EXPECT_TRUE(testing::WaitFor([&] { return s.EveryIdAccountedFor(ids); }, 60s));
  EXPECT_TRUE(s.EveryIdAccountedFor(ids));
  EXPECT_TRUE(c.WaitForEverywhere(kDeadLetters, "0\n", 10s)) << c.OnEveryNode(kDeadLetters);
}

constexpr char kAuth[] = "Basic dW5pcXVlOmh1bnQ=";

class UniqueHuntPaneTest : public ::testing::Test {
 protected:
  void SetUp() override { setenv("AUTH_KEY", kAuth, 1); }
};

// An operator lists a row kept through a UNIQUE value and resolves it: gone on every node.
TEST_F(UniqueHuntPaneTest, AKeptRowIsListedAndResolvedOnEveryNode) {
  testing::StaleNode s({.schema = kAccount,
                        .start = "INSERT INTO account VALUES (1, 'a@x', 'one');",
                        .while_down = "INSERT INTO account VALUES (2, 'b@x', 'two');",
                        .stale = "UPDATE account SET email = 'b@x', name = 'three' WHERE id = 1;"});
  ASSERT_TRUE(s.Play());
  testing::LocalCluster& c = s.cluster();
  constexpr char kCount[] = "SELECT count(*) FROM \"__marmot__conflicts\";";
  ASSERT_TRUE(c.WaitForEverywhere(kCount, "1\n", 30s)) << c.OnEveryNode(kKept);
  for (int node = 1; node <= 3; ++node) {
    auto listed = testing::PaneCall(c, node, kAuth, "GET", "/v1/conflicts?table=account");
    ASSERT_TRUE(listed);
    EXPECT_EQ(listed->status, 200) << listed->body;
    EXPECT_THAT(listed->body, ::testing::HasSubstr("two")) << listed->body;
  }
  auto resolved = testing::PaneCall(c, 2, kAuth, "POST", "/v1/conflicts:resolve",
                                    "{\"all\": true, \"table\": \"account\"}");
  ASSERT_TRUE(resolved);
  EXPECT_EQ(resolved->status, 200) << resolved->body;
  EXPECT_TRUE(c.WaitForEverywhere(kCount, "0\n", 30s)) << c.OnEveryNode(kKept);
  EXPECT_TRUE(c.WaitForEverywhere(kRows, "1|b@x|three\n", 30s)) << c.OnEveryNode(kRows);
}

// Sign-ups of the same emails on every node while node 2 is killed and restarted: every one is
// present or kept everywhere, and with one shard the nodes agree on both.
TEST(UniqueHuntTest, SignUpsThroughAKilledNodeLoseNothing) {
  testing::LocalCluster c({.nodes = 3, .shards = 1, .schema = kAccount});
  c.Start();
  constexpr int kPerNode = 30;
  std::mutex mu;
  std::set<int64_t> written;
  std::vector<std::thread> writers;
  for (int node = 1; node <= 3; ++node) {
    writers.emplace_back([&, node] {
      for (int i = 1; i <= kPerNode; ++i) {
        const int64_t id = node * 1000 + i;
        // Refused when the email is taken here already.
        absl::StatusOr<std::string> done = sqlite::testing::RunSqliteCli(
            c.db_path(node), absl::StrCat(".timeout 20000\nINSERT INTO account VALUES (", id,
                                          ", 'user", i % 10, "@x', 'node ", node, "');"));
        if (done.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          written.insert(id);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(15 * node));
      }
    });
  }
  std::this_thread::sleep_for(300ms);
  c.KillNode(2);
  std::this_thread::sleep_for(300ms);
  c.StartNode(2);
  for (std::thread& w : writers) w.join();
  ASSERT_TRUE(c.WaitUntilReady(2, 60s)) << c.log(2);
  EXPECT_TRUE(testing::WaitFor([&] { return EveryIdAccountedFor(c, written); }, 60s));
  EXPECT_TRUE(EveryIdAccountedFor(c, written));
  EXPECT_TRUE(c.WaitForSame(kRows, 30s)) << c.OnEveryNode(kRows);
  EXPECT_TRUE(c.WaitForSame(kKeptRows, 30s)) << c.OnEveryNode(kKeptRows);
  EXPECT_TRUE(c.WaitForEverywhere(kDeadLetters, "0\n", 10s)) << c.OnEveryNode(kDeadLetters);
}

}  // namespace
}  // namespace marmot
