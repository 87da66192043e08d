// TablePlans keeps each table's plan for the shape of its changes until the schema moves.
#include "replicator/table_plans.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>

#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using ::testing::HasSubstr;

change::v1::TableChanges Shape(const std::string& table, std::vector<std::string> columns) {
  change::v1::TableChanges t;
  t.set_table(table);
  for (const std::string& c : columns) t.add_columns(c);
  t.add_key_columns("id");
  return t;
}

TEST(TablePlansTest, APlanIsKeptForItsShapeUntilTheSchemaMoves) {
  absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(
      sqlite::testing::NewDatabase("table-plans", "CREATE TABLE t (id INTEGER PRIMARY KEY, v)"));
  ASSERT_TRUE(db.ok()) << db.status();
  TablePlans plans(*db);
  absl::StatusOr<bool> changed = plans.CheckSchema();
  ASSERT_TRUE(changed.ok() && *changed) << "the first check finds a schema";
  const change::v1::TableChanges full = Shape("t", {"id", "v"});
  absl::StatusOr<const TablePlan*> first = plans.Plan(full);
  ASSERT_TRUE(first.ok() && (*first)->status.ok());
  EXPECT_EQ(*plans.Plan(full), *first);
  // Changes of another shape get a plan of their own (here: fewer columns, an UPDATE), and the
  // first stays: a plan in use is not pulled away by one asked for meanwhile (review: a held
  // change written in the middle of an entry's writes freed the plan the entry was writing with).
  absl::StatusOr<const TablePlan*> fewer = plans.Plan(Shape("t", {"id"}));
  ASSERT_TRUE(fewer.ok() && (*fewer)->status.ok());
  EXPECT_FALSE((*fewer)->writer.update.empty());
  EXPECT_EQ(*plans.Plan(full), *first);
  EXPECT_EQ((*first)->columns, std::vector<std::string>({"id", "v"}));
  EXPECT_EQ(*plans.Plan(Shape("t", {"id"})), *fewer);
  // A table missing here is planned as a refusal, not an error.
  absl::StatusOr<const TablePlan*> ghost = plans.Plan(Shape("ghost", {"id"}));
  ASSERT_TRUE(ghost.ok()) << ghost.status();
  EXPECT_THAT((*ghost)->status.message(), HasSubstr("does not exist on this node"));
  EXPECT_EQ(*plans.Plan(Shape("ghost", {"id"})), *ghost);

  changed = plans.CheckSchema();
  ASSERT_TRUE(changed.ok());
  EXPECT_FALSE(*changed);
  // Once the table exists, the next check drops the plans: the refusal is planned again.
  ASSERT_TRUE(db->Exec("CREATE TABLE ghost (id INTEGER PRIMARY KEY)").ok());
  changed = plans.CheckSchema();
  ASSERT_TRUE(changed.ok());
  EXPECT_TRUE(*changed);
  ghost = plans.Plan(Shape("ghost", {"id"}));
  ASSERT_TRUE(ghost.ok());
  EXPECT_TRUE((*ghost)->status.ok()) << (*ghost)->status;
}

TEST(TablePlansTest, ChangesReadBeforeARenameOrDropApplyAsTheTableIsHere) {
  absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(sqlite::testing::NewDatabase(
      "table-plans-history", "CREATE TABLE t (id INTEGER PRIMARY KEY, a, b, c)"));
  ASSERT_TRUE(db.ok()) << db.status();
  TablePlans plans(*db);
  ASSERT_TRUE(plans.CheckSchema().ok());
  change::v1::TableChanges t = Shape("t", {"id", "a", "b", "c"});
  change::v1::Change& insert = *t.add_changes();
  insert.set_op(change::v1::OP_INSERT);
  for (int v : {1, 2, 3, 4}) insert.add_row()->set_integer(v);
  t.add_changes()->set_op(change::v1::OP_DELETE);
  // Nothing renamed or dropped: the changes themselves.
  change::v1::TableChanges storage;
  EXPECT_EQ(*plans.AsHere(t, storage), &t);
  // What schema changes applied here: a renamed to x, then x to y; b dropped; and c renamed to
  // a name another column had.
  ASSERT_TRUE(db->Exec("ALTER TABLE t RENAME COLUMN a TO y; ALTER TABLE t DROP COLUMN b;"
                       "ALTER TABLE t RENAME COLUMN c TO \"Z\";"
                       "CREATE TABLE \"__marmot__column_history\" (tbl, old, new);"
                       "INSERT INTO \"__marmot__column_history\" VALUES"
                       " ('t', 'a', 'x'), ('t', 'x', 'Y'), ('t', 'b', NULL), ('t', 'c', 'Z'),"
                       " ('other', 'id', 'nope');")
                  .ok())
      << db->Exec("SELECT 1");
  ASSERT_TRUE(plans.CheckSchema().ok());
  absl::StatusOr<const change::v1::TableChanges*> here = plans.AsHere(t, storage);
  ASSERT_TRUE(here.ok()) << here.status();
  ASSERT_EQ(*here, &storage);
  EXPECT_THAT(storage.columns(), ::testing::ElementsAre("id", "y", "Z"));  // As named here.
  EXPECT_THAT(storage.key_columns(), ::testing::ElementsAre("id"));
  ASSERT_EQ(storage.changes_size(), 2);
  ASSERT_EQ(storage.changes(0).row_size(), 3);
  EXPECT_EQ(storage.changes(0).row(1).integer(), 2);
  EXPECT_EQ(storage.changes(0).row(2).integer(), 4);
  EXPECT_EQ(storage.changes(1).row_size(), 0);
  absl::StatusOr<const TablePlan*> plan = plans.Plan(**here);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE((*plan)->status.ok()) << (*plan)->status;
  // Changes read after the schema changes are as the table is: unchanged.
  const change::v1::TableChanges now = Shape("t", {"id", "y", "Z"});
  EXPECT_EQ(*plans.AsHere(now, storage), &now);
}

TEST(TablePlansTest, AColumnNamedInAnotherCaseIsTheColumnAsNamedHere) {
  // Regression (hunt): RENAME COLUMN v TO V does not replicate (the name reads the same), and
  // every change of the table from the node that made it went to dead letters elsewhere.
  absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(sqlite::testing::NewDatabase(
      "table-plans-case", "CREATE TABLE t (id INTEGER PRIMARY KEY, v)"));
  ASSERT_TRUE(db.ok()) << db.status();
  TablePlans plans(*db);
  ASSERT_TRUE(plans.CheckSchema().ok());
  change::v1::TableChanges t = Shape("t", {"ID", "V"});
  t.clear_key_columns();
  t.add_key_columns("ID");
  change::v1::TableChanges storage;
  const change::v1::TableChanges* as_here = &t;
  absl::StatusOr<const TablePlan*> plan = plans.PlanAsHere(as_here, storage);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE((*plan)->status.ok()) << (*plan)->status;
  EXPECT_THAT(as_here->columns(), ::testing::ElementsAre("id", "v"));
  EXPECT_THAT(as_here->key_columns(), ::testing::ElementsAre("id"));
}

TEST(TablePlansTest, ATableNamedInAnotherCaseIsTheTableAsNamedHere) {
  // Regression (hunt): a table made at once as `Item` on one node and `item` here is one
  // table, and every change of it from the other node went to dead letters here ("table
  // \"Item\" does not exist on this node").
  absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(sqlite::testing::NewDatabase(
      "table-plans-table-case", "CREATE TABLE item (id INTEGER PRIMARY KEY, v)"));
  ASSERT_TRUE(db.ok()) << db.status();
  TablePlans plans(*db);
  ASSERT_TRUE(plans.CheckSchema().ok());
  EXPECT_EQ(*plans.TableNameHere("Item"), "item");
  EXPECT_EQ(*plans.TableNameHere("item"), "item");
  EXPECT_EQ(*plans.TableNameHere("ghost"), "ghost");
  change::v1::TableChanges t = Shape("Item", {"id", "v"});
  change::v1::TableChanges storage;
  const change::v1::TableChanges* as_here = &t;
  absl::StatusOr<const TablePlan*> plan = plans.PlanAsHere(as_here, storage);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE((*plan)->status.ok()) << (*plan)->status;
  EXPECT_EQ(as_here->table(), "item");
  // Read again once the schema moved: the table made again as `ITEM`.
  ASSERT_TRUE(db->Exec("DROP TABLE item; CREATE TABLE ITEM (id INTEGER PRIMARY KEY, v)").ok());
  EXPECT_EQ(*plans.TableNameHere("Item"), "item") << "kept until the schema is checked";
  ASSERT_TRUE(plans.CheckSchema().ok());
  EXPECT_EQ(*plans.TableNameHere("Item"), "ITEM");
}

TEST(TablePlansTest, ChangesTheHistoryWouldPutTwoColumnsInOnePlaceWait) {
  // Regression (hunt): a was renamed to b here; on the origin a column named a was added since,
  // and a change carrying both arrived before that ADD. It applied as (id, b, b): the new a's
  // value lost here (or written into b, by an UPDATE).
  absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(sqlite::testing::NewDatabase(
      "table-plans-reused",
      "CREATE TABLE t (id INTEGER PRIMARY KEY, b, c);"
      "CREATE TABLE \"__marmot__column_history\" (tbl, old, new);"
      "INSERT INTO \"__marmot__column_history\" VALUES ('t', 'a', 'b');"));
  ASSERT_TRUE(db.ok()) << db.status();
  TablePlans plans(*db);
  ASSERT_TRUE(plans.CheckSchema().ok());
  const change::v1::TableChanges t = Shape("t", {"id", "b", "c", "a"});
  change::v1::TableChanges storage;
  const change::v1::TableChanges* as_here = &t;
  absl::StatusOr<const TablePlan*> plan = plans.PlanAsHere(as_here, storage);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(as_here, &t);
  EXPECT_THAT((*plan)->status.message(), HasSubstr("differs on this node"));
  // Read before the rename (no b then), the change still takes its place here.
  const change::v1::TableChanges before = Shape("t", {"id", "a", "c"});
  EXPECT_THAT((*plans.AsHere(before, storage))->columns(), ::testing::ElementsAre("id", "b", "c"));
}

}  // namespace
}  // namespace marmot::replicator
