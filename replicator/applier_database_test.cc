// The applier's connection: marmot's state tables made or brought up to date.
#include "replicator/applier_database.h"

#include <gtest/gtest.h>

#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

TEST(ApplierDatabaseTest, RowVersionsOfAnEarlierLayoutAreRewrittenWhenOpened) {
  // A file a node of the earlier release left: every key of a version as text.
  const std::string path = sqlite::testing::NewDatabase(
      "applier-db",
      "CREATE TABLE kv (k INTEGER PRIMARY KEY, v);"
      "CREATE TABLE \"__marmot__versions\" (tbl TEXT NOT NULL, key TEXT NOT NULL, shard INTEGER "
      "NOT NULL, raft_index INTEGER NOT NULL, origin INTEGER NOT NULL, change_id INTEGER NOT "
      "NULL, held BLOB, columns INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (tbl, key)) WITHOUT ROWID;"
      "INSERT INTO \"__marmot__versions\" VALUES ('kv', '2', 0, 5, 3, 9, NULL, 2),"
      " ('kv', '''a''', 0, 6, 3, 10, NULL, 2);");
  absl::StatusOr<sqlite::Database> db = OpenApplierDatabase(path);
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_EQ(*db->QueryValue("SELECT type FROM pragma_table_info('__marmot__versions') "
                            "WHERE name = 'key'"),
            sqlite::Value::Text(""));
  EXPECT_EQ(*db->QueryValue("SELECT group_concat(typeof(key) || ':' || key, ' ') FROM "
                            "\"__marmot__versions\""),
            sqlite::Value::Text("integer:2 text:'a'"));
  // A second open changes nothing.
  db = OpenApplierDatabase(path);
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_EQ(*db->QueryValue("SELECT count(*) FROM \"__marmot__versions\""),
            sqlite::Value::Integer(2));
}

}  // namespace
}  // namespace marmot::replicator
