// SharedApplier's rounds: a round of entries that need no write takes no write lock, and the
// state those entries leave is made durable before anything depends on it (the shipper's
// marking, a snapshot, the next transaction).
#include "replicator/shard_state_machine.h"

#include <glog/logging.h>
#include <gtest/gtest.h>

#include "replicator/change_batch.h"
#include "sqlite/change_log.h"
#include "sqlite/schema.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using sqlite::Value;

constexpr uint64_t kSelf = 1;

class SharedApplierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = sqlite::testing::NewDatabase("shared-applier", "CREATE TABLE t (id INTEGER PRIMARY KEY, v)");
    auto db = sqlite::Database::Open(path_);
    ASSERT_TRUE(db.ok()) << db.status();
    observer_ = std::make_unique<sqlite::Database>(*std::move(db));
    ASSERT_TRUE(sqlite::InstallCapture(*observer_).ok());
    shared_ = std::make_shared<SharedApplier>();
    auto applier = ChangeApplier::Open(path_, router_);
    ASSERT_TRUE(applier.ok()) << applier.status();
    shared_->applier = *std::move(applier);
    shared_->applier->set_local_node(kSelf);
    machine_ = std::make_unique<ShardStateMachine>(0, shared_);
    // A first entry of another node: the applier reads t's log for the first time, so that
    // rows written after count as known (LocalChangeIndex).
    Round({Entry(2, Batch(3, 0, {{100, "theirs"}}))});
  }

  // A batch from `origin` of inserts into t, with change ids from `first_id`.
  static change::v1::ChangeBatch Batch(uint64_t origin, int64_t first_id,
                                       const std::vector<std::pair<int64_t, std::string>>& rows) {
    change::v1::ChangeBatch batch;
    batch.set_origin_node(origin);
    change::v1::TableChanges* t = batch.add_tables();
    t->set_table("t");
    t->add_columns("id");
    t->add_columns("v");
    t->add_key_columns("id");
    int64_t id = first_id;
    for (const auto& [key, value] : rows) {
      change::v1::Change* c = t->add_changes();
      c->set_change_id(++id);
      c->set_op(change::v1::OP_INSERT);
      c->add_row()->set_integer(key);
      c->add_row()->set_text(value);
    }
    return batch;
  }

  // This node's own pending changes of t, as the shipper would propose them.
  change::v1::ChangeBatch OwnBatch() {
    auto schema = sqlite::ReadTableSchema(*observer_, "t");
    CHECK(schema.ok());
    auto changes = sqlite::ReadChanges(*observer_, *schema, 0, 1000);
    CHECK(changes.ok());
    change::v1::ChangeBatch batch;
    batch.set_origin_node(kSelf);
    change::v1::TableChanges* t = batch.add_tables();
    *t = TableHeader(*schema);
    for (const sqlite::ChangeRecord& r : *changes) *t->add_changes() = ToWire(*schema, r);
    return batch;
  }

  static raft::host::AppliedEntry Entry(uint64_t index, const change::v1::ChangeBatch& batch) {
    return {.index = index, .term = 1, .data = batch.SerializeAsString()};
  }

  // One apply round of `entries`; whether it opened a transaction.
  bool Round(const std::vector<raft::host::AppliedEntry>& entries) {
    shared_->BeginRound();
    absl::Status applied = machine_->Apply(entries);
    CHECK(applied.ok()) << applied;
    const bool opened = shared_->TransactionOpen();
    shared_->EndRound();
    return opened;
  }

  int64_t Query(const std::string& sql) {
    auto v = observer_->QueryValue(sql);
    CHECK(v.ok()) << v.status();
    return v->is_null() ? 0 : v->integer();
  }
  int64_t StoredAppliedIndex() {
    return Query("SELECT applied_index FROM \"__marmot__shard_state\" WHERE shard = 0");
  }

  ShardRouter router_{1};
  std::string path_;
  std::unique_ptr<sqlite::Database> observer_;  // The application's connection.
  std::shared_ptr<SharedApplier> shared_;
  std::unique_ptr<ShardStateMachine> machine_;
};

TEST_F(SharedApplierTest, ARoundOfOwnChangesTheRowsHoldTakesNoWriteLock) {
  ASSERT_TRUE(observer_->Exec("INSERT INTO t VALUES (1, 'a'), (2, 'b')").ok());
  const int64_t version = Query("PRAGMA data_version");
  EXPECT_FALSE(Round({Entry(3, OwnBatch())}));
  EXPECT_EQ(Query("PRAGMA data_version"), version) << "another connection wrote";
  EXPECT_EQ(StoredAppliedIndex(), 2);
  EXPECT_EQ(*shared_->applier->AppliedIndex(0), 3u);

  // Another node's entry needs a write: its round's transaction also writes the deferred state.
  EXPECT_TRUE(Round({Entry(4, Batch(3, 1, {{7, "x"}}))}));
  EXPECT_EQ(StoredAppliedIndex(), 4);
  EXPECT_EQ(Query("SELECT change_id FROM \"__marmot__applied\" WHERE origin = 1"), 2);
  EXPECT_FALSE(shared_->applier->has_deferred());
}

TEST_F(SharedApplierTest, MarkingRunsInTheTransactionThatWritesTheDeferredState) {
  ASSERT_TRUE(observer_->Exec("INSERT INTO t VALUES (1, 'a')").ok());
  EXPECT_FALSE(Round({Entry(3, OwnBatch())}));
  ASSERT_EQ(StoredAppliedIndex(), 2);
  int64_t seen_inside = -1;
  absl::Status s = shared_->WriteWithDeferred([&](sqlite::Database& db) {
    seen_inside = db.QueryValue("SELECT applied_index FROM \"__marmot__shard_state\" WHERE shard = 0")->integer();
    return db.Exec("DELETE FROM \"__marmot__t_change_log\"");
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(seen_inside, 3) << "log rows went before the applied state of their entry was written";
  EXPECT_EQ(StoredAppliedIndex(), 3);
  EXPECT_EQ(Query("SELECT count(*) FROM \"__marmot__t_change_log\""), 0);
  EXPECT_FALSE(shared_->applier->has_deferred());

  // A failing write commits nothing, and the state stays deferred for the next transaction.
  ASSERT_TRUE(observer_->Exec("INSERT INTO t VALUES (2, 'b')").ok());
  EXPECT_FALSE(Round({Entry(4, OwnBatch())}));
  s = shared_->WriteWithDeferred([](sqlite::Database&) { return absl::InternalError("no"); });
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(StoredAppliedIndex(), 3);
  EXPECT_TRUE(shared_->applier->has_deferred());
  ASSERT_TRUE(shared_->WriteWithDeferred(nullptr).ok());
  EXPECT_EQ(StoredAppliedIndex(), 4);
}

TEST_F(SharedApplierTest, ASnapshotHoldsTheStateOfEntriesAppliedWithoutWriting) {
  ASSERT_TRUE(observer_->Exec("INSERT INTO t VALUES (1, 'a')").ok());
  EXPECT_FALSE(Round({Entry(3, OwnBatch())}));
  // Taken in a round, as the host does.
  shared_->BeginRound();
  raft::host::StringSnapshotSink out;
  absl::Status saved = machine_->SaveSnapshot(out);
  shared_->EndRound();
  ASSERT_TRUE(saved.ok()) << saved;
  change::v1::ShardSnapshot snap;
  ASSERT_TRUE(snap.ParseFromString(out.data()));
  EXPECT_EQ(snap.applied_index(), 3u);
  bool own_dedupe = false;
  for (const auto& a : snap.applied()) own_dedupe = own_dedupe || (a.origin_node() == kSelf && a.change_id() == 1);
  EXPECT_TRUE(own_dedupe);
  EXPECT_EQ(StoredAppliedIndex(), 3);
}

}  // namespace
}  // namespace marmot::replicator
