// A replicated write that replaces rows of other keys through a UNIQUE index keeps each as a
// conflict (displaced_rows.h): through a UNIQUE generated column, VIRTUAL or STORED, which no
// probe can ask about, as through a plain UNIQUE column. The kept row is whole as it was, of the
// table's writable columns only (a generated one cannot be written back), named by its
// version's change, and the write that replaced it is its winner.
#include "replicator/displaced_rows.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "replicator/value_codec.h"
#include "sqlite/change_log.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using change::v1::Change;
using change::v1::TableChanges;
using sqlite::Value;

class DisplacedRowsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    // The email's UNIQUE value: in a generated column (VIRTUAL or STORED) or in the column.
    const std::string unique =
        GetParam() == "column"
            ? "email TEXT UNIQUE"
            : absl::StrCat("email TEXT, lc TEXT GENERATED ALWAYS AS (lower(email)) ", GetParam(),
                           " UNIQUE");
    absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(sqlite::testing::NewDatabase(
        "displaced-rows",
        absl::StrCat("CREATE TABLE account (id INTEGER PRIMARY KEY, ", unique, ", name TEXT);",
                     "INSERT INTO account (id, email, name) VALUES (1, 'a@x', 'one'), "
                     "(2, 'b@x', 'two');",
                     kCreateConflicts, ";", sqlite::kCreateRowVersions, ";")));
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::make_unique<sqlite::Database>(*std::move(db));
    versions_ = std::make_unique<RowVersions>(*db_);
    conflicts_ = std::make_unique<ConflictStore>(*db_);
  }

  std::unique_ptr<sqlite::Database> db_;
  std::unique_ptr<RowVersions> versions_;
  std::unique_ptr<ConflictStore> conflicts_;
  const ShardRouter router_{1};
};

TEST_P(DisplacedRowsTest, ARowReplacedThroughAUniqueValueIsKeptWithItsWritableColumns) {
  TableChanges t;
  t.set_table("account");
  for (const char* column : {"id", "email", "name"}) t.add_columns(column);
  t.add_key_columns("id");
  Change* c = t.add_changes();
  c->set_change_id(21);
  c->set_op(change::v1::OP_UPDATE);
  // 'B@X' for the generated lower(email), 'b@x' for the column: row 2's value either way.
  const std::string email = GetParam() == "column" ? "b@x" : "B@X";
  for (const Value& v : {Value::Integer(1), Value::Text(email), Value::Text("three")}) {
    *c->add_row() = ToWire(v);
  }
  absl::StatusOr<TableWriter> w = PlanWriter(*db_, "account", {"id", "email", "name"}, {"id"});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->unprobed_unique, GetParam() != "column");
  absl::StatusOr<std::string> row_2 = versions_->KeyOf({Value::Integer(2)});
  ASSERT_TRUE(row_2.ok());
  ASSERT_TRUE(versions_
                  ->Set("account", *row_2,
                        {.shard = 0, .raft_index = 5, .origin = 1, .change_id = 11, .columns = 3})
                  .ok());

  const DisplacingWrite at{.db = *db_,
                           .versions = *versions_,
                           .conflicts = *conflicts_,
                           .router = router_,
                           .shard = 0,
                           .raft_index = 9,
                           .origin = 3};
  absl::StatusOr<int64_t> kept =
      WriteKeepingDisplaced(at, *w, t, *c, [&] { return ApplyChange(*db_, *w, t, *c); });
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(*kept, 1);

  absl::StatusOr<std::vector<std::vector<Value>>> rows =
      db_->QueryRows("SELECT id, email, name FROM account");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0][2].bytes(), "three");
  absl::StatusOr<std::vector<std::vector<Value>>> lost = db_->QueryRows(
      "SELECT key, origin, change_id, op, winner_origin, winner_change_id, change "
      "FROM \"__marmot__conflicts\"");
  ASSERT_TRUE(lost.ok()) << lost.status();
  ASSERT_EQ(lost->size(), 1u);
  const std::vector<Value>& k = (*lost)[0];
  EXPECT_EQ(k[0].bytes(), *row_2);
  EXPECT_EQ(k[1].integer(), 1);
  EXPECT_EQ(k[2].integer(), 11);
  EXPECT_EQ(k[3].bytes(), "I");
  EXPECT_EQ(k[4].integer(), 3);
  EXPECT_EQ(k[5].integer(), 21);
  TableChanges kept_change;
  ASSERT_TRUE(kept_change.ParseFromString(k[6].bytes()));
  ASSERT_EQ(kept_change.changes_size(), 1);
  std::string columns, values;
  for (const std::string& column : kept_change.columns()) absl::StrAppend(&columns, column, " ");
  for (const change::v1::Value& v : kept_change.changes(0).row()) {
    absl::StrAppend(&values, FromWire(v).DebugString(), " ");
  }
  EXPECT_EQ(columns, "id email name ");
  EXPECT_EQ(values, "2 'b@x' 'two' ");
  // Row 2's version is now the write that replaced it (one shard).
  absl::StatusOr<std::optional<RowVersion>> version = versions_->Get("account", *row_2);
  ASSERT_TRUE(version.ok() && version->has_value());
  EXPECT_EQ((*version)->origin, 3u);
  EXPECT_EQ((*version)->change_id, 21);
}

INSTANTIATE_TEST_SUITE_P(UniqueValue, DisplacedRowsTest,
                         ::testing::Values("column", "VIRTUAL", "STORED"));

}  // namespace
}  // namespace marmot::replicator
