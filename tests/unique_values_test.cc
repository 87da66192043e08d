// Rows of two keys given one UNIQUE value (not their key) on two nodes at once: the later in its
// shard's order replaces the earlier on every node, which is kept as a conflict (issue 20: no
// committed write disappears without a trace). Real marmot processes, the sqlite3 shell as the
// application.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/stale_node.h"
#include "tests/testing/subprocess.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;

constexpr char kSchema[] =
    "CREATE TABLE account (id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT);";
constexpr char kDeadLetters[] = "SELECT count(*) FROM \"__marmot__dead_letters\";";
constexpr char kConflicts[] =
    "SELECT tbl, key, origin, change_id, op, winner_origin, winner_change_id FROM "
    "\"__marmot__conflicts\" ORDER BY origin, change_id;";

// Every id in `ids` is a row of `account` on node `id`, or the key of a conflict kept there.
::testing::AssertionResult EveryIdAccountedFor(const testing::LocalCluster& c, int node,
                                               const std::set<int64_t>& ids) {
  std::set<int64_t> found;
  for (const char* query : {"SELECT id FROM account;",
                            "SELECT key FROM \"__marmot__conflicts\" WHERE tbl = 'account';"}) {
    for (absl::string_view line : absl::StrSplit(c.Sql(node, query), '\n', absl::SkipEmpty())) {
      int64_t id = 0;
      if (absl::SimpleAtoi(line, &id)) found.insert(id);
    }
  }
  std::vector<int64_t> missing;
  for (int64_t id : ids) {
    if (found.count(id) == 0) missing.push_back(id);
  }
  if (missing.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "node " << node << ": " << missing.size() << " of " << ids.size()
         << " sign-ups neither present nor kept, first " << missing.front();
}

// The hunt's case: node 3, down, gives row 1 the email node 1 gave a new row 2 meanwhile. Row
// 2 was deleted on every node by node 3's change (SQLite's REPLACE in the applier), with no
// conflict kept. Now it is kept, the same on every node, and row 1 is node 3's everywhere.
TEST(UniqueValuesTest, AStaleNodeTakingAnotherRowsUniqueValueKeepsThatRowAsAConflict) {
  testing::StaleNode s({.schema = kSchema,
                        .start = "INSERT INTO account VALUES (1, 'a@x', 'one');",
                        .while_down = "INSERT INTO account VALUES (2, 'b@x', 'two');",
                        .stale = "UPDATE account SET email = 'b@x', name = 'three' WHERE id = 1;",
                        .kept_query = kConflicts});
  ASSERT_TRUE(s.Play());
  s.ExpectSettled("1|b@x|three\n", {1, 2});
  const testing::LocalCluster& c = s.cluster();
  constexpr char kKept[] =
      "SELECT tbl, key, origin, op, winner_origin FROM \"__marmot__conflicts\";";
  EXPECT_TRUE(c.WaitForEverywhere(kKept, "account|2|1|I|3\n", 30s)) << c.OnEveryNode(kKept);
}

// The same through a UNIQUE index on an expression, which no probe can ask about: SQLite's
// preupdate hook tells which row the write replaced (kept), and a trial write which row this
// node's own pending change holds (node 3 keeps node 1's row at once, its own change stays).
TEST(UniqueValuesTest, ARowReplacedThroughAnIndexOnAnExpressionIsKeptToo) {
  testing::StaleNode s({.schema =
                            "CREATE TABLE account (id INTEGER PRIMARY KEY, email TEXT, name TEXT);"
                            "CREATE UNIQUE INDEX account_email ON account (lower(email));",
                        .start = "INSERT INTO account VALUES (1, 'a@x', 'one');",
                        .while_down = "INSERT INTO account VALUES (2, 'b@x', 'two');",
                        .stale = "UPDATE account SET email = 'B@X', name = 'three' WHERE id = 1;"});
  ASSERT_TRUE(s.Play());
  s.ExpectSettled("1|B@X|three\n", {1, 2});
  const testing::LocalCluster& c = s.cluster();
  constexpr char kKept[] =
      "SELECT tbl, key, origin, op, winner_origin FROM \"__marmot__conflicts\";";
  EXPECT_TRUE(c.WaitForEverywhere(kKept, "account|2|1|I|3\n", 30s)) << c.OnEveryNode(kKept);
}

// The same through a UNIQUE generated column, VIRTUAL or STORED (`kind`): the change carries no
// value of it (each node computes it), no probe can ask about it, and SQLite's preupdate hook
// reports rows whose columns are not the table's writable ones. Node 3's later write replaces
// node 1's row 2 on every node; row 2 is kept everywhere, as the same conflict, without the
// generated column's value (it cannot be written).
void AStaleNodeTakingAGeneratedUniqueValue(const std::string& kind) {
  testing::StaleNode s(
      {.schema = absl::StrCat("CREATE TABLE account (id INTEGER PRIMARY KEY, email TEXT, "
                              "email_lc TEXT GENERATED ALWAYS AS (lower(email)) ",
                              kind, " UNIQUE, name TEXT);"),
       .start = "INSERT INTO account (id, email, name) VALUES (1, 'a@x', 'one');",
       .while_down = "INSERT INTO account (id, email, name) VALUES (2, 'b@x', 'two');",
       .stale = "UPDATE account SET email = 'B@X', name = 'three' WHERE id = 1;",
       .rows_query = "SELECT id, email, email_lc, name FROM account ORDER BY id;",
       .kept_query = kConflicts});
  ASSERT_TRUE(s.Play());
  s.ExpectSettled("1|B@X|b@x|three\n", {1, 2});
  // Row 2 kept, node 1's insert that node 3's change replaced, its values without email_lc.
  const testing::LocalCluster& c = s.cluster();
  constexpr char kKept[] =
      "SELECT tbl, key, origin, op, winner_origin, instr(change, CAST('two' AS BLOB)) > 0, "
      "instr(change, CAST('email_lc' AS BLOB)) FROM \"__marmot__conflicts\";";
  EXPECT_TRUE(c.WaitForEverywhere(kKept, "account|2|1|I|3|1|0\n", 30s)) << c.OnEveryNode(kKept);
}

TEST(UniqueValuesTest, ARowReplacedThroughAVirtualGeneratedUniqueColumnIsKept) {
  AStaleNodeTakingAGeneratedUniqueValue("VIRTUAL");
}

TEST(UniqueValuesTest, ARowReplacedThroughAStoredGeneratedUniqueColumnIsKept) {
  AStaleNodeTakingAGeneratedUniqueValue("STORED");
}

// Sign-ups on every node at once, each node's ids its own, the emails the same: every sign-up is
// on every node or kept as a conflict there. With one shard the nodes end the same; with four,
// rows of two shards meet in no single order and a node may keep the other of two rows, but
// none loses one.
void SignUpsOfTheSameEmailsOnEveryNode(int shards) {
  testing::LocalCluster c({.nodes = 3, .shards = shards, .schema = kSchema});
  c.Start();
  constexpr int kPerNode = 40;
  std::mutex mu;
  std::set<int64_t> written;  // Sign-ups committed on their node.
  int refused = 0;            // Refused there: the email was taken there already.
  std::vector<std::thread> writers;
  for (int node = 1; node <= 3; ++node) {
    writers.emplace_back([&, node] {
      for (int i = 1; i <= kPerNode; ++i) {
        const int64_t id = node * 1000 + i;
        absl::StatusOr<std::string> done = sqlite::testing::RunSqliteCli(
            c.db_path(node), absl::StrCat(".timeout 20000\nINSERT INTO account VALUES (", id,
                                          ", 'user", i, "@x', 'node ", node, "');"));
        {
          std::lock_guard<std::mutex> lock(mu);
          if (done.ok()) {
            written.insert(id);
          } else {
            EXPECT_THAT(done.status().message(), ::testing::HasSubstr("UNIQUE"));
            ++refused;
          }
        }
        // Paced, so that other nodes' sign-ups arrive between them.
        std::this_thread::sleep_for(std::chrono::milliseconds(20 * node));
      }
    });
  }
  for (std::thread& w : writers) w.join();
  constexpr char kCount[] = "SELECT count(*) FROM account;";
  testing::WaitFor(
      [&] {
        for (int node = 1; node <= 3; ++node) {
          if (!EveryIdAccountedFor(c, node, written)) return false;
        }
        return true;
      },
      90s);
  for (int node = 1; node <= 3; ++node) EXPECT_TRUE(EveryIdAccountedFor(c, node, written));
  // Every email once per node.
  EXPECT_TRUE(c.WaitForEverywhere(kCount, absl::StrCat(kPerNode, "\n"), 30s))
      << c.OnEveryNode(kCount);
  if (shards == 1) {
    constexpr char kRows[] = "SELECT id, email FROM account ORDER BY id;";
    EXPECT_TRUE(c.WaitForSame(kRows, 30s)) << c.OnEveryNode(kRows);
    // The same rows kept everywhere. Their winners may differ when three took one email: a node
    // whose own row took it keeps the first at once, naming its own as the winner, though
    // another node's row took it in between in the shard.
    constexpr char kLost[] =
        "SELECT tbl, key, origin, change_id, op FROM \"__marmot__conflicts\" ORDER BY key;";
    EXPECT_TRUE(c.WaitForSame(kLost, 30s)) << c.OnEveryNode(kLost);
    // Each kept once: written = present + kept.
    EXPECT_EQ(c.Sql(1, "SELECT count(*) FROM \"__marmot__conflicts\";"),
              absl::StrCat(written.size() - kPerNode, "\n"));
  }
  EXPECT_TRUE(c.WaitForEverywhere(kDeadLetters, "0\n", 10s)) << c.OnEveryNode(kDeadLetters);
  std::printf(
      "%d shard(s): written %zu (refused locally %d), present %s, kept %s\n", shards,
      written.size(), refused, std::string(absl::StripAsciiWhitespace(c.Sql(1, kCount))).c_str(),
      std::string(
          absl::StripAsciiWhitespace(c.Sql(1, "SELECT count(*) FROM \"__marmot__conflicts\";")))
          .c_str());
}

TEST(UniqueValuesTest, SignUpsOfTheSameEmailsOnEveryNodeOneShard) {
  SignUpsOfTheSameEmailsOnEveryNode(1);
}

TEST(UniqueValuesTest, SignUpsOfTheSameEmailsOnEveryNodeFourShards) {
  SignUpsOfTheSameEmailsOnEveryNode(4);
}

}  // namespace
}  // namespace marmot
