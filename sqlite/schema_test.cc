#include "sqlite/schema.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sqlite/testing/sqlite_cli.h"

namespace marmot::sqlite {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

class SchemaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = Database::Open(testing::NewTempDir("schema") + "/s.db");
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::make_unique<Database>(*std::move(db));
  }
  TableSchema Read(const std::string& name) {
    auto t = ReadTableSchema(*db_, name);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : TableSchema{};
  }
  static std::vector<std::string> Names(const std::vector<ColumnInfo>& columns) {
    std::vector<std::string> out;
    for (const ColumnInfo& c : columns) out.push_back(c.name);
    return out;
  }
  std::unique_ptr<Database> db_;
};

TEST_F(SchemaTest, ColumnsInDeclarationOrderAndCompositeKeyInKeyOrder) {
  ASSERT_TRUE(db_->Exec("CREATE TABLE pt (z TEXT, a INTEGER NOT NULL, b REAL, "
                        "PRIMARY KEY (b, a))")
                  .ok());
  TableSchema t = Read("pt");
  EXPECT_THAT(Names(t.columns), ElementsAre("z", "a", "b"));
  EXPECT_THAT(t.primary_key, ElementsAre("b", "a"));
  EXPECT_EQ(t.columns[0].declared_type, "TEXT");
  EXPECT_TRUE(t.columns[1].not_null);
  EXPECT_EQ(t.columns[2].pk_position, 1);
  EXPECT_FALSE(t.keyed_by_rowid());
  EXPECT_FALSE(t.without_rowid);
}

TEST_F(SchemaTest, RowidAliasWithoutRowidAndKeylessTables) {
  ASSERT_TRUE(db_->Exec("CREATE TABLE alias (id INTEGER PRIMARY KEY, v);"
                        "CREATE TABLE wr (k TEXT PRIMARY KEY, v) WITHOUT ROWID;"
                        "CREATE TABLE keyless (a, b);")
                  .ok());
  EXPECT_THAT(Read("alias").primary_key, ElementsAre("id"));
  TableSchema wr = Read("wr");
  EXPECT_TRUE(wr.without_rowid);
  EXPECT_THAT(wr.primary_key, ElementsAre("k"));
  TableSchema keyless = Read("keyless");
  EXPECT_THAT(keyless.primary_key, IsEmpty());
  EXPECT_TRUE(keyless.keyed_by_rowid());
}

TEST_F(SchemaTest, GeneratedColumnsAreLeftOut) {
  ASSERT_TRUE(db_->Exec("CREATE TABLE g (id INTEGER PRIMARY KEY, a, "
                        "twice GENERATED ALWAYS AS (a * 2) VIRTUAL, "
                        "thrice GENERATED ALWAYS AS (a * 3) STORED)")
                  .ok());
  TableSchema g = Read("g");
  EXPECT_THAT(Names(g.columns), ElementsAre("id", "a"));
  EXPECT_EQ(g.generated_columns, 2);
}

TEST_F(SchemaTest, ListingSkipsVirtualShadowSystemMarmotTablesAndViews) {
  ASSERT_TRUE(db_->Exec("CREATE TABLE \"order\" (id INTEGER PRIMARY KEY);"
                        "CREATE TABLE plain (id INTEGER PRIMARY KEY);"
                        "CREATE TABLE __marmot__mine (x);"
                        "CREATE VIEW v AS SELECT * FROM plain;"
                        "CREATE VIRTUAL TABLE docs USING fts5(body);"
                        "CREATE TABLE auto (id INTEGER PRIMARY KEY AUTOINCREMENT);")
                  .ok());
  auto listing = ListUserTables(*db_);
  ASSERT_TRUE(listing.ok()) << listing.status();
  std::vector<std::string> names;
  for (const TableSchema& t : listing->tables) names.push_back(t.name);
  // sqlite_sequence (from AUTOINCREMENT), the view, fts5 and its shadow tables are not listed.
  EXPECT_THAT(names, ElementsAre("auto", "order", "plain"));
  EXPECT_THAT(listing->skipped_virtual, ::testing::Contains("docs"));
  EXPECT_THAT(listing->skipped_virtual, ::testing::Contains("docs_data"));
}

TEST_F(SchemaTest, MissingTableIsNotFound) {
  auto t = ReadTableSchema(*db_, "nope");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace marmot::sqlite
