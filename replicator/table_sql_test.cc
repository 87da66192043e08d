// Reading a table's SQL as SQLite keeps it, and what ALTER TABLE made of it: the SQL before
// and after each alteration is read back from SQLite itself (the sqlite3 shell).
#include "replicator/table_sql.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using sqlite::testing::RunSqliteCli;
using ::testing::ElementsAre;
using ::testing::Optional;
using ::testing::Pair;

// What ALTER TABLE ADD COLUMN wrote into sqlite_master, for tables written in many ways: the
// SQL before, the definitions added, and the SQL after (read back from SQLite itself).
struct Alteration {
  std::string before, after;
};
Alteration Alter(const std::string& create, const std::vector<std::string>& alterations) {
  const std::string path = sqlite::testing::NewDatabase("added-columns", create);
  auto sql = [&] { return *RunSqliteCli(path, "SELECT sql FROM sqlite_master WHERE name = 't';"); };
  Alteration out;
  out.before = sql();
  for (const std::string& c : alterations) {
    EXPECT_TRUE(RunSqliteCli(path, absl::StrCat(c, ";")).ok()) << c;
  }
  out.after = sql();
  // The CLI ends its output with a newline.
  out.before.pop_back();
  out.after.pop_back();
  return out;
}

TEST(AddedColumnsTest, FindsTheDefinitionsAlterTableAddColumnWrote) {
  struct Case {
    const char* create;
    std::vector<std::string> columns;
  };
  const Case cases[] = {
      {"CREATE TABLE t (a INTEGER PRIMARY KEY, b)", {"c TEXT"}},
      {"CREATE TABLE t (a INTEGER PRIMARY KEY, b)", {"c", "d INTEGER DEFAULT 7", "e BLOB"}},
      {"CREATE TABLE t (a, b, PRIMARY KEY (a, b)) WITHOUT ROWID", {"c TEXT NOT NULL DEFAULT ''"}},
      {"create table \"t\" ( \"a, b\" TEXT , [x)y] INT, CHECK (length(\"a, b\") > 0) )",
       {"\"c, d\" TEXT DEFAULT (printf('%s,%s)', 'a', 'b'))",
        "`e``f` INT CHECK (length(`e``f`) > (1))"}},
      {"CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT) STRICT", {"c TEXT COLLATE NOCASE"}},
      {"CREATE TABLE t (a /* the key ) , */ INTEGER PRIMARY KEY, b -- why\n)",
       {"c REFERENCES t (a) ON DELETE CASCADE"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.create);
    std::vector<std::string> alterations;
    for (const std::string& column : c.columns) {
      alterations.push_back(absl::StrCat("ALTER TABLE t ADD COLUMN ", column));
    }
    const Alteration a = Alter(c.create, alterations);
    EXPECT_THAT(AddedColumns(a.before, a.after), Optional(c.columns));
    // The other way round, or unchanged, nothing was added.
    EXPECT_EQ(AddedColumns(a.after, a.before), std::nullopt);
    EXPECT_EQ(AddedColumns(a.before, a.before), std::nullopt);
  }
}

TEST(AddedColumnsTest, OtherChangesAreNotAddedColumns) {
  // A table made again with a column in the middle has it added (the other nodes add it at
  // the end: rows travel by column name).
  EXPECT_THAT(AddedColumns("CREATE TABLE t (a, b)", "CREATE TABLE t (a, x, b)"),
              Optional(std::vector<std::string>{"x"}));
  // A table constraint added, a column renamed or removed, text changed.
  EXPECT_EQ(AddedColumns("CREATE TABLE t (a, b)", "CREATE TABLE t (a, b, c, UNIQUE (a))"),
            std::nullopt);
  EXPECT_EQ(AddedColumns("CREATE TABLE t (a, b)", "CREATE TABLE t (a, bb, c)"), std::nullopt);
  EXPECT_EQ(AddedColumns("CREATE TABLE t (a, b)", "CREATE TABLE t (a, c)"), std::nullopt);
  EXPECT_EQ(AddedColumns("CREATE TABLE t (a, b)", "CREATE TABLE t (a, b INT, c)"), std::nullopt);
  EXPECT_EQ(AddedColumns("CREATE TABLE t (a, b)", "CREATE TABLE u (a, b, c)"), std::nullopt);
  EXPECT_EQ(AddedColumns("CREATE TABLE t (a, b)", "CREATE TABLE t (a, b, c) WITHOUT ROWID"),
            std::nullopt);
  EXPECT_EQ(AddedColumns("CREATE TABLE t (a, b)", "CREATE TABLE t (a, b, (c))"), std::nullopt);
  EXPECT_EQ(AddedColumns("CREATE TABLE t (a, b)", "CREATE TABLE t (a, b, c))"), std::nullopt);
}

TEST(DiffColumnsTest, ARenamedColumnIsFoundWhereverSqliteRewroteItsName) {
  const Alteration a =
      Alter("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT CHECK (b != ''), c INT, UNIQUE (b, c))",
            {"ALTER TABLE t RENAME COLUMN b TO \"new b\""});
  std::optional<ColumnDiff> diff = DiffColumns(a.before, a.after);
  ASSERT_TRUE(diff.has_value()) << a.after;
  EXPECT_THAT(diff->renamed, ElementsAre(Pair("b", "\"new b\"")));
  EXPECT_TRUE(diff->dropped.empty());
  EXPECT_TRUE(diff->added.empty());
  // Back again.
  diff = DiffColumns(a.after, a.before);
  ASSERT_TRUE(diff.has_value());
  EXPECT_THAT(diff->renamed, ElementsAre(Pair("new b", "b")));
}

TEST(DiffColumnsTest, DroppedAndAddedColumnsAreFound) {
  const Alteration a = Alter("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT, c INT, d BLOB)",
                             {"ALTER TABLE t DROP COLUMN b", "ALTER TABLE t DROP COLUMN D",
                              "ALTER TABLE t ADD COLUMN e REAL"});
  std::optional<ColumnDiff> diff = DiffColumns(a.before, a.after);
  ASSERT_TRUE(diff.has_value()) << a.after;
  EXPECT_TRUE(diff->renamed.empty());
  EXPECT_THAT(diff->dropped, ElementsAre("b", "d"));
  EXPECT_THAT(diff->added, ElementsAre("e REAL"));
}

TEST(DiffColumnsTest, WhereAColumnStandsTellsARenameFromADropAndAnAdd) {
  // Renamed where a column follows it, with a column added: a rename keeps its place.
  const Alteration a =
      Alter("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT, w TEXT)",
            {"ALTER TABLE t RENAME COLUMN v TO x", "ALTER TABLE t ADD COLUMN a TEXT"});
  std::optional<ColumnDiff> diff = DiffColumns(a.before, a.after);
  ASSERT_TRUE(diff.has_value()) << a.after;
  EXPECT_THAT(diff->renamed, ElementsAre(Pair("v", "x")));
  EXPECT_TRUE(diff->dropped.empty());
  EXPECT_THAT(diff->added, ElementsAre("a TEXT"));
  // Dropped, and one defined alike added: it stands at the end, so it was added.
  const Alteration b = Alter("CREATE TABLE t (k INTEGER PRIMARY KEY, b TEXT, c INT)",
                             {"ALTER TABLE t DROP COLUMN b", "ALTER TABLE t ADD COLUMN x TEXT"});
  diff = DiffColumns(b.before, b.after);
  ASSERT_TRUE(diff.has_value()) << b.after;
  EXPECT_TRUE(diff->renamed.empty());
  EXPECT_THAT(diff->dropped, ElementsAre("b"));
  EXPECT_THAT(diff->added, ElementsAre("x TEXT"));
  // Two renamed between columns that stay, one dropped elsewhere, one added.
  const Alteration c =
      Alter("CREATE TABLE t (k INTEGER PRIMARY KEY, p INT, q TEXT, r BLOB, s REAL)",
            {"ALTER TABLE t RENAME COLUMN p TO p2", "ALTER TABLE t RENAME COLUMN q TO q2",
             "ALTER TABLE t DROP COLUMN s", "ALTER TABLE t ADD COLUMN z"});
  diff = DiffColumns(c.before, c.after);
  ASSERT_TRUE(diff.has_value()) << c.after;
  EXPECT_THAT(diff->renamed, ElementsAre(Pair("p", "p2"), Pair("q", "q2")));
  EXPECT_THAT(diff->dropped, ElementsAre("s"));
  EXPECT_THAT(diff->added, ElementsAre("z"));
}

TEST(DiffColumnsTest, WhatTextCannotTellApartIsNoDiff) {
  // A column renamed while another defined alike is dropped: was b renamed, or c?
  const Alteration a = Alter("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT, c TEXT)",
                             {"ALTER TABLE t RENAME COLUMN b TO x", "ALTER TABLE t DROP COLUMN c"});
  EXPECT_EQ(DiffColumns(a.before, a.after), std::nullopt) << a.after;
  // Names swapped: nothing moves a column.
  const Alteration b =
      Alter("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT, c TEXT)",
            {"ALTER TABLE t RENAME COLUMN b TO x", "ALTER TABLE t RENAME COLUMN c TO b",
             "ALTER TABLE t RENAME COLUMN x TO c"});
  EXPECT_EQ(DiffColumns(b.before, b.after), std::nullopt) << b.after;
  // A column renamed and one defined alike added, when the renamed one was the last: the same
  // text as the column dropped and two added.
  const Alteration c =
      Alter("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)",
            {"ALTER TABLE t RENAME COLUMN b TO x", "ALTER TABLE t ADD COLUMN y TEXT"});
  EXPECT_EQ(DiffColumns(c.before, c.after), std::nullopt) << c.after;
  // Unchanged, renamed table, a constraint changed, a column's type changed.
  EXPECT_EQ(DiffColumns("CREATE TABLE t (a, b)", "CREATE TABLE t (a, b)"), std::nullopt);
  EXPECT_EQ(DiffColumns("CREATE TABLE t (a, b)", "CREATE TABLE u (a, x)"), std::nullopt);
  EXPECT_EQ(DiffColumns("CREATE TABLE t (a, b, UNIQUE (a))", "CREATE TABLE t (a, x, UNIQUE (b))"),
            std::nullopt);
  EXPECT_EQ(DiffColumns("CREATE TABLE t (a, b TEXT)", "CREATE TABLE t (a, b INT)"), std::nullopt);
}

TEST(DiffColumnsTest, NamesReadTheSameQuotedOrNotInAnyCase) {
  // SQLite quotes a table's name when it renames the table (a rebuild's last step).
  EXPECT_THAT(AddedColumns("CREATE TABLE t (a, B TEXT)", "CREATE TABLE \"T\" (a, [b] TEXT, c)"),
              Optional(ElementsAre("c")));
  // Not so a string literal.
  EXPECT_EQ(AddedColumns("CREATE TABLE t (a DEFAULT 'x')", "CREATE TABLE t (a DEFAULT 'X', c)"),
            std::nullopt);
}

TEST(SameButRenamedTest, AnIndexRewrittenByARenameReadsTheSame) {
  EXPECT_TRUE(SameButRenamed("CREATE INDEX i ON t (b, c)", "CREATE INDEX i ON t (\"New\", c)",
                             {{"b", "new"}}));
  EXPECT_FALSE(
      SameButRenamed("CREATE INDEX i ON t (b, c)", "CREATE INDEX i ON t (b)", {{"b", "new"}}));
  EXPECT_FALSE(
      SameButRenamed("CREATE INDEX i ON t (b, c)", "CREATE INDEX i ON t (x, c)", {{"b", "new"}}));
}

}  // namespace
}  // namespace marmot::replicator
