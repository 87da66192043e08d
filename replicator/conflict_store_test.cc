// ConflictStore keeps a losing change whole, once, and resolving deletes exactly the conflicts an
// entry of their own shard names: a name of another shard, of none, or out of range deletes
// nothing.
#include "replicator/conflict_store.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using change::v1::ConflictId;

class ConflictStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<sqlite::Database> opened =
        sqlite::Database::Open(sqlite::testing::NewDatabase("conflict-store", kCreateConflicts));
    ASSERT_TRUE(opened.ok()) << opened.status();
    db_ = std::make_unique<sqlite::Database>(*std::move(opened));
    store_ = std::make_unique<ConflictStore>(*db_);
  }

  // Keeps change `change_id` of table `table` from node `origin` as a conflict of `shard`.
  void Keep(int shard, uint64_t origin, const std::string& table, int64_t change_id) {
    change::v1::TableChanges t;
    t.set_table(table);
    t.add_columns("id");
    t.add_key_columns("id");
    change::v1::Change c;
    c.set_change_id(change_id);
    c.set_op(change::v1::OP_UPDATE);
    c.add_row()->set_integer(change_id);
    ASSERT_TRUE(store_
                    ->Insert({.shard = shard,
                              .raft_index = 10,
                              .origin = origin,
                              .key = std::to_string(change_id),
                              .winner_origin = 1,
                              .winner_change_id = 1},
                             t, c)
                    .ok());
  }

  std::string Kept() {
    absl::StatusOr<std::vector<std::vector<sqlite::Value>>> rows = db_->QueryRows(
        "SELECT shard, origin, tbl, change_id FROM \"__marmot__conflicts\" ORDER BY id");
    EXPECT_TRUE(rows.ok()) << rows.status();
    std::string out;
    for (const auto& r : rows.ok() ? *rows : std::vector<std::vector<sqlite::Value>>{}) {
      absl::StrAppend(&out, r[0].integer(), "|", r[1].integer(), "|", r[2].bytes(), "|",
                      r[3].integer(), "\n");
    }
    return out;
  }

  static ConflictId Name(uint64_t origin, const std::string& table, int64_t change_id) {
    ConflictId id;
    id.set_origin_node(origin);
    id.set_table(table);
    id.set_change_id(change_id);
    return id;
  }

  std::unique_ptr<sqlite::Database> db_;
  std::unique_ptr<ConflictStore> store_;
};

TEST_F(ConflictStoreTest, ResolvingDeletesOnlyWhatAnEntryOfItsShardNames) {
  Keep(0, 3, "doc", 7);
  Keep(0, 3, "doc", 8);
  Keep(1, 3, "doc", 9);
  Keep(0, 2, "other", 7);
  Keep(0, 3, "doc", 7);  // Kept once.
  ASSERT_EQ(*store_->Count(), 4);

  google::protobuf::RepeatedPtrField<ConflictId> names;
  *names.Add() = Name(3, "doc", 7);                   // Resolved.
  *names.Add() = Name(3, "doc", 9);                   // Of shard 1: not by an entry of shard 0.
  *names.Add() = Name(2, "doc", 7);                   // No such conflict.
  *names.Add() = Name(UINT64_MAX, "doc", 8);          // Out of SQLite's range: none.
  *names.Add() = Name(3, std::string("d\0c", 3), 8);  // Another name.
  absl::StatusOr<int64_t> deleted = store_->Resolve(0, names);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 1);
  EXPECT_EQ(Kept(), "0|3|doc|8\n1|3|doc|9\n0|2|other|7\n");

  // Resolving again deletes nothing more; the entry of shard 1 deletes its own.
  EXPECT_EQ(*store_->Resolve(0, names), 0);
  EXPECT_EQ(*store_->Resolve(1, names), 1);
  EXPECT_EQ(Kept(), "0|3|doc|8\n0|2|other|7\n");
}

TEST_F(ConflictStoreTest, ResolvingNamesTheTableInAnyCase) {
  // One table made at once as `Item` here and `item` on the node that resolves (one name to
  // SQLite).
  Keep(0, 3, "Item", 7);
  google::protobuf::RepeatedPtrField<ConflictId> names;
  *names.Add() = Name(3, "item", 7);
  EXPECT_EQ(*store_->Resolve(0, names), 1);
  EXPECT_EQ(Kept(), "");
}

}  // namespace
}  // namespace marmot::replicator
