// Hunting lost rows through UNIQUE values that are not the key (issue 20: no committed write
// disappears without a trace): what a replicated upsert replaces through another UNIQUE index is
// kept as a conflict (replicator/displaced_rows.h). Scenarios an application, an operator and
// an attacker could make, on real marmot processes with the sqlite3 shell as the application.
// The invariant of each: every committed write is on each node or kept as a conflict there, and
// with one shard the nodes agree on the rows and on what they keep.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/testing/local_cluster.h"

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

// Node 3 is down while node 1 writes `while_down`; meanwhile node 3's application writes
// `stale` to its own file; then node 3 comes back and everything settles.
void StaleWriteOnNode3(testing::LocalCluster& c, const std::string& while_down,
                       const std::string& stale) {
  ASSERT_EQ(c.StopNode(3), 0);
  c.Sql(1, while_down);
  const std::string after = c.Sql(1, kRows);
  ASSERT_TRUE(testing::WaitFor([&] { return c.Sql(2, kRows) == after; }, 30s))
      << c.OnEveryNode(kRows);
  c.Sql(3, stale);
  c.StartNode(3);
  ASSERT_TRUE(c.WaitUntilReady(3, 60s)) << c.log(3);
}

// Node 1 changes an existing row 2 to an email that node 3, down, gives row 1. Node 3's change
// comes later in the shard and replaces row 2 on nodes 1 and 2 (kept there). Node 3 keeps node
// 1's change at once when it arrives (kKeepDisplaced): row 2 must be gone there too, not left
// with the values it had before node 1's change.
TEST(UniqueHuntTest, AnExistingRowGivenAValueAStaleNodeTookEndsTheSameEverywhere) {
  testing::LocalCluster c(
      {.nodes = 3,
       .shards = 1,
       .schema = "CREATE TABLE account (id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT);"});
  c.Start();
  c.Sql(1, "INSERT INTO account VALUES (1, 'a@x', 'one'), (2, 'b@x', 'two');");
  ASSERT_TRUE(c.WaitForEverywhere(kRows, "1|a@x|one\n2|b@x|two\n", 30s));
  StaleWriteOnNode3(c, "UPDATE account SET email = 'z@x' WHERE id = 2;",
                    "UPDATE account SET email = 'z@x', name = 'three' WHERE id = 1;");
  EXPECT_TRUE(c.WaitForEverywhere(kRows, "1|z@x|three\n", 30s)) << c.OnEveryNode(kRows);
  EXPECT_TRUE(c.WaitForSame(kKept, 30s)) << c.OnEveryNode(kKept);
  EXPECT_TRUE(EveryIdAccountedFor(c, {1, 2}));
  EXPECT_TRUE(c.WaitForEverywhere(kDeadLetters, "0\n", 10s)) << c.OnEveryNode(kDeadLetters);
}

// A unique index that compares without case on a column that compares with it: 'B@x' and
// 'b@x' are one value to the index, so the upsert of one replaces the row of the other.
TEST(UniqueHuntTest, AUniqueIndexWithItsOwnCollationKeepsTheRowItReplaced) {
  testing::LocalCluster c(
      {.nodes = 3,
       .shards = 1,
       .schema = "CREATE TABLE account (id INTEGER PRIMARY KEY, email TEXT, name TEXT);"
                 "CREATE UNIQUE INDEX account_email ON account (email COLLATE NOCASE);"});
  c.Start();
  c.Sql(1, "INSERT INTO account VALUES (1, 'a@x', 'one');");
  ASSERT_TRUE(c.WaitForEverywhere(kRows, "1|a@x|one\n", 30s));
  StaleWriteOnNode3(c, "INSERT INTO account VALUES (2, 'B@x', 'two');",
                    "UPDATE account SET email = 'b@x', name = 'three' WHERE id = 1;");
  EXPECT_TRUE(c.WaitForEverywhere(kRows, "1|b@x|three\n", 30s)) << c.OnEveryNode(kRows);
  EXPECT_TRUE(c.WaitForSame(kKept, 30s)) << c.OnEveryNode(kKept);
  EXPECT_TRUE(EveryIdAccountedFor(c, {1, 2}));
  EXPECT_TRUE(c.WaitForEverywhere(kDeadLetters, "0\n", 10s)) << c.OnEveryNode(kDeadLetters);
}

// A partial unique index: only active accounts hold their email. Node 3, down, gives its
// inactive row 1 the email of node 1's new active row 2: the two do not clash anywhere, and
// both stay on every node.
TEST(UniqueHuntTest, RowsOutsideAPartialUniqueIndexDoNotDisplaceEachOther) {
  testing::LocalCluster c(
      {.nodes = 3,
       .shards = 1,
       .schema = "CREATE TABLE account (id INTEGER PRIMARY KEY, email TEXT, name TEXT, "
                 "active INTEGER);"
                 "CREATE UNIQUE INDEX account_email ON account (email) WHERE active;"});
  c.Start();
  c.Sql(1, "INSERT INTO account VALUES (1, 'a@x', 'one', 0);");
  ASSERT_TRUE(c.WaitForEverywhere(kRows, "1|a@x|one\n", 30s));
  StaleWriteOnNode3(c, "INSERT INTO account VALUES (2, 'b@x', 'two', 1);",
                    "UPDATE account SET email = 'b@x', name = 'three' WHERE id = 1;");
  EXPECT_TRUE(c.WaitForEverywhere(kRows, "1|b@x|three\n2|b@x|two\n", 30s)) << c.OnEveryNode(kRows);
  EXPECT_TRUE(c.WaitForEverywhere(kKept, "", 30s)) << c.OnEveryNode(kKept);
  EXPECT_TRUE(c.WaitForEverywhere(kDeadLetters, "0\n", 10s)) << c.OnEveryNode(kDeadLetters);
}

// The same with both rows active: they clash, node 3's later write wins, row 2 is kept.
TEST(UniqueHuntTest, RowsInsideAPartialUniqueIndexDisplaceAndAreKept) {
  testing::LocalCluster c(
      {.nodes = 3,
       .shards = 1,
       .schema = "CREATE TABLE account (id INTEGER PRIMARY KEY, email TEXT, name TEXT, "
                 "active INTEGER);"
                 "CREATE UNIQUE INDEX account_email ON account (email) WHERE active;"});
  c.Start();
  c.Sql(1, "INSERT INTO account VALUES (1, 'a@x', 'one', 1);");
  ASSERT_TRUE(c.WaitForEverywhere(kRows, "1|a@x|one\n", 30s));
  StaleWriteOnNode3(c, "INSERT INTO account VALUES (2, 'b@x', 'two', 1);",
                    "UPDATE account SET email = 'b@x', name = 'three' WHERE id = 1;");
  EXPECT_TRUE(c.WaitForEverywhere(kRows, "1|b@x|three\n", 30s)) << c.OnEveryNode(kRows);
  EXPECT_TRUE(c.WaitForSame(kKept, 30s)) << c.OnEveryNode(kKept);
  EXPECT_TRUE(EveryIdAccountedFor(c, {1, 2}));
  EXPECT_TRUE(c.WaitForEverywhere(kDeadLetters, "0\n", 10s)) << c.OnEveryNode(kDeadLetters);
}

// A UNIQUE pair: (team, email). Node 3, down, moves row 1 into the team where node 1 just
// gave row 2 the same email.
TEST(UniqueHuntTest, ACompositeUniqueConstraintKeepsTheRowItReplaced) {
  testing::LocalCluster c(
      {.nodes = 3,
       .shards = 1,
       .schema = "CREATE TABLE account (id INTEGER PRIMARY KEY, email TEXT, name TEXT, "
                 "team TEXT, UNIQUE (team, email));"});
  c.Start();
  c.Sql(1,
        "INSERT INTO account VALUES (1, 'a@x', 'one', 'red'), (2, 'a@x', 'two', 'blue'), "
        "(3, 'b@x', 'x', 'blue');");
  ASSERT_TRUE(c.WaitForEverywhere(kRows, "1|a@x|one\n2|a@x|two\n3|b@x|x\n", 30s));
  StaleWriteOnNode3(c, "UPDATE account SET team = 'green' WHERE id = 2;",
                    "UPDATE account SET team = 'green', name = 'three' WHERE id = 1;");
  EXPECT_TRUE(c.WaitForEverywhere(kRows, "1|a@x|three\n3|b@x|x\n", 30s)) << c.OnEveryNode(kRows);
  EXPECT_TRUE(c.WaitForSame(kKept, 30s)) << c.OnEveryNode(kKept);
  EXPECT_TRUE(EveryIdAccountedFor(c, {1, 2, 3}));
  EXPECT_TRUE(c.WaitForEverywhere(kDeadLetters, "0\n", 10s)) << c.OnEveryNode(kDeadLetters);
}

// Values that SQLite's index holds equal though their storage classes differ: 1 and 1.0 in a
// column without a type.
TEST(UniqueHuntTest, AnIntegerAndARealOfOneValueClashAndTheReplacedRowIsKept) {
  testing::LocalCluster c(
      {.nodes = 3,
       .shards = 1,
       .schema = "CREATE TABLE account (id INTEGER PRIMARY KEY, email UNIQUE, name TEXT);"});
  c.Start();
  c.Sql(1, "INSERT INTO account VALUES (1, 'a@x', 'one');");
  ASSERT_TRUE(c.WaitForEverywhere(kRows, "1|a@x|one\n", 30s));
  StaleWriteOnNode3(c, "INSERT INTO account VALUES (2, 1, 'two');",
                    "UPDATE account SET email = 1.0, name = 'three' WHERE id = 1;");
  EXPECT_TRUE(c.WaitForEverywhere(kRows, "1|1.0|three\n", 30s)) << c.OnEveryNode(kRows);
  EXPECT_TRUE(c.WaitForSame(kKept, 30s)) << c.OnEveryNode(kKept);
  EXPECT_TRUE(EveryIdAccountedFor(c, {1, 2}));
  EXPECT_TRUE(c.WaitForEverywhere(kDeadLetters, "0\n", 10s)) << c.OnEveryNode(kDeadLetters);
}

}  // namespace
}  // namespace marmot
