// What marmot captures of the schema a local process changes, and how a schema change of
// another node applies: the object made so, compared as the object, hostile changes refused.
#include "replicator/schema_changes.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using change::v1::SchemaChange;
using sqlite::testing::RunSqliteCli;
using ::testing::HasSubstr;

class SchemaChangesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = sqlite::testing::NewDatabase(
        "schema-changes",
        "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"
        "CREATE INDEX kv_v ON kv (v);"
        "CREATE TABLE \"__marmot__kv_change_log\" (id INTEGER PRIMARY KEY);");
    absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(path_);
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::make_unique<sqlite::Database>(*std::move(db));
    ASSERT_TRUE(EnsureSchemaBaseline(*db_).ok());
  }

  // The changes to replicate, one line each: "CREATE table t" or "DROP index i"; then what does
  // not replicate, after "not:"; the baseline then keeps the latter.
  std::string Unreplicated() {
    absl::StatusOr<SchemaDiff> diff = DiffSchema(*db_);
    if (!diff.ok()) return std::string(diff.status().message());
    std::string out;
    for (const SchemaChange& c : diff->replicate) {
      absl::StrAppend(&out, c.kind() == SchemaChange::CREATE ? "CREATE " : "DROP ", c.type(), " ",
                      c.name(), "\n");
    }
    for (const std::string& n : diff->not_replicated) absl::StrAppend(&out, "not: ", n, "\n");
    EXPECT_TRUE(KeepInBaseline(*db_, *diff).ok());
    return out;
  }

  static SchemaChange Create(const std::string& type, const std::string& name,
                             const std::string& sql) {
    SchemaChange c;
    c.set_kind(SchemaChange::CREATE);
    c.set_type(type);
    c.set_name(name);
    c.set_sql(sql);
    return c;
  }

  SchemaApplied Apply(const SchemaChange& c) {
    absl::StatusOr<SchemaApplied> applied = ApplySchemaChange(*db_, c);
    EXPECT_TRUE(applied.ok()) << applied.status();
    return applied.ok() ? *applied : SchemaApplied{};
  }

  std::string Objects() {
    return *RunSqliteCli(path_,
                         "SELECT type || ' ' || name FROM sqlite_master WHERE substr(name, 1, "
                         "10) != '__marmot__' ORDER BY 1;");
  }

  std::string path_;
  std::unique_ptr<sqlite::Database> db_;
};

TEST_F(SchemaChangesTest, ObjectsThatPredateTheBaselineAreNotChanges) {
  EXPECT_EQ(Unreplicated(), "");
  // Made again, the baseline stays as it was.
  ASSERT_TRUE(EnsureSchemaBaseline(*db_).ok());
  EXPECT_EQ(Unreplicated(), "");
}

TEST_F(SchemaChangesTest, NewObjectsAreCreatesTablesFirstAndGoneOnesAreDrops) {
  ASSERT_TRUE(RunSqliteCli(path_,
                           "CREATE VIEW big AS SELECT * FROM kv WHERE k > 10;"
                           "CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT UNIQUE);"
                           "CREATE INDEX item_name ON item (name);"
                           "CREATE TRIGGER t AFTER INSERT ON item BEGIN SELECT 1; END;"
                           "DROP INDEX kv_v;"
                           "ALTER TABLE kv ADD COLUMN extra;")
                  .ok());
  // The ALTER of kv does not replicate yet, nor the drop of its index (it goes with its table);
  // marmot's tables and SQLite's automatic index are never changes.
  EXPECT_EQ(Unreplicated(),
            "CREATE table item\nCREATE index item_name\nCREATE view big\nCREATE trigger t\n"
            "not: ALTER TABLE kv\n");
  // What does not replicate is kept in the baseline: the next look finds only new changes.
  ASSERT_TRUE(RunSqliteCli(path_, "CREATE INDEX kv_extra ON kv (extra);").ok());
  EXPECT_EQ(Unreplicated(),
            "CREATE table item\nCREATE index item_name\nCREATE index kv_extra\nCREATE view big\n"
            "CREATE trigger t\n");
}

TEST_F(SchemaChangesTest, ARenamedTableAndItsIndexesDoNotReplicate) {
  ASSERT_TRUE(RunSqliteCli(path_, "ALTER TABLE kv RENAME TO kv2;").ok());
  EXPECT_EQ(Unreplicated(),
            "not: CREATE TABLE kv2 (another table renamed to it?)\nnot: DROP TABLE kv\n");
  EXPECT_EQ(Unreplicated(), "");
  // A table made later replicates as usual.
  ASSERT_TRUE(RunSqliteCli(path_, "CREATE TABLE later (id INTEGER PRIMARY KEY);").ok());
  EXPECT_EQ(Unreplicated(), "CREATE table later\n");
}

TEST_F(SchemaChangesTest, AnIndexMadeAgainWithAnotherDefinitionIsADropAndACreate) {
  ASSERT_TRUE(RunSqliteCli(path_, "DROP INDEX kv_v; CREATE INDEX kv_v ON kv (v, k);").ok());
  EXPECT_EQ(Unreplicated(), "DROP index kv_v\nCREATE index kv_v\n");
}

TEST_F(SchemaChangesTest, ATableRenamedAndMadeAgainUnderItsOldNameDoesNotReplicate) {
  // Regression (hunt): the renamed table replicated as a new one, and the other nodes' own
  // rename then failed on its name.
  ASSERT_TRUE(RunSqliteCli(path_,
                           "ALTER TABLE kv RENAME TO kv_old;"
                           "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT, w TEXT);")
                  .ok());
  EXPECT_EQ(Unreplicated(),
            "not: ALTER TABLE kv\nnot: CREATE TABLE kv_old (another table renamed to it?)\n");
  EXPECT_EQ(Unreplicated(), "");
}

TEST_F(SchemaChangesTest, AnAutoincrementTableIsMadeWithSqliteSequence) {
  // Regression (hunt): sqlite_sequence, made with the first AUTOINCREMENT table, made the
  // change look like more than its table: refused on every node without one.
  const SchemaApplied made = Apply(
      Create("table", "ai", "CREATE TABLE ai (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)"));
  EXPECT_EQ(made.outcome, SchemaApplied::kApplied) << made.detail;
  EXPECT_EQ(Apply(Create("table", "ai2",
                         "CREATE TABLE ai2 (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)"))
                .outcome,
            SchemaApplied::kApplied);
}

TEST_F(SchemaChangesTest, ACreateMakesTheObjectOnceAndRecordsIt) {
  const SchemaChange table =
      Create("table", "item", "CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT UNIQUE)");
  const SchemaApplied made = Apply(table);
  EXPECT_EQ(made.outcome, SchemaApplied::kApplied) << made.detail;
  EXPECT_TRUE(made.table_created);
  EXPECT_EQ(Apply(Create("index", "item_name", "CREATE INDEX item_name ON item (name)")).outcome,
            SchemaApplied::kApplied);
  // The same again (another pod ran the same migration, or it is the origin's own): nothing.
  EXPECT_EQ(Apply(table).outcome, SchemaApplied::kAlreadySo);
  EXPECT_EQ(Objects(),
            "index item_name\nindex kv_v\nindex sqlite_autoindex_item_1\ntable item\ntable kv\n");
  // What was applied is in the baseline: nothing here to replicate.
  EXPECT_EQ(Unreplicated(), "");
}

TEST_F(SchemaChangesTest, ANameThatExistsWithAnotherDefinitionIsAConflictAndStays) {
  const SchemaApplied other =
      Apply(Create("table", "kv", "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT, w TEXT)"));
  EXPECT_EQ(other.outcome, SchemaApplied::kConflict);
  EXPECT_THAT(other.detail, HasSubstr("another definition"));
  // Names are compared as SQLite does, without case.
  EXPECT_EQ(Apply(Create("view", "KV", "CREATE VIEW KV AS SELECT 1")).outcome,
            SchemaApplied::kConflict);
  EXPECT_EQ(*RunSqliteCli(path_, "SELECT sql FROM sqlite_master WHERE name = 'kv';"),
            "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)\n");
}

TEST_F(SchemaChangesTest, HostileOrBrokenChangesAreRefusedAndChangeNothing) {
  const std::string before = Objects();
  struct Case {
    SchemaChange change;
    const char* why;
  };
  SchemaChange drop_table;
  drop_table.set_kind(SchemaChange::DROP);
  drop_table.set_type("table");
  drop_table.set_name("kv");
  const Case cases[] = {
      {Create("table", "x", "CREATE TABLE x (a); DROP TABLE kv"), "more than one statement"},
      {Create("table", "x", "DROP TABLE kv"), "does not create exactly"},
      {Create("table", "x", "CREATE TABLE y (a)"), "does not create exactly"},
      {Create("index", "x", "CREATE TABLE x (a)"), "does not create exactly"},
      {Create("table", "__marmot__x", "CREATE TABLE \"__marmot__x\" (a)"), "not the name"},
      {Create("table", "sqlite_x", "CREATE TABLE sqlite_x (a)"), "not the name"},
      {Create("table", "", ""), "not the name"},
      {Create("module", "x", "CREATE TABLE x (a)"), "unknown object type"},
      // Regression (hunt): a forged CREATE TABLE ... AS ran any query, for as long as it liked,
      // holding the write lock of every node.
      {Create("table", "x",
              "CREATE TABLE x AS WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) "
              "SELECT i FROM c"),
       "AS runs a query"},
      {Create("table", "x", "create table if not exists \"x\" as select * from kv"),
       "AS runs a query"},
      {Create("table", "x", "CREATE TABLE main.x AS SELECT 1"), "AS runs a query"},
      // Regression (hunt): names are compared without case.
      {Create("table", "__MARMOT__kv_change_log", "CREATE TABLE \"__MARMOT__kv_change_log\" (a)"),
       "not the name"},
      {Create("trigger", "x",
              "CREATE TRIGGER x AFTER INSERT ON kv BEGIN DELETE FROM \"__marmot__kv_change_log\"; "
              "END"),
       "marmot's own objects"},
      {Create("index", "x", "CREATE INDEX x ON \"__marmot__kv_change_log\" (id)"),
       "marmot's own objects"},
      {Create("index", "x", "CREATE INDEX x ON missing (a)"), "cannot run here"},
      {Create("table", "x", "CREATE TABLE x ("), "cannot run here"},
      {drop_table, "DROP TABLE does not replicate"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.change.sql());
    const SchemaApplied refused = Apply(c.change);
    EXPECT_EQ(refused.outcome, SchemaApplied::kRefused);
    EXPECT_THAT(refused.detail, HasSubstr(c.why));
  }
  EXPECT_EQ(Objects(), before);
}

TEST_F(SchemaChangesTest, ADropRemovesTheObjectOnceAndRecordsIt) {
  SchemaChange drop;
  drop.set_kind(SchemaChange::DROP);
  drop.set_type("index");
  drop.set_name("kv_v");
  EXPECT_EQ(Apply(drop).outcome, SchemaApplied::kApplied);
  EXPECT_EQ(Apply(drop).outcome, SchemaApplied::kAlreadySo);
  EXPECT_EQ(Objects(), "table kv\n");
  EXPECT_EQ(Unreplicated(), "");
  drop.set_type("view");
  drop.set_name("kv");
  EXPECT_EQ(Apply(drop).outcome, SchemaApplied::kConflict);
}

}  // namespace
}  // namespace marmot::replicator
