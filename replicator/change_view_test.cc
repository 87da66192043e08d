// ChangeView answers the decider's questions about one change from what this node keeps: its
// local change log (through LocalChangeIndex), its dedupe state, its dead letters and the row
// itself, compared exactly.
#include "replicator/change_view.h"

#include <glog/logging.h>
#include <gtest/gtest.h>

#include <memory>

#include "replicator/shard_router.h"
#include "replicator/table_writer.h"
#include "replicator/value_codec.h"
#include "sqlite/change_log.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using change::v1::Change;
using change::v1::TableChanges;
using sqlite::Value;

constexpr uint64_t kSelf = 1;

constexpr char kSchema[] =
    "CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT UNIQUE, img);"
    "CREATE TABLE note (id INTEGER PRIMARY KEY, body);"
    "CREATE TABLE \"__marmot__applied\" (shard INTEGER NOT NULL, origin INTEGER NOT NULL,"
    "  tbl TEXT NOT NULL, change_id INTEGER NOT NULL, PRIMARY KEY (shard, origin, tbl))"
    "  WITHOUT ROWID;"
    "CREATE TABLE \"__marmot__shard_state\" (shard INTEGER PRIMARY KEY, applied_index INTEGER);"
    "CREATE TABLE \"__marmot__dead_letters\" (id INTEGER PRIMARY KEY, shard INTEGER,"
    "  raft_index INTEGER, origin INTEGER, tbl TEXT, change_id INTEGER, error TEXT, change BLOB,"
    "  at_ms INTEGER);";

TableChanges Header(const std::string& table, std::vector<std::string> columns) {
  TableChanges t;
  t.set_table(table);
  for (const std::string& c : columns) t.add_columns(c);
  t.add_key_columns("id");
  return t;
}

// An insert with change id `id` of `row`, alone in the changes of `header`.
TableChanges Insert(TableChanges header, int64_t id, const std::vector<Value>& row) {
  Change* c = header.add_changes();
  c->set_change_id(id);
  c->set_op(change::v1::OP_INSERT);
  for (const Value& v : row) *c->add_row() = ToWire(v);
  return header;
}

class ChangeViewTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = sqlite::testing::NewDatabase("change-view", kSchema);
    absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(path_);
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::make_unique<sqlite::Database>(*std::move(db));
    ASSERT_TRUE(sqlite::InstallCapture(*db_).ok());
    dead_letters_ = std::make_unique<DeadLetterStore>(*db_);
    ASSERT_TRUE(dead_letters_->Load(/*fresh=*/true).ok());
    applied_ = std::make_unique<AppliedState>(*db_);
    plans_ = std::make_unique<TablePlans>(*db_);
  }

  // The application writes (captured in the local change log).
  void Write(const std::string& sql) {
    ASSERT_TRUE(sqlite::testing::RunSqliteCli(path_, sql).ok()) << sql;
  }

  // Asks `question` of a view of the only change of `t`, this node being `local_node`.
  template <typename Question>
  auto Ask(const TableChanges& t, Question question, uint64_t local_node = kSelf) {
    const ApplierState state{*db_, *dead_letters_, *applied_, local_node, shipped_};
    absl::StatusOr<const TablePlan*> plan = plans_->Plan(t);
    CHECK(plan.ok()) << plan.status();
    ChangeView::Table table(state, /*shard=*/0, t, *plan);
    table.CatchUpLocalRows(index_);
    ChangeView view(table, t.changes(0));
    auto answer = question(view);
    CHECK(answer.ok()) << answer.status();
    return *answer;
  }
  static absl::StatusOr<bool> Newer(ChangeView& v) { return v.NewerLocalChangeOfRow(); }
  // Whether a local change not yet applied writes over the change at all.
  static absl::StatusOr<bool> Pending(ChangeView& v) {
    absl::StatusOr<LocalOverwrite> o = v.LocalChangeNotYetApplied();
    if (!o.ok()) return o.status();
    return *o != LocalOverwrite::kNothing;
  }
  // What it writes over, and the columns left to the change (kSome).
  static absl::StatusOr<std::pair<LocalOverwrite, std::vector<std::string>>> Overwrites(
      ChangeView& v) {
    absl::StatusOr<LocalOverwrite> o = v.LocalChangeNotYetApplied();
    if (!o.ok()) return o.status();
    return std::make_pair(*o, v.uncarried());
  }
  static absl::StatusOr<bool> Holds(ChangeView& v) { return v.RowAlreadyHolds(); }
  static absl::StatusOr<std::optional<int64_t>> Blocker(ChangeView& v) {
    return v.BlockingDeadLetter();
  }

  const TableChanges item_ = Header("item", {"id", "name", "img"});
  const TableChanges note_ = Header("note", {"id", "body"});
  std::string path_;
  std::unique_ptr<sqlite::Database> db_;
  std::unique_ptr<DeadLetterStore> dead_letters_;
  std::unique_ptr<AppliedState> applied_;
  std::unique_ptr<TablePlans> plans_;
  LocalChangeIndex index_;
  const ShippedColumns* shipped_ = nullptr;
};

TEST_F(ChangeViewTest, AnOwnChangeSeesANewerLocalChangeOfItsRowOnly) {
  // Given two local changes of row 1 (ids 1 and 2) and one of row 2 (id 3)
  Write(
      "INSERT INTO note VALUES (1, 'a'); UPDATE note SET body = 'b' WHERE id = 1;"
      "INSERT INTO note VALUES (2, 'c');");
  const TableChanges first = Insert(note_, 1, {Value::Integer(1), Value::Text("a")});
  EXPECT_TRUE(Ask(first, Newer));
  EXPECT_FALSE(Ask(Insert(note_, 2, {Value::Integer(1), Value::Text("b")}), Newer));
  EXPECT_FALSE(Ask(Insert(note_, 3, {Value::Integer(2), Value::Text("c")}), Newer));
  // Without a local node no change is own: nothing is newer.
  EXPECT_FALSE(Ask(first, Newer, /*local_node=*/0));
}

TEST_F(ChangeViewTest, AnotherNodesChangeSeesLocalChangesNotYetAppliedOfEveryRowItTouches) {
  // Given local change 1 of row 1 named 'same'
  Write("INSERT INTO item (id, name) VALUES (1, 'same')");
  const TableChanges same_row =
      Insert(item_, 7, {Value::Integer(1), Value::Text("other"), Value::Null()});
  // Another row, whose upsert would replace row 1 through the UNIQUE name
  const TableChanges same_name =
      Insert(item_, 8, {Value::Integer(9), Value::Text("same"), Value::Null()});
  const TableChanges unrelated =
      Insert(item_, 9, {Value::Integer(5), Value::Text("x"), Value::Null()});
  EXPECT_TRUE(Ask(same_row, Pending));
  EXPECT_TRUE(Ask(same_name, Pending));
  EXPECT_FALSE(Ask(unrelated, Pending));
  EXPECT_FALSE(Ask(same_row, Pending, /*local_node=*/0));
  // Once this node's change 1 of item is applied in the shard, nothing waits.
  ASSERT_TRUE(applied_->SetLastChange(0, kSelf, "item", 1).ok());
  EXPECT_FALSE(Ask(same_row, Pending));
  EXPECT_FALSE(Ask(same_name, Pending));
}

TEST_F(ChangeViewTest, ALocalChangeReadWithFewerColumnsLeavesTheOthersToAnotherNodesChange) {
  // Given local change 1 of item row 1, read by the shipper before the table had `img` (as
  // if altered since)
  Write("INSERT INTO item (id, name) VALUES (1, 'local')");
  ShippedColumns shipped;
  shipped_ = &shipped;
  const TableChanges update =
      Insert(item_, 7, {Value::Integer(1), Value::Text("other"), Value::Blob("i")});
  using Answer = std::pair<LocalOverwrite, std::vector<std::string>>;
  // Not read yet: it will carry every column, so it hides the whole change.
  EXPECT_EQ(Ask(update, Overwrites), Answer(LocalOverwrite::kAll, {}));
  shipped.FirstLook("item", 0);
  shipped.Read("item", 1, {"id", "name"});
  // Another node's change of the row then writes `img` only.
  EXPECT_EQ(Ask(update, Overwrites), Answer(LocalOverwrite::kSome, {"img"}));
  // A delete of the row is written whole: the local change puts its columns back later.
  TableChanges remove = item_;
  Change* d = remove.add_changes();
  d->set_change_id(8);
  d->set_op(change::v1::OP_DELETE);
  *d->add_old_key() = ToWire(Value::Integer(1));
  EXPECT_EQ(Ask(remove, Overwrites), Answer(LocalOverwrite::kNothing, {}));
}

TEST_F(ChangeViewTest, ALocalChangeReadWithEveryColumnHidesAnotherNodesChangeWhole) {
  Write("INSERT INTO item (id, name) VALUES (1, 'local')");
  ShippedColumns shipped;
  shipped_ = &shipped;
  shipped.FirstLook("item", 0);
  shipped.Read("item", 1, {"id", "name", "img"});
  using Answer = std::pair<LocalOverwrite, std::vector<std::string>>;
  EXPECT_EQ(Ask(Insert(item_, 7, {Value::Integer(1), Value::Text("o"), Value::Null()}), Overwrites),
            Answer(LocalOverwrite::kAll, {}));
  // Read by an earlier process (columns not known): another node's change writes every column,
  // and the local change writes its own back when it applies.
  ShippedColumns restarted;
  shipped_ = &restarted;
  restarted.FirstLook("item", 1);
  restarted.Read("item", 1, {"id", "name", "img"});
  EXPECT_EQ(Ask(Insert(item_, 7, {Value::Integer(1), Value::Text("o"), Value::Null()}), Overwrites),
            Answer(LocalOverwrite::kSome, {"name", "img"}));
}

TEST_F(ChangeViewTest, ARowHoldsAChangeOnlyWithTheSameStorageClasses) {
  // img has no type affinity: REAL 2.0 and INTEGER 2 stay apart. The log's first read cannot
  // vouch for the row: it is read.
  Write("INSERT INTO item (id, name, img) VALUES (1, 'n', 2.0)");
  EXPECT_TRUE(Ask(Insert(item_, 1, {Value::Integer(1), Value::Text("n"), Value::Real(2)}), Holds));
  EXPECT_FALSE(
      Ask(Insert(item_, 1, {Value::Integer(1), Value::Text("n"), Value::Integer(2)}), Holds));
  EXPECT_FALSE(Ask(Insert(item_, 1, {Value::Integer(2), Value::Text("n"), Value::Real(2)}), Holds))
      << "a missing row holds nothing";
}

TEST_F(ChangeViewTest, ARowTheIndexVouchesForIsNotReadUnlessAnotherUniqueIndexCouldHaveMovedIt) {
  // Given rows written after the log's first read: the index knows they hold their newest
  // change (ids 1 and 2).
  ASSERT_TRUE(index_.CatchUp(*db_, "note").ok());
  ASSERT_TRUE(index_.CatchUp(*db_, "item").ok());
  Write("INSERT INTO note VALUES (1, 'mine'); INSERT INTO item (id, name) VALUES (1, 'mine')");
  // When the rows change behind the index's back (not captured)
  ASSERT_TRUE(db_->SetTriggersEnabled(false).ok());
  ASSERT_TRUE(db_->Exec("UPDATE note SET body = 'moved'; UPDATE item SET name = 'moved'").ok());
  // Then note's row is taken as holding its change without a read, while item's (another
  // UNIQUE index: an upsert of another key could have deleted it unseen) is read.
  EXPECT_TRUE(Ask(Insert(note_, 1, {Value::Integer(1), Value::Text("mine")}), Holds));
  EXPECT_FALSE(
      Ask(Insert(item_, 2, {Value::Integer(1), Value::Text("mine"), Value::Null()}), Holds));
}

TEST_F(ChangeViewTest, ADeadLetterHoldsBackLaterChangesOfItsRow) {
  const TableChanges row1 = Insert(note_, 5, {Value::Integer(1), Value::Text("a")});
  EXPECT_EQ(Ask(row1, Blocker), std::nullopt);
  ASSERT_TRUE(db_->Exec("BEGIN IMMEDIATE").ok());
  ASSERT_TRUE(
      dead_letters_
          ->InsertChange(0, 3, 2, row1, row1.changes(0), absl::FailedPreconditionError("boom"))
          .ok());
  ASSERT_TRUE(db_->Exec("COMMIT").ok());
  dead_letters_->Committed();
  const int64_t id = sqlite3_last_insert_rowid(db_->raw());
  EXPECT_EQ(Ask(Insert(note_, 6, {Value::Integer(1), Value::Text("b")}), Blocker), id);
  EXPECT_EQ(Ask(Insert(note_, 6, {Value::Integer(2), Value::Text("b")}), Blocker), std::nullopt);

  // Retried, the dead letter itself is held back only by those below it.
  const DeadLetterIndex::Entry entry = *dead_letters_->index().Find(id);
  const ApplierState state{*db_, *dead_letters_, *applied_, kSelf};
  ChangeView::Table table(state, 0, row1, nullptr);
  ChangeView below(table, row1.changes(0));
  below.HeldBackAs(entry, id);
  EXPECT_EQ(*below.BlockingDeadLetter(), std::nullopt);
  ChangeView above(table, row1.changes(0));
  above.HeldBackAs(entry, id + 1);
  EXPECT_EQ(*above.BlockingDeadLetter(), id);
}

}  // namespace
}  // namespace marmot::replicator
