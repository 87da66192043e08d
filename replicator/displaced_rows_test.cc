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
#include "replicator/table_renames.h"
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

  static std::string Row2() { return "2"; }

  ::testing::AssertionResult SetVersionOfRow2(RowVersion version) {
    version.columns = 3;
    absl::Status s = versions_->Set("account", Row2(), version);
    if (s.ok()) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << s;
  }

  // Node 1's change 11 of row 2 (an update to `name`, or a delete), as a held version keeps it.
  static std::string Held(change::v1::Op op, const std::string& name) {
    TableChanges t;
    t.set_table("account");
    for (const char* column : {"id", "email", "name"}) t.add_columns(column);
    t.add_key_columns("id");
    Change* c = t.add_changes();
    c->set_change_id(11);
    c->set_op(op);
    if (op == change::v1::OP_DELETE) {
      *c->add_old_key() = ToWire(Value::Integer(2));
    } else {
      for (const Value& v : {Value::Integer(2), Value::Text("b@x"), Value::Text(name)}) {
        *c->add_row() = ToWire(v);
      }
    }
    return t.SerializeAsString();
  }

  // Node 3's change 21 (entry 9) gives row 1 row 2's email, 'B@X' for the generated
  // lower(email), 'b@x' for the column.
  absl::StatusOr<int64_t> WriteRow1TakingRow2sEmail() {
    TableChanges t;
    t.set_table("account");
    for (const char* column : {"id", "email", "name"}) t.add_columns(column);
    t.add_key_columns("id");
    Change* c = t.add_changes();
    c->set_change_id(21);
    c->set_op(change::v1::OP_UPDATE);
    const std::string email = GetParam() == "column" ? "b@x" : "B@X";
    for (const Value& v : {Value::Integer(1), Value::Text(email), Value::Text("three")}) {
      *c->add_row() = ToWire(v);
    }
    absl::StatusOr<TableWriter> w = PlanWriter(*db_, "account", {"id", "email", "name"}, {"id"});
    if (!w.ok()) return w.status();
    EXPECT_EQ(w->unprobed_unique, GetParam() != "column");
    const DisplacingWrite at{.db = *db_,
                             .versions = *versions_,
                             .conflicts = *conflicts_,
                             .router = router_,
                             .shard = 0,
                             .raft_index = 9,
                             .origin = 3};
    return WriteKeepingDisplaced(at, *w, t, *c, [&] { return ApplyChange(*db_, *w, t, *c); });
  }

  std::string Rows(const std::string& sql) {
    absl::StatusOr<std::vector<std::vector<Value>>> rows = db_->QueryRows(sql);
    if (!rows.ok()) return std::string(rows.status().message());
    std::string out;
    for (const auto& row : *rows) {
      for (const Value& v : row) absl::StrAppend(&out, v.DebugString(), " ");
      out += "\n";
    }
    return out;
  }

  // Each kept conflict: key origin change_id op winner_origin winner_change_id | its columns |
  // its values.
  std::string Kept() {
    absl::StatusOr<std::vector<std::vector<Value>>> rows = db_->QueryRows(
        "SELECT key, origin, change_id, op, winner_origin, winner_change_id, change "
        "FROM \"__marmot__conflicts\" ORDER BY id");
    if (!rows.ok()) return std::string(rows.status().message());
    std::string out;
    for (const auto& row : *rows) {
      absl::StrAppend(&out, row[0].bytes(), " ");
      for (int i = 1; i < 6; ++i) absl::StrAppend(&out, row[i].DebugString(), " ");
      TableChanges kept;
      if (!kept.ParseFromString(row[6].bytes()) || kept.changes_size() != 1) return "unreadable";
      out += "|";
      for (const std::string& column : kept.columns()) absl::StrAppend(&out, " ", column);
      out += " |";
      for (const change::v1::Value& v : kept.changes(0).row()) {
        absl::StrAppend(&out, " ", FromWire(v).DebugString());
      }
      out += " \n";
    }
    return out;
  }

  std::unique_ptr<sqlite::Database> db_;
  std::unique_ptr<RowVersions> versions_;
  std::unique_ptr<ConflictStore> conflicts_;
  ShardRouter router_{1};
};

TEST_P(DisplacedRowsTest, ARowReplacedThroughAUniqueValueIsKeptWithItsWritableColumns) {
  ASSERT_TRUE(SetVersionOfRow2({.shard = 0, .raft_index = 5, .origin = 1, .change_id = 11}));
  absl::StatusOr<int64_t> kept = WriteRow1TakingRow2sEmail();
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(*kept, 1);
  EXPECT_EQ(Rows("SELECT id, name FROM account"), "1 'three' \n");
  EXPECT_EQ(Kept(), "2 1 11 'I' 3 21 | id email name | 2 'b@x' 'two' \n");
  // Row 2's version is now the write that replaced it (one shard).
  absl::StatusOr<std::optional<RowVersion>> version = versions_->Get("account", Row2());
  ASSERT_TRUE(version.ok() && version->has_value());
  EXPECT_EQ((*version)->origin, 3u);
  EXPECT_EQ((*version)->change_id, 21);
  EXPECT_TRUE((*version)->held.empty());
}

// Row 2 has no version (written behind marmot's back): it is kept under an id of its own, the
// same on every node, where the table is `account` as where it is `Account` (made at once on
// two nodes, one table to SQLite): by the table's route.
TEST_P(DisplacedRowsTest, ARowWithoutAVersionIsNamedAlikeHoweverANodeSpellsItsTable) {
  ASSERT_TRUE(RecordTableCreated(*db_, "Account", /*made=*/false).ok());
  auto renames = std::make_shared<TableRenames>();
  ASSERT_TRUE(renames->Load(*db_).ok());
  router_.set_renames(renames);
  absl::StatusOr<int64_t> kept = WriteRow1TakingRow2sEmail();
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(*kept, 1);
  const int64_t id = -static_cast<int64_t>((ShardRouter(1).Hash("Account", {Value::Integer(2)}) ^
                                            (uint64_t{9} * 0x9E3779B97F4A7C15ULL)) >>
                                           2) -
                     1;
  EXPECT_EQ(Rows("SELECT change_id FROM \"__marmot__conflicts\""), absl::StrCat(id, " \n"));
}

// Row 2's version here is held: node 1's change won in the shard over this node's changes of
// it not applied yet, and this node's row keeps what its application wrote ('local') until
// they lose (row_versions.h). Every other node holds node 1's change, and keeps that.
TEST_P(DisplacedRowsTest, ARowWhoseVersionIsHeldIsKeptAsEveryOtherNodeHoldsIt) {
  ASSERT_TRUE(db_->Exec("UPDATE account SET name = 'local' WHERE id = 2").ok());
  ASSERT_TRUE(SetVersionOfRow2({.shard = 0,
                                .raft_index = 5,
                                .origin = 1,
                                .change_id = 11,
                                .held = Held(change::v1::OP_UPDATE, "held")}));
  absl::StatusOr<int64_t> kept = WriteRow1TakingRow2sEmail();
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(*kept, 1);
  EXPECT_EQ(Kept(), "2 1 11 'I' 3 21 | id email name | 2 'b@x' 'held' \n");
}

// ...and when node 1's change deleted row 2, no other node held it for the write to replace:
// nothing is kept, and the version stays held (it is written when this node's changes lose).
TEST_P(DisplacedRowsTest, ARowWhoseHeldVersionDeletedItIsNotKept) {
  ASSERT_TRUE(SetVersionOfRow2({.shard = 0,
                                .raft_index = 5,
                                .origin = 1,
                                .change_id = 11,
                                .held = Held(change::v1::OP_DELETE, "")}));
  absl::StatusOr<int64_t> kept = WriteRow1TakingRow2sEmail();
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(*kept, 0);
  EXPECT_EQ(Kept(), "");
  absl::StatusOr<std::optional<RowVersion>> version = versions_->Get("account", Row2());
  ASSERT_TRUE(version.ok() && version->has_value());
  EXPECT_EQ((*version)->change_id, 11);
  EXPECT_FALSE((*version)->held.empty());
}

INSTANTIATE_TEST_SUITE_P(UniqueValue, DisplacedRowsTest,
                         ::testing::Values("column", "VIRTUAL", "STORED"));

}  // namespace
}  // namespace marmot::replicator
