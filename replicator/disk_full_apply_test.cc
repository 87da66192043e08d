// A full (or failing) disk under the database while the host applies: SQLite rolls the apply
// round's transaction back, at its COMMIT or at the statement that meets the disk, after the host
// already counted the round's entries as applied. The apply pauses (no crash), holds no lock the
// application or marmot's other writers wait on, says so (apply_paused), and once the disk takes
// writes again makes the round's writes again: every entry applied exactly once, in order. When
// marmot stops during the pause the round is lost whole, nothing later is written, and the next
// start applies it from the Raft log.
//
// Writes fail through a SQLite VFS (sqlite/testing/faulty_vfs.h), the default VFS of this test
// process, so that the applier's own connection meets the fault.
#include <glog/logging.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "replicator/database_writer.h"
#include "replicator/shard_state_machine.h"
#include "sqlite/change_log.h"
#include "sqlite/database.h"
#include "sqlite/testing/faulty_vfs.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr uint64_t kSelf = 1;
constexpr uint64_t kOther = 3;

// A change of row `key` of t: its value, or a delete when `value` is empty.
struct RowChange {
  int64_t key;
  std::string value;
};

class DiskFullApplyTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    vfs_ = sqlite::testing::FaultyVfs::Install("disk-full-apply-test", /*make_default=*/true);
    vfs_->Heal();
    path_ = sqlite::testing::NewDatabase("disk-full-apply",
                                         "CREATE TABLE t (id INTEGER PRIMARY KEY, v)");
    auto db = sqlite::Database::Open(path_);
    ASSERT_TRUE(db.ok()) << db.status();
    observer_ = std::make_unique<sqlite::Database>(*std::move(db));
    ASSERT_TRUE(sqlite::InstallCapture(*observer_).ok());
    StartNode();
  }
  void TearDown() override { vfs_->Heal(); }

  // A marmot process on path_: a new applier, writer and shard 0's state machine.
  void StartNode() {
    machine_.reset();
    rounds_.reset();
    writer_.reset();
    auto applier = ChangeApplier::Open(path_, router_);
    ASSERT_TRUE(applier.ok()) << applier.status();
    (*applier)->set_local_node(kSelf);
    writer_ = std::make_shared<DatabaseWriter>(*std::move(applier));
    rounds_ = std::make_unique<ShardApplyRounds>(writer_.get());
    machine_ = std::make_unique<ShardStateMachine>(0, writer_);
    opened_at_ = machine_->Open();
  }

  // The entry at the next index: node 3's changes `rows` of t, change ids going on from the last
  // entry's. Kept as the "Raft log" and applied to the model.
  raft::host::AppliedEntry NextEntry(const std::vector<RowChange>& rows) {
    change::v1::ChangeBatch batch;
    batch.set_origin_node(kOther);
    change::v1::TableChanges* t = batch.add_tables();
    t->set_table("t");
    t->add_columns("id");
    t->add_columns("v");
    t->add_key_columns("id");
    for (const RowChange& r : rows) {
      change::v1::Change* c = t->add_changes();
      c->set_change_id(++last_change_id_);
      if (r.value.empty()) {
        c->set_op(change::v1::OP_DELETE);
        c->add_old_key()->set_integer(r.key);
        model_.erase(r.key);
      } else {
        c->set_op(change::v1::OP_UPDATE);
        c->add_row()->set_integer(r.key);
        c->add_row()->set_blob(r.value);
        model_[r.key] = r.value;
      }
    }
    log_.push_back({.index = log_.size() + 1, .term = 1, .data = batch.SerializeAsString()});
    return log_.back();
  }
  // Entries of a few changes each: rows 0..9 written, rewritten and deleted in turn, so that an
  // entry applied twice out of order, or not at all, leaves another table than the model.
  std::vector<raft::host::AppliedEntry> NextEntries(int n, size_t value_bytes = 16) {
    std::vector<raft::host::AppliedEntry> entries;
    for (int i = 0; i < n; ++i) {
      const int64_t seq = static_cast<int64_t>(log_.size());
      std::vector<RowChange> rows;
      for (int64_t j = 0; j < 3; ++j) {
        const int64_t key = (seq * 3 + j) % 10;
        const bool remove = (seq + j) % 7 == 3;
        std::string value =
            remove ? "" : std::string(value_bytes, static_cast<char>('a' + (seq + j) % 26));
        if (!value.empty()) value += std::to_string(seq);
        rows.push_back({key, value});
      }
      entries.push_back(NextEntry(rows));
    }
    return entries;
  }

  // The rows of t as the application's connection sees them.
  std::map<int64_t, std::string> Table() {
    std::map<int64_t, std::string> rows;
    auto read = observer_->QueryRows("SELECT id, v FROM t ORDER BY id");
    CHECK(read.ok()) << read.status();
    for (const auto& row : *read) rows[row[0].integer()] = row[1].bytes();
    return rows;
  }
  int64_t Query(const std::string& sql) {
    auto v = observer_->QueryValue(sql);
    CHECK(v.ok()) << v.status();
    return v->is_null() ? 0 : v->integer();
  }
  int64_t StoredAppliedIndex() {
    return Query(
        "SELECT coalesce(max(applied_index), 0) FROM \"__marmot__shard_state\" WHERE shard = 0");
  }
  int64_t StoredLastChange() {
    return Query("SELECT coalesce(max(change_id), 0) FROM \"__marmot__applied\" WHERE shard = 0");
  }
  int64_t DeadLetters() { return Query("SELECT count(*) FROM \"__marmot__dead_letters\""); }

  // What the node holds is exactly the log applied once, in order.
  void ExpectEverythingAppliedOnce() {
    EXPECT_EQ(Table(), model_);
    EXPECT_EQ(StoredAppliedIndex(), static_cast<int64_t>(log_.size()));
    EXPECT_EQ(StoredLastChange(), last_change_id_);
    EXPECT_EQ(DeadLetters(), 0);
  }

  // Waits until `f` is ready, at most `timeout`.
  template <typename T>
  static bool Ready(std::future<T>& f, std::chrono::milliseconds timeout) {
    return f.wait_for(timeout) == std::future_status::ready;
  }
  bool PausedFor(const std::string& cause) {
    const auto deadline = std::chrono::steady_clock::now() + seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      std::optional<DatabaseWriter::ApplyPause> paused = writer_->apply_paused();
      if (paused.has_value()) return paused->cause == cause;
      std::this_thread::sleep_for(milliseconds(5));
    }
    return false;
  }
  std::string ExpectedCause() const {
    return (GetParam() & 0xff) == SQLITE_FULL ? "disk full" : "I/O error";
  }

  // A round with a kept write that succeeds once and fails when made again (not the database's
  // failure: waiting cannot mend it), ended on a failing disk.
  void EndARoundWhoseWriteCannotBeMadeAgain() {
    auto round = std::make_unique<DatabaseWriter::Round>(*writer_);
    int runs = 0;
    absl::Status s = round->Write([] { return std::string("test write"); },
                                  [&runs](ChangeApplier& applier) {
                                    if (++runs > 1) return absl::FailedPreconditionError("changed");
                                    return applier.AdvanceAppliedIndex(0, 1);
                                  });
    CHECK(s.ok()) << s;
    vfs_->FailWrites(path_, GetParam());
    round.reset();
  }

  sqlite::testing::FaultyVfs* vfs_ = nullptr;
  ShardRouter router_{1};
  std::string path_;
  std::unique_ptr<sqlite::Database> observer_;  // The application's connection.
  std::shared_ptr<DatabaseWriter> writer_;
  std::unique_ptr<ShardApplyRounds> rounds_;
  std::unique_ptr<ShardStateMachine> machine_;
  uint64_t opened_at_ = 0;
  std::vector<raft::host::AppliedEntry> log_;  // Every committed entry, index i + 1 at [i].
  int64_t last_change_id_ = 0;
  std::map<int64_t, std::string> model_;  // t as the log leaves it.
};

TEST_P(DiskFullApplyTest, ARoundWhoseCommitFailsPausesAndIsMadeAgainOnceTheDiskTakesWrites) {
  // Given an apply round that applied three tasks of entries (the host counts them applied),
  auto round = rounds_->BeginRound();
  for (int task = 0; task < 3; ++task) {
    absl::Status s = machine_->Apply(NextEntries(5), round.get());
    ASSERT_TRUE(s.ok()) << s;
  }
  // when the disk under the database fails as the round commits,
  vfs_->FailWrites(path_, GetParam());
  const int64_t refused = vfs_->refused();
  std::future<void> ended = std::async(std::launch::async, [&] { round.reset(); });
  // then the apply pauses and says why, instead of ending the process,
  ASSERT_TRUE(PausedFor(ExpectedCause()));
  EXPECT_FALSE(Ready(ended, milliseconds(300)));
  EXPECT_GT(vfs_->refused(), refused);
  // nothing of the round is in the database, and it holds no lock: the application writes
  // (its write goes nowhere either: the disk is full for everyone) and the shipper's marking
  // gets turns between tries,
  EXPECT_EQ(StoredAppliedIndex(), 0);
  EXPECT_TRUE(Table().empty());
  std::future<absl::Status> marked =
      std::async(std::launch::async, [&] { return writer_->WriteWithDeferred(); });
  ASSERT_TRUE(Ready(marked, seconds(10))) << "marking waited for the paused round";
  (void)marked.get();  // Commits nothing, or fails on the disk: either is fine.
  absl::Status app_write = observer_->Exec("INSERT INTO t VALUES (1000, 'app')");
  EXPECT_FALSE(app_write.ok());
  EXPECT_TRUE(sqlite::IsStorageFailure(app_write)) << app_write;
  // and once the disk takes writes again the round commits with every entry, exactly once.
  vfs_->Heal();
  ASSERT_TRUE(Ready(ended, seconds(10)));
  EXPECT_FALSE(writer_->apply_paused().has_value());
  ExpectEverythingAppliedOnce();
  // The node goes on: the next round applies, and a re-proposal of a change the redone round
  // applied is skipped as a duplicate (the dedupe state was made again too).
  {
    auto next = rounds_->BeginRound();
    ASSERT_TRUE(machine_->Apply(NextEntries(4), next.get()).ok());
    change::v1::ChangeBatch again;
    ASSERT_TRUE(again.ParseFromString(log_[3].data));
    for (change::v1::Change& c : *again.mutable_tables(0)->mutable_changes()) {
      if (c.op() == change::v1::OP_UPDATE) c.mutable_row(1)->set_blob("re-proposed");
    }
    log_.push_back({.index = log_.size() + 1, .term = 1, .data = again.SerializeAsString()});
    ASSERT_TRUE(machine_->Apply({log_.back()}, next.get()).ok());
  }
  ExpectEverythingAppliedOnce();
}

TEST_P(DiskFullApplyTest, AWriteThatMeetsTheDiskInsideTheRoundIsMadeAgainWithTheRoundsOthers) {
  // Given a round whose transaction holds entries already, on a connection whose page cache
  // is small, so that the next large rows spill pages to the WAL before the commit,
  ASSERT_TRUE(writer_
                  ->RunOnce([](ChangeApplier& applier) {
                    return applier.database().Exec("PRAGMA cache_size = 16");
                  })
                  .ok());
  auto round = rounds_->BeginRound();
  ASSERT_TRUE(machine_->Apply(NextEntries(6), round.get()).ok());
  // when the disk fails while the next entries are applied,
  vfs_->FailWrites(path_, GetParam());
  std::vector<raft::host::AppliedEntry> large = NextEntries(4, /*value_bytes=*/256 << 10);
  std::future<absl::Status> applied =
      std::async(std::launch::async, [&] { return machine_->Apply(large, round.get()); });
  // then the apply pauses inside the round (the write met the disk, not the commit),
  ASSERT_TRUE(PausedFor(ExpectedCause()));
  EXPECT_FALSE(Ready(applied, milliseconds(300)));
  EXPECT_EQ(StoredAppliedIndex(), 0);
  // and once the disk takes writes the earlier entries are made again, the rest applies, and
  // the round commits everything once.
  vfs_->Heal();
  ASSERT_TRUE(Ready(applied, seconds(20)));
  absl::Status s = applied.get();
  EXPECT_TRUE(s.ok()) << s;
  round.reset();
  EXPECT_FALSE(writer_->apply_paused().has_value());
  ExpectEverythingAppliedOnce();
}

TEST_P(DiskFullApplyTest, StoppingDuringThePauseLosesTheRoundWholeAndTheNextStartAppliesIt) {
  // Given a round that applied entries 1..8, paused on a failing disk at its commit,
  auto round = rounds_->BeginRound();
  ASSERT_TRUE(machine_->Apply(NextEntries(8), round.get()).ok());
  vfs_->FailWrites(path_, GetParam());
  std::future<void> ended = std::async(std::launch::async, [&] { round.reset(); });
  ASSERT_TRUE(PausedFor(ExpectedCause()));
  // when marmot stops (with the disk still failing),
  writer_->BeginShutdown();
  ASSERT_TRUE(Ready(ended, seconds(10))) << "the pause held the stop";
  // the round is lost whole, and nothing after it is written: not a later entry (in a round, or
  // without a write), nor the deferred state or a marking at stop, nor a snapshot,
  vfs_->Heal();
  EXPECT_FALSE(writer_->apply_paused().has_value());
  {
    auto later = rounds_->BeginRound();
    absl::Status s = machine_->Apply(NextEntries(1), later.get());
    EXPECT_TRUE(absl::IsCancelled(s)) << s;
  }
  absl::Status s = machine_->Apply(NextEntries(1), nullptr);
  EXPECT_TRUE(absl::IsCancelled(s)) << s;
  s = writer_->WriteWithDeferred();
  EXPECT_TRUE(absl::IsCancelled(s)) << s;
  EXPECT_EQ(StoredAppliedIndex(), 0);
  EXPECT_TRUE(Table().empty());
  // then the next start finds the durable applied index before the round and applies the log
  // from there: everything, once.
  StartNode();
  EXPECT_EQ(opened_at_, 0u);
  {
    auto replay = rounds_->BeginRound();
    ASSERT_TRUE(machine_->Apply(log_, replay.get()).ok());
  }
  ExpectEverythingAppliedOnce();
}

TEST_P(DiskFullApplyTest, AWriteThatCannotBeMadeAgainEndsTheProcessWithItsExitCode) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(EndARoundWhoseWriteCannotBeMadeAgain(), ::testing::ExitedWithCode(kLostRoundExitCode),
              "could not be made again");
  // The child's round was rolled back.
  EXPECT_EQ(StoredAppliedIndex(), 0);
}

INSTANTIATE_TEST_SUITE_P(FullAndFailingDisk, DiskFullApplyTest,
                         ::testing::Values(SQLITE_FULL, SQLITE_IOERR_WRITE),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(info.param == SQLITE_FULL ? "DiskFull" : "IoError");
                         });

}  // namespace
}  // namespace marmot::replicator
