// DeadLetterStore keeps its index equal to the committed table: what it inserts holds rows back
// until deleted, a rolled-back insert is forgotten, a dead letter deleted by hand stops holding
// anything back, the limit refuses one more, and the kinds survive the trip through a snapshot.
#include "replicator/dead_letter_store.h"

#include <gtest/gtest.h>

#include <chrono>
#include <limits>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "replicator/shard_router.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using change::v1::ShardSnapshot;
using sqlite::Value;

constexpr char kTable[] =
    "CREATE TABLE \"__marmot__dead_letters\" ("
    "  id INTEGER PRIMARY KEY, shard INTEGER, raft_index INTEGER, origin INTEGER, tbl TEXT,"
    "  change_id INTEGER, error TEXT, change BLOB, at_ms INTEGER);";

// The columns of a change dead letter of table t (shard, raft_index, origin, tbl, change_id,
// error, change).
std::vector<Value> ChangeRow(int shard, int64_t index) {
  return {Value::Integer(shard), Value::Integer(index), Value::Integer(7), Value::Text("t"),
          Value::Integer(1),     Value::Text("boom"),   Value::Blob("")};
}

DeadLetterIndex::Entry EntryOf(int shard, uint64_t index, const std::string& row) {
  return {.shard = shard, .raft_index = index, .table = "t", .rows = {row}};
}

class DeadLetterStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<sqlite::Database> opened =
        sqlite::Database::Open(sqlite::testing::NewDatabase("dead-letter-store", kTable));
    ASSERT_TRUE(opened.ok()) << opened.status();
    db_ = std::make_unique<sqlite::Database>(*std::move(opened));
    store_ = std::make_unique<DeadLetterStore>(*db_);
    ASSERT_TRUE(store_->Load(/*fresh=*/true).ok());
  }

  // Inserts a change dead letter of row `row` in its own transaction; returns its id.
  int64_t InsertCommitted(int shard, uint64_t index, const std::string& row) {
    EXPECT_TRUE(db_->Exec("BEGIN IMMEDIATE").ok());
    EXPECT_TRUE(store_->Sync().ok());
    EXPECT_TRUE(store_->Insert(ChangeRow(shard, index), EntryOf(shard, index, row)).ok());
    EXPECT_TRUE(db_->Exec("COMMIT").ok());
    store_->Committed();
    return sqlite3_last_insert_rowid(db_->raw());
  }

  std::optional<int64_t> BlockerOf(const std::string& row,
                                   int64_t before = std::numeric_limits<int64_t>::max()) {
    absl::StatusOr<std::optional<int64_t>> blocker =
        store_->Blocker(0, "t", {row}, /*whole_table=*/false, before);
    EXPECT_TRUE(blocker.ok()) << blocker.status();
    return blocker.ok() ? *blocker : std::nullopt;
  }

  std::unique_ptr<sqlite::Database> db_;
  std::unique_ptr<DeadLetterStore> store_;
};

TEST_F(DeadLetterStoreTest, ADeadLetterHoldsItsRowBackUntilDeleted) {
  const int64_t first = InsertCommitted(0, 10, "r1");
  const int64_t second = InsertCommitted(0, 11, "r1");
  EXPECT_EQ(BlockerOf("r1"), first);
  EXPECT_EQ(BlockerOf("r1", /*before=*/second), first);  // The second waits for the first.
  EXPECT_EQ(BlockerOf("r1", /*before=*/first), std::nullopt);
  EXPECT_EQ(BlockerOf("r2"), std::nullopt);

  ASSERT_TRUE(store_->Delete(first).ok());
  EXPECT_EQ(BlockerOf("r1"), second);
  EXPECT_EQ(store_->QueuedBehind(second).message(),
            absl::StrCat("queued behind dead letter ", second, " of the same row"));
}

TEST_F(DeadLetterStoreTest, ARolledBackInsertIsForgottenAtTheNextSync) {
  ASSERT_TRUE(db_->Exec("BEGIN IMMEDIATE").ok());
  ASSERT_TRUE(store_->Insert(ChangeRow(0, 10), EntryOf(0, 10, "r1")).ok());
  EXPECT_TRUE(BlockerOf("r1").has_value());  // Inside the transaction, it is there.
  ASSERT_TRUE(db_->Exec("ROLLBACK").ok());

  ASSERT_TRUE(store_->Sync().ok());
  EXPECT_TRUE(store_->index().empty());
  EXPECT_EQ(BlockerOf("r1"), std::nullopt);
}

TEST_F(DeadLetterStoreTest, OneDeletedByHandStopsHoldingItsRowBack) {
  const int64_t id = InsertCommitted(0, 10, "r1");
  ASSERT_TRUE(
      db_->Exec(absl::StrCat("DELETE FROM \"__marmot__dead_letters\" WHERE id = ", id)).ok());
  EXPECT_EQ(BlockerOf("r1"), std::nullopt);
  EXPECT_TRUE(store_->index().empty());
}

TEST_F(DeadLetterStoreTest, TheLimitRefusesOneMore) {
  store_->set_max(1);
  InsertCommitted(0, 10, "r1");
  ASSERT_TRUE(db_->Exec("BEGIN IMMEDIATE").ok());
  absl::Status refused = store_->Insert(ChangeRow(0, 11), EntryOf(0, 11, "r2"));
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  ASSERT_TRUE(db_->Exec("ROLLBACK").ok());
  absl::StatusOr<int64_t> count = store_->Count();
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 1);
}

// A batch whose changes all fail (a table missing on this node) dead-letters each change with
// its table's header alone; copying the whole batch for each one took seconds per thousand.
TEST_F(DeadLetterStoreTest, EachChangeOfABigBatchIsStoredAloneAndQuickly) {
  constexpr int kChanges = 20000;
  change::v1::TableChanges batch;
  batch.set_table("m");
  batch.add_columns("id");
  batch.add_columns("v");
  batch.add_key_columns("id");
  for (int i = 0; i < kChanges; ++i) {
    change::v1::Change* c = batch.add_changes();
    c->set_change_id(i + 1);
    c->set_op(change::v1::OP_INSERT);
    c->add_row()->set_integer(i);
    c->add_row()->set_text(std::string(100, 'v'));
  }
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(db_->Exec("BEGIN IMMEDIATE").ok());
  for (int i = 0; i < kChanges; ++i) {
    absl::Status s = store_->InsertChange(0, 9, 2, batch, batch.changes(i),
                                          absl::FailedPreconditionError("no such table: m"));
    ASSERT_TRUE(s.ok()) << s;
  }
  ASSERT_TRUE(db_->Exec("COMMIT").ok());
  store_->Committed();
  const auto took = std::chrono::steady_clock::now() - start;
  // Linear, it takes well under a second; copying every change for each took minutes.
  EXPECT_LT(took, std::chrono::seconds(20));

  absl::StatusOr<std::vector<std::vector<Value>>> rows = db_->QueryRows(
      "SELECT change FROM \"__marmot__dead_letters\" WHERE change_id IN (1, 20000) ORDER BY id");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  for (int i = 0; i < 2; ++i) {
    change::v1::TableChanges stored;
    ASSERT_TRUE(stored.ParseFromString((*rows)[i][0].bytes()));
    EXPECT_EQ(stored.table(), "m");
    EXPECT_EQ(stored.columns_size(), 2);
    ASSERT_EQ(stored.key_columns_size(), 1);
    EXPECT_EQ(stored.key_columns(0), "id");
    ASSERT_EQ(stored.changes_size(), 1);
    EXPECT_EQ(stored.changes(0).change_id(), i == 0 ? 1 : kChanges);
  }
}

TEST_F(DeadLetterStoreTest, ASnapshotSupersedesOnlyItsShardsLettersUpToItsIndex) {
  InsertCommitted(0, 10, "r1");
  const int64_t later = InsertCommitted(0, 20, "r2");
  const int64_t other_shard = InsertCommitted(1, 5, "r3");
  ASSERT_TRUE(db_->Exec("BEGIN IMMEDIATE").ok());
  absl::StatusOr<int64_t> deleted = store_->DeleteUpTo(0, 15);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 1);
  ASSERT_TRUE(db_->Exec("COMMIT").ok());
  store_->Committed();
  EXPECT_EQ(store_->index().Ids(), (std::vector<int64_t>{later, other_shard}));
}

TEST_F(DeadLetterStoreTest, LoadTellsTheKindsApartByTheirColumns) {
  change::v1::TableChanges t;
  t.set_table("t");
  t.add_columns("k");
  t.add_key_columns("k");
  change::v1::Change* c = t.add_changes();
  c->set_op(change::v1::OP_INSERT);
  c->set_change_id(3);
  c->add_row()->set_integer(42);
  const std::string held_row = EncodeRowIdentity("t", {Value::Integer(42)});
  sqlite::Statement insert = *db_->Prepare(
      "INSERT INTO \"__marmot__dead_letters\" (shard, raft_index, origin, tbl, change_id, error, "
      "change) VALUES (?, ?, ?, ?, ?, ?, ?)");
  auto add = [&](std::vector<Value> row) {
    ASSERT_TRUE(insert.BindAll(row).ok());
    ASSERT_TRUE(insert.Run().ok());
    insert.Reset();
  };
  add({Value::Integer(0), Value::Integer(1), Value::Null(), Value::Null(), Value::Null(),
       Value::Text("undecodable"), Value::Blob("junk")});
  add({Value::Integer(0), Value::Integer(2), Value::Null(), Value::Text("u"), Value::Null(),
       Value::Text("snapshot rows"), Value::Blob("")});
  add({Value::Integer(0), Value::Integer(3), Value::Integer(7), Value::Text("t"), Value::Integer(3),
       Value::Text("change"), Value::Blob(t.SerializeAsString())});
  ASSERT_TRUE(store_->Load(/*fresh=*/true).ok());

  EXPECT_EQ(store_->index().size(), 3u);
  EXPECT_EQ(BlockerOf(held_row), 3);
  absl::StatusOr<std::optional<int64_t>> whole = store_->Blocker(0, "u", {"any"}, false);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(*whole, 2);
  EXPECT_EQ(store_->QueuedBehind(2).message(),
            "queued behind dead letter 2 (snapshot rows of the table)");
}

TEST(CarriedDeadLetterTest, EachKindSurvivesTheTripThroughASnapshot) {
  ShardSnapshot::DeadLetter change;
  change.set_kind(ShardSnapshot::DeadLetter::KIND_CHANGE);
  change.set_raft_index(9);
  change.set_origin_node(7);
  change.set_table("t");
  change.set_change_id(3);
  change.set_error("boom");
  change.set_change("bytes");
  ShardSnapshot::DeadLetter rows = change;
  rows.set_kind(ShardSnapshot::DeadLetter::KIND_SNAPSHOT_ROWS);
  rows.clear_origin_node();
  rows.clear_change_id();
  ShardSnapshot::DeadLetter undecodable = rows;
  undecodable.set_kind(ShardSnapshot::DeadLetter::KIND_UNDECODABLE);
  undecodable.clear_table();
  for (const ShardSnapshot::DeadLetter& d : {change, rows, undecodable}) {
    SCOPED_TRACE(d.kind());
    std::vector<Value> stored = StoredDeadLetter(4, d);
    EXPECT_EQ(stored[0], Value::Integer(4));
    stored.erase(stored.begin());  // CarriedDeadLetter reads the columns after the shard.
    EXPECT_EQ(CarriedDeadLetter(stored).SerializeAsString(), d.SerializeAsString());
  }
}

}  // namespace
}  // namespace marmot::replicator
