// DatabaseWriter: one holder of the connection at a time. A round's writes are one transaction
// committed when the round ends; the shipper's marking waits for the round and then sees its
// work; a database failure inside a round gives the turn and the transaction up between tries;
// the change detector is told exactly while a round's transaction is open; shutting down ends
// retries with Cancelled.
#include "replicator/database_writer.h"

#include <glog/logging.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "replicator/change_batch.h"
#include "sqlite/change_log.h"
#include "sqlite/schema.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr uint64_t kSelf = 1;

class DatabaseWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = sqlite::testing::NewDatabase("database-writer",
                                         "CREATE TABLE t (id INTEGER PRIMARY KEY, v)");
    auto db = sqlite::Database::Open(path_);
    ASSERT_TRUE(db.ok()) << db.status();
    observer_ = std::make_unique<sqlite::Database>(*std::move(db));
    ASSERT_TRUE(sqlite::InstallCapture(*observer_).ok());
    auto applier = ChangeApplier::Open(path_, router_);
    ASSERT_TRUE(applier.ok()) << applier.status();
    (*applier)->set_local_node(kSelf);
    writer_ = std::make_unique<DatabaseWriter>(*std::move(applier));
  }

  // Node 3's insert of row `key` as change `change_id`.
  static change::v1::ChangeBatch Insert(int64_t change_id, int64_t key) {
    change::v1::ChangeBatch batch;
    batch.set_origin_node(3);
    change::v1::TableChanges* t = batch.add_tables();
    t->set_table("t");
    t->add_columns("id");
    t->add_columns("v");
    t->add_key_columns("id");
    change::v1::Change* c = t->add_changes();
    c->set_change_id(change_id);
    c->set_op(change::v1::OP_INSERT);
    c->add_row()->set_integer(key);
    c->add_row()->set_text("theirs");
    return batch;
  }

  static std::string What() { return "test step"; }

  // Applies node 3's insert of `key` at `index` of shard 0 in `round`.
  static absl::Status ApplyInsert(DatabaseWriter::Round& round, uint64_t index, int64_t key) {
    return round.Write(What, [index, key](ChangeApplier& applier) {
      return applier.Apply(0, index, Insert(static_cast<int64_t>(index), key)).status();
    });
  }

  int64_t Query(const std::string& sql) {
    auto v = observer_->QueryValue(sql);
    CHECK(v.ok()) << v.status();
    return v->is_null() ? 0 : v->integer();
  }
  // What the application's connection sees committed.
  int64_t StoredAppliedIndex() {
    return Query(
        "SELECT coalesce(max(applied_index), 0) FROM \"__marmot__shard_state\" WHERE shard = 0");
  }
  bool TransactionOpen() { return writer_->AwaitEnd(std::chrono::microseconds(0)); }

  ShardRouter router_{1};
  std::string path_;
  std::unique_ptr<sqlite::Database> observer_;  // The application's connection.
  std::unique_ptr<DatabaseWriter> writer_;
};

TEST_F(DatabaseWriterTest, ARoundsWritesAreOneTransactionCommittedWhenItEnds) {
  EXPECT_FALSE(TransactionOpen());
  {
    DatabaseWriter::Round round(*writer_);
    EXPECT_FALSE(round.transaction_open());
    ASSERT_TRUE(ApplyInsert(round, 1, 10).ok());
    ASSERT_TRUE(ApplyInsert(round, 2, 20).ok());
    EXPECT_TRUE(round.transaction_open());
    EXPECT_TRUE(TransactionOpen());
    EXPECT_EQ(StoredAppliedIndex(), 0) << "committed before the round ended";
    EXPECT_EQ(Query("SELECT count(*) FROM t"), 0);
  }
  EXPECT_FALSE(TransactionOpen());
  EXPECT_EQ(StoredAppliedIndex(), 2);
  EXPECT_EQ(Query("SELECT count(*) FROM t"), 2);
}

TEST_F(DatabaseWriterTest, AShipperWriteWaitsForTheOpenRoundThenSeesItCommitted) {
  // Given a round that wrote an entry (on the apply worker),
  auto round = std::make_unique<DatabaseWriter::Round>(*writer_);
  ASSERT_TRUE(ApplyInsert(*round, 1, 10).ok());
  // when the shipper marks meanwhile (on the pump thread),
  int64_t seen_inside = -1;
  std::future<absl::Status> marked = std::async(std::launch::async, [&] {
    return writer_->WriteWithDeferred([&](sqlite::Database& db) {
      auto v = db.QueryValue("SELECT applied_index FROM \"__marmot__shard_state\" WHERE shard = 0");
      if (!v.ok()) return v.status();
      seen_inside = v->integer();
      return db.Exec("DELETE FROM \"__marmot__t_change_log\"");
    });
  });
  // then it waits for the round (it would begin a transaction inside the round's otherwise),
  EXPECT_EQ(marked.wait_for(milliseconds(200)), std::future_status::timeout);
  // and once the round ends it runs in a transaction of its own, after the round's commit.
  round.reset();
  ASSERT_EQ(marked.wait_for(seconds(10)), std::future_status::ready);
  absl::Status s = marked.get();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(seen_inside, 1);
  EXPECT_FALSE(TransactionOpen());
}

TEST_F(DatabaseWriterTest, MarkingRunsInTheTransactionThatWritesTheDeferredState) {
  // Given an own change whose row holds it, applied without a write (its state deferred; the
  // first round reads t's log, so that rows written after count as known, LocalChangeIndex),
  {
    DatabaseWriter::Round round(*writer_);
    ASSERT_TRUE(ApplyInsert(round, 1, 100).ok());
  }
  ASSERT_TRUE(observer_->Exec("INSERT INTO t VALUES (1, 'a')").ok());
  auto schema = sqlite::ReadTableSchema(*observer_, "t");
  ASSERT_TRUE(schema.ok());
  auto changes = sqlite::ReadChanges(*observer_, *schema, 0, 1000);
  ASSERT_TRUE(changes.ok());
  change::v1::ChangeBatch own;
  own.set_origin_node(kSelf);
  *own.add_tables() = TableHeader(*schema);
  for (const sqlite::ChangeRecord& r : *changes) {
    *own.mutable_tables(0)->add_changes() = ToWire(*schema, r);
  }
  {
    DatabaseWriter::Round round(*writer_);
    EXPECT_TRUE(round.RunWithoutTransaction([&](ChangeApplier& applier) {
      auto r = applier.ApplyWithoutWriting(0, 2, own);
      return r.ok() && r->has_value();
    }));
    EXPECT_FALSE(TransactionOpen());
  }
  EXPECT_EQ(StoredAppliedIndex(), 1);
  // when a marking fails, nothing is committed and the state stays deferred,
  absl::Status s =
      writer_->WriteWithDeferred([](sqlite::Database&) { return absl::InternalError("no"); });
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(StoredAppliedIndex(), 1);
  // and the next one writes it in the transaction that deletes the log rows.
  int64_t seen_inside = -1;
  s = writer_->WriteWithDeferred([&](sqlite::Database& db) {
    seen_inside =
        db.QueryValue("SELECT applied_index FROM \"__marmot__shard_state\" WHERE shard = 0")
            ->integer();
    return db.Exec("DELETE FROM \"__marmot__t_change_log\"");
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(seen_inside, 2) << "log rows went before the applied state of their entry was written";
  EXPECT_EQ(StoredAppliedIndex(), 2);
  EXPECT_EQ(Query("SELECT count(*) FROM \"__marmot__t_change_log\""), 0);
}

TEST_F(DatabaseWriterTest, ADatabaseFailureInARoundIsWaitedOutWithoutTheTurnOrTheTransaction) {
  // Given a round that applied entry 1 and whose next write meets a failing database,
  std::atomic<bool> healed{false};
  std::atomic<int> tries{0};
  absl::Status written;
  std::thread worker([&] {
    DatabaseWriter::Round round(*writer_);
    CHECK(ApplyInsert(round, 1, 10).ok());
    written = round.Write(What, [&](ChangeApplier& applier) {
      ++tries;
      if (!healed.load()) return absl::UnavailableError("disk I/O error (test)");
      return applier.Apply(0, 2, Insert(2, 20)).status();
    });
  });
  // then between its tries the round's work so far is committed and another user of the
  // writer gets a turn (the shipper's marking, say),
  const auto deadline = std::chrono::steady_clock::now() + seconds(10);
  while (tries.load() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  ASSERT_GE(tries.load(), 2);
  EXPECT_EQ(StoredAppliedIndex(), 1);
  std::future<absl::Status> marked =
      std::async(std::launch::async, [&] { return writer_->WriteWithDeferred(); });
  ASSERT_EQ(marked.wait_for(seconds(10)), std::future_status::ready);
  EXPECT_TRUE(marked.get().ok());
  // and once the database is back the write goes through in the same round.
  healed = true;
  worker.join();
  EXPECT_TRUE(written.ok()) << written;
  EXPECT_EQ(StoredAppliedIndex(), 2);
  EXPECT_EQ(Query("SELECT count(*) FROM t"), 2);
}

TEST_F(DatabaseWriterTest, TheDetectorWaitsExactlyWhileARoundsTransactionIsOpen) {
  // No round, or a round that wrote nothing: nothing to wait for.
  EXPECT_FALSE(TransactionOpen());
  auto round = std::make_unique<DatabaseWriter::Round>(*writer_);
  EXPECT_FALSE(TransactionOpen());
  // A round's transaction: the detector's wait lasts its timeout while it stays open,
  ASSERT_TRUE(ApplyInsert(*round, 1, 10).ok());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(writer_->AwaitEnd(std::chrono::microseconds(30000)));
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(29));
  // and ends when the round commits.
  std::atomic<bool> ended{false};
  std::future<bool> awaited = std::async(std::launch::async, [&] {
    const bool was_open = writer_->AwaitEnd(std::chrono::microseconds(20'000'000));
    ended = true;
    return was_open;
  });
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_FALSE(ended.load());
  round.reset();
  ASSERT_EQ(awaited.wait_for(seconds(5)), std::future_status::ready);
  EXPECT_TRUE(awaited.get());
  EXPECT_FALSE(TransactionOpen());
}

TEST_F(DatabaseWriterTest, ShutdownEndsARetryWithCancelledAndLetsOneOffWritesRun) {
  // Given a round retrying a write on a failing database,
  std::future<absl::Status> written = std::async(std::launch::async, [&] {
    DatabaseWriter::Round round(*writer_);
    return round.Write(What, [](ChangeApplier&) {
      return absl::UnavailableError("database or disk is full (test)");
    });
  });
  EXPECT_EQ(written.wait_for(milliseconds(100)), std::future_status::timeout);
  // when shutdown begins, the retry gives up,
  writer_->BeginShutdown();
  ASSERT_EQ(written.wait_for(seconds(5)), std::future_status::ready);
  absl::Status s = written.get();
  EXPECT_TRUE(absl::IsCancelled(s)) << s;
  // a round's writes then run as transactions of their own,
  {
    DatabaseWriter::Round round(*writer_);
    ASSERT_TRUE(ApplyInsert(round, 1, 10).ok());
    EXPECT_FALSE(round.transaction_open());
    EXPECT_EQ(StoredAppliedIndex(), 1);
  }
  // and the last writes at stop still run.
  EXPECT_TRUE(writer_->WriteWithDeferred().ok());
}

}  // namespace
}  // namespace marmot::replicator
