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
  // Changes of another shape get a plan of their own (here: fewer columns, an UPDATE).
  absl::StatusOr<const TablePlan*> fewer = plans.Plan(Shape("t", {"id"}));
  ASSERT_TRUE(fewer.ok() && (*fewer)->status.ok());
  EXPECT_FALSE((*fewer)->writer.update.empty());
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

}  // namespace
}  // namespace marmot::replicator
