// DeferredApplyState keeps the larger value, writes without lowering what is stored, and
// forgets a shard whose state a snapshot replaced.
#include "replicator/deferred_apply_state.h"

#include <gtest/gtest.h>

#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

TEST(DeferredApplyStateTest, WritesNeverLowerAStoredValue) {
  const std::string path = sqlite::testing::NewDatabase(
      "deferred-state",
      "CREATE TABLE \"__marmot__shard_state\" (shard INTEGER PRIMARY KEY, applied_index INTEGER "
      "NOT NULL);"
      "CREATE TABLE \"__marmot__applied\" (shard INTEGER NOT NULL, origin INTEGER NOT NULL, tbl "
      "TEXT NOT NULL,"
      "  change_id INTEGER NOT NULL, PRIMARY KEY (shard, origin, tbl)) WITHOUT ROWID;"
      // A later transaction already stored newer values for shard 1.
      "INSERT INTO \"__marmot__shard_state\" VALUES (1, 50);"
      "INSERT INTO \"__marmot__applied\" VALUES (1, 7, 't', 900);");
  auto db = sqlite::Database::Open(path);
  ASSERT_TRUE(db.ok());

  DeferredApplyState state;
  EXPECT_TRUE(state.empty());
  state.SetAppliedIndex(0, 10);
  state.SetAppliedIndex(0, 8);  // An older value never replaces a newer one.
  state.SetAppliedIndex(1, 40);
  state.SetLastChange(0, 7, "t", 5);
  state.SetLastChange(1, 7, "t", 800);
  EXPECT_EQ(state.AppliedIndex(0, 3), 10u);
  EXPECT_EQ(state.AppliedIndex(0, 12), 12u);
  EXPECT_EQ(state.AppliedIndex(2, 4), 4u);
  EXPECT_EQ(state.LastChange(0, 7, "t", 0), 5);
  EXPECT_EQ(state.LastChange(0, 7, "u", 2), 2);

  ASSERT_TRUE(db->Exec("BEGIN").ok());
  ASSERT_TRUE(state.Write(*db).ok());
  ASSERT_TRUE(db->Exec("COMMIT").ok());
  state.Committed();
  EXPECT_TRUE(state.empty());
  EXPECT_EQ(db->QueryValue("SELECT group_concat(shard || ':' || applied_index) FROM "
                           "(SELECT * FROM \"__marmot__shard_state\" ORDER BY shard)")
                ->bytes(),
            "0:10,1:50");
  EXPECT_EQ(db->QueryValue("SELECT group_concat(shard || ':' || change_id) FROM "
                           "(SELECT * FROM \"__marmot__applied\" ORDER BY shard)")
                ->bytes(),
            "0:5,1:900");

  // Forget drops one shard's state only.
  state.SetAppliedIndex(0, 11);
  state.SetAppliedIndex(1, 60);
  state.SetLastChange(1, 7, "t", 950);
  state.Forget(1);
  EXPECT_EQ(state.AppliedIndex(1, 50), 50u);
  EXPECT_EQ(state.LastChange(1, 7, "t", 900), 900);
  EXPECT_EQ(state.AppliedIndex(0, 10), 11u);
}

}  // namespace
}  // namespace marmot::replicator
