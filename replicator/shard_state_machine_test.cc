// SharedApplier's rounds: a round of entries that need no write takes no write lock, and the
// state those entries leave is made durable before anything depends on it (the shipper's
// marking, a snapshot, the next transaction). A busy database is waited out without holding
// marmot's transaction or mutex; what waiting cannot fix is returned at once (the shard halts)
// and leaves the application free to write.
#include "replicator/shard_state_machine.h"

#include <glog/logging.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

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
  absl::StatusOr<change::v1::ShardSnapshot> snap =
      ReadShardSnapshot(raft::host::StringSnapshotSource(out.Take()));
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_EQ(snap->applied_index(), 3u);
  bool own_dedupe = false;
  for (const auto& a : snap->applied()) {
    own_dedupe = own_dedupe || (a.origin_node() == kSelf && a.change_id() == 1);
  }
  EXPECT_TRUE(own_dedupe);
  EXPECT_EQ(StoredAppliedIndex(), 3);
}

// A sink that runs `on_write` at its first write (while the snapshot is being read).
class CallbackSink : public raft::host::SnapshotSink {
 public:
  explicit CallbackSink(std::function<void()> on_write) : on_write_(std::move(on_write)) {}
  absl::Status Write(absl::string_view bytes) override {
    if (on_write_) std::exchange(on_write_, nullptr)();
    return inner_.Write(bytes);
  }
  std::string Take() { return inner_.Take(); }

 private:
  std::function<void()> on_write_;
  raft::host::StringSnapshotSink inner_;
};

// The application's write with a short busy timeout, as `sqlite3 -cmd '.timeout 200'` does.
absl::Status QuickWrite(const std::string& path, const std::string& sql) {
  auto db = sqlite::Database::Open(path, {.busy_timeout = std::chrono::milliseconds(200)});
  if (!db.ok()) return db.status();
  return db->Exec(sql);
}

TEST_F(SharedApplierTest, ASnapshotIsReadWhileTheApplicationWrites) {
  // Given a round whose transaction is open (another node's entry),
  shared_->BeginRound();
  ASSERT_TRUE(machine_->Apply({Entry(3, Batch(3, 1, {{7, "x"}}))}).ok());
  ASSERT_TRUE(shared_->TransactionOpen());
  // when the shard's snapshot is taken, the application writes while it is read,
  absl::Status app_write;
  CallbackSink out([&] { app_write = QuickWrite(path_, "INSERT INTO t VALUES (50, 'app')"); });
  absl::Status saved = machine_->SaveSnapshot(out);
  shared_->EndRound();
  ASSERT_TRUE(saved.ok()) << saved;
  EXPECT_TRUE(app_write.ok()) << app_write;
  // and the snapshot holds the round's entry.
  auto snap = ReadShardSnapshot(raft::host::StringSnapshotSource(out.Take()));
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_EQ(snap->applied_index(), 3u);
}

TEST_F(SharedApplierTest, ABusyDatabaseIsWaitedOutWithoutHoldingMarmotsLock) {
  // Given a snapshot of shard 0 holding row 1, and the application holding the write lock,
  auto maker_path =
      sqlite::testing::NewDatabase("busy-maker", "CREATE TABLE t (id INTEGER PRIMARY KEY, v)");
  auto maker = ChangeApplier::Open(maker_path, router_);
  ASSERT_TRUE(maker.ok());
  ASSERT_TRUE(QuickWrite(maker_path, "INSERT INTO t VALUES (1, 'from the snapshot')").ok());
  ASSERT_TRUE((*maker)->AdvanceAppliedIndex(0, 10).ok());
  raft::host::StringSnapshotSink sink;
  ShardSnapshotWriter writer(sink);
  ASSERT_TRUE((*maker)->CreateSnapshot(0, writer).ok());
  raft::host::StringSnapshotSource payload(sink.Take());
  ASSERT_TRUE(observer_->Exec("BEGIN IMMEDIATE").ok());
  // when the apply worker installs it (SQLite's busy handler gives up after 5 s),
  std::atomic<bool> started{false}, done{false};
  absl::Status installed;
  std::thread worker([&] {
    shared_->BeginRound();
    started = true;
    installed = machine_->RecoverFromSnapshot(10, payload);
    shared_->EndRound();
    done = true;
  });
  // then between its tries marmot's mutex is free (the shipper could mark, say),
  while (!started.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  bool locked = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!locked && std::chrono::steady_clock::now() < deadline) {
    if (shared_->mu.try_lock()) {
      locked = true;
      shared_->mu.unlock();
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  EXPECT_TRUE(locked);
  EXPECT_FALSE(done.load());
  // and once the application commits, the install goes through.
  ASSERT_TRUE(observer_->Exec("COMMIT").ok());
  worker.join();
  ASSERT_TRUE(installed.ok()) << installed;
  EXPECT_EQ(*shared_->applier->AppliedIndex(0), 10u);
  EXPECT_EQ(Query("SELECT count(*) FROM t WHERE v = 'from the snapshot'"), 1);
}

TEST_F(SharedApplierTest, WhatWaitingCannotFixIsReturnedAtOnceAndTheApplicationWritesOn) {
  // Given a node that keeps no dead letters and a table this node lacks,
  shared_->applier->set_max_dead_letters(0);
  change::v1::ChangeBatch batch = Batch(3, 10, {{8, "y"}});
  batch.mutable_tables(0)->set_table("missing");
  // when an entry would need a dead letter, Apply says so without retrying,
  shared_->BeginRound();
  const auto start = std::chrono::steady_clock::now();
  absl::Status applied = machine_->Apply({Entry(3, batch)});
  shared_->EndRound();
  EXPECT_TRUE(absl::IsResourceExhausted(applied)) << applied;
  EXPECT_NE(applied.message().find("entry 3"), std::string::npos) << applied;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  // and so does a snapshot install that would need one; the application writes meanwhile.
  raft::host::StringSnapshotSink sink;
  change::v1::ShardSnapshot snap;
  snap.set_shard(0);
  snap.set_applied_index(20);
  auto* table = snap.add_tables();
  table->set_table("missing");
  table->add_columns("id");
  table->add_key_columns("id");
  table->add_values()->set_integer(1);
  ASSERT_TRUE(WriteShardSnapshot(snap, sink).ok());
  raft::host::StringSnapshotSource payload(sink.Take());
  shared_->BeginRound();
  absl::Status installed = machine_->RecoverFromSnapshot(20, payload);
  EXPECT_TRUE(QuickWrite(path_, "INSERT INTO t VALUES (60, 'app')").ok());
  shared_->EndRound();
  EXPECT_TRUE(absl::IsResourceExhausted(installed)) << installed;
  EXPECT_EQ(*shared_->applier->AppliedIndex(0), 2u);
  // A payload of another shard is refused the same way.
  snap.set_shard(5);
  raft::host::StringSnapshotSink other;
  ASSERT_TRUE(WriteShardSnapshot(snap, other).ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(
      machine_->RecoverFromSnapshot(20, raft::host::StringSnapshotSource(other.Take()))));
}

}  // namespace
}  // namespace marmot::replicator
