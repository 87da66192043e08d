// ShardStateMachine in the host's apply rounds (ShardApplyRounds): a round of entries that need
// no write takes no write lock, and the state those entries leave is made durable before
// anything depends on it (a snapshot, the next transaction). A busy database is waited out
// without holding marmot's transaction or the writer's turn; what waiting cannot fix is returned
// at once (the shard halts) and leaves the application free to write. A call outside rounds
// works in a round of its own.
#include "replicator/shard_state_machine.h"

#include <glog/logging.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "replicator/change_batch.h"
#include "sqlite/change_log.h"
#include "sqlite/schema.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using sqlite::Value;

constexpr uint64_t kSelf = 1;

class ShardStateMachineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = sqlite::testing::NewDatabase("shard-state-machine",
                                         "CREATE TABLE t (id INTEGER PRIMARY KEY, v)");
    auto db = sqlite::Database::Open(path_);
    ASSERT_TRUE(db.ok()) << db.status();
    observer_ = std::make_unique<sqlite::Database>(*std::move(db));
    ASSERT_TRUE(sqlite::InstallCapture(*observer_).ok());
    auto applier = ChangeApplier::Open(path_, router_);
    ASSERT_TRUE(applier.ok()) << applier.status();
    (*applier)->set_local_node(kSelf);
    writer_ = std::make_shared<DatabaseWriter>(*std::move(applier));
    rounds_ = std::make_unique<ShardApplyRounds>(writer_.get());
    machine_ = std::make_unique<ShardStateMachine>(0, writer_);
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

  // One apply round of `entries`, as the host runs it; whether it opened a transaction.
  bool Round(const std::vector<raft::host::AppliedEntry>& entries) {
    std::unique_ptr<raft::host::ApplyRound> round = rounds_->BeginRound();
    absl::Status applied = machine_->Apply(entries, round.get());
    CHECK(applied.ok()) << applied;
    return TransactionOpen();
  }
  bool TransactionOpen() { return writer_->AwaitEnd(std::chrono::microseconds(0)); }

  // The applied index as the writer's applier has it (deferred state included).
  uint64_t AppliedIndex() {
    uint64_t index = 0;
    absl::Status s = writer_->RunOnce([&](ChangeApplier& applier) {
      absl::StatusOr<uint64_t> a = applier.AppliedIndex(0);
      if (a.ok()) index = *a;
      return a.status();
    });
    CHECK(s.ok()) << s;
    return index;
  }
  bool HasDeferred() {
    bool deferred = false;
    CHECK(writer_
              ->RunOnce([&](ChangeApplier& applier) {
                deferred = applier.has_deferred();
                return absl::OkStatus();
              })
              .ok());
    return deferred;
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
  std::shared_ptr<DatabaseWriter> writer_;
  std::unique_ptr<ShardApplyRounds> rounds_;
  std::unique_ptr<ShardStateMachine> machine_;
};

TEST_F(ShardStateMachineTest, ARoundOfOwnChangesTheRowsHoldTakesNoWriteLock) {
  ASSERT_TRUE(observer_->Exec("INSERT INTO t VALUES (1, 'a'), (2, 'b')").ok());
  const int64_t version = Query("PRAGMA data_version");
  EXPECT_FALSE(Round({Entry(3, OwnBatch())}));
  EXPECT_EQ(Query("PRAGMA data_version"), version) << "another connection wrote";
  EXPECT_EQ(StoredAppliedIndex(), 2);
  EXPECT_EQ(AppliedIndex(), 3u);

  // Another node's entry needs a write: its round's transaction also writes the deferred state.
  EXPECT_TRUE(Round({Entry(4, Batch(3, 1, {{7, "x"}}))}));
  EXPECT_EQ(StoredAppliedIndex(), 4);
  EXPECT_EQ(Query("SELECT change_id FROM \"__marmot__applied\" WHERE origin = 1"), 2);
  EXPECT_FALSE(HasDeferred());
}

TEST_F(ShardStateMachineTest, ACallOutsideRoundsWorksInARoundOfItsOwn) {
  // As at the host's start: Open, then entries (or an install) outside any round.
  EXPECT_EQ(machine_->Open(), 2u);
  ASSERT_TRUE(machine_->Apply({Entry(3, Batch(3, 1, {{7, "x"}}))}, nullptr).ok());
  EXPECT_FALSE(TransactionOpen());
  EXPECT_EQ(StoredAppliedIndex(), 3);
  EXPECT_EQ(Query("SELECT count(*) FROM t WHERE id = 7"), 1);
}

TEST_F(ShardStateMachineTest, ARoundNotBegunByShardApplyRoundsIsRefusedLoudly) {
  class ForeignRound : public raft::host::ApplyRound {};
  ForeignRound foreign;
  EXPECT_DEATH((void)machine_->Apply({Entry(3, Batch(3, 1, {{7, "x"}}))}, &foreign),
               "not begun by ShardApplyRounds");
}

TEST_F(ShardStateMachineTest, ASnapshotHoldsTheStateOfEntriesAppliedWithoutWriting) {
  ASSERT_TRUE(observer_->Exec("INSERT INTO t VALUES (1, 'a')").ok());
  EXPECT_FALSE(Round({Entry(3, OwnBatch())}));
  // Taken in a round, as the host does.
  raft::host::StringSnapshotSink out;
  absl::Status saved;
  {
    std::unique_ptr<raft::host::ApplyRound> round = rounds_->BeginRound();
    saved = machine_->SaveSnapshot(out, round.get());
  }
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

TEST_F(ShardStateMachineTest, ASnapshotIsReadWhileTheApplicationWrites) {
  // Given a round whose transaction is open (another node's entry),
  std::unique_ptr<raft::host::ApplyRound> round = rounds_->BeginRound();
  ASSERT_TRUE(machine_->Apply({Entry(3, Batch(3, 1, {{7, "x"}}))}, round.get()).ok());
  ASSERT_TRUE(TransactionOpen());
  // when the shard's snapshot is taken, the application writes while it is read,
  absl::Status app_write;
  CallbackSink out([&] { app_write = QuickWrite(path_, "INSERT INTO t VALUES (50, 'app')"); });
  absl::Status saved = machine_->SaveSnapshot(out, round.get());
  round.reset();
  ASSERT_TRUE(saved.ok()) << saved;
  EXPECT_TRUE(app_write.ok()) << app_write;
  // and the snapshot holds the round's entry.
  auto snap = ReadShardSnapshot(raft::host::StringSnapshotSource(out.Take()));
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_EQ(snap->applied_index(), 3u);
}

TEST_F(ShardStateMachineTest, ABusyDatabaseIsWaitedOutWithoutHoldingMarmotsLock) {
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
    std::unique_ptr<raft::host::ApplyRound> round = rounds_->BeginRound();
    started = true;
    installed = machine_->RecoverFromSnapshot(10, payload, round.get());
    round.reset();
    done = true;
  });
  // then between its tries the writer's turn is free (the shipper could mark, say),
  while (!started.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::future<uint64_t> read = std::async(std::launch::async, [&] { return AppliedIndex(); });
  EXPECT_EQ(read.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_FALSE(done.load());
  // and once the application commits, the install goes through.
  ASSERT_TRUE(observer_->Exec("COMMIT").ok());
  worker.join();
  EXPECT_EQ(read.get(), 2u);
  ASSERT_TRUE(installed.ok()) << installed;
  EXPECT_EQ(AppliedIndex(), 10u);
  EXPECT_EQ(Query("SELECT count(*) FROM t WHERE v = 'from the snapshot'"), 1);
}

TEST_F(ShardStateMachineTest, WhatWaitingCannotFixIsReturnedAtOnceAndTheApplicationWritesOn) {
  // Given a node that keeps no dead letters and a table this node lacks,
  ASSERT_TRUE(writer_
                  ->RunOnce([](ChangeApplier& applier) {
                    applier.set_max_dead_letters(0);
                    return absl::OkStatus();
                  })
                  .ok());
  change::v1::ChangeBatch batch = Batch(3, 10, {{8, "y"}});
  batch.mutable_tables(0)->set_table("missing");
  // when an entry would need a dead letter, Apply says so without retrying,
  const auto start = std::chrono::steady_clock::now();
  absl::Status applied;
  {
    std::unique_ptr<raft::host::ApplyRound> round = rounds_->BeginRound();
    applied = machine_->Apply({Entry(3, batch)}, round.get());
  }
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
  absl::Status installed;
  {
    std::unique_ptr<raft::host::ApplyRound> round = rounds_->BeginRound();
    installed = machine_->RecoverFromSnapshot(20, payload, round.get());
    EXPECT_TRUE(QuickWrite(path_, "INSERT INTO t VALUES (60, 'app')").ok());
  }
  EXPECT_TRUE(absl::IsResourceExhausted(installed)) << installed;
  EXPECT_EQ(AppliedIndex(), 2u);
  // A payload of another shard is refused the same way.
  snap.set_shard(5);
  raft::host::StringSnapshotSink other;
  ASSERT_TRUE(WriteShardSnapshot(snap, other).ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(
      machine_->RecoverFromSnapshot(20, raft::host::StringSnapshotSource(other.Take()), nullptr)));
}

}  // namespace
}  // namespace marmot::replicator
