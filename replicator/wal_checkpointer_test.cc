#include "replicator/wal_checkpointer.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using namespace std::chrono_literals;

constexpr int64_t kPage = 4096;

std::string NewWalDatabase(const std::string& label) {
  return sqlite::testing::NewDatabase(
      label, "PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT);");
}

int64_t FileSize(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  return ec ? 0 : static_cast<int64_t>(size);
}

// Notifies `c` until a run has reported counts that satisfy `done`, at most 10 s.
template <typename Done>
WalCheckpointer::Counts AwaitCounts(WalCheckpointer& c, Done done) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  WalCheckpointer::Counts counts = c.counts();
  while (std::chrono::steady_clock::now() < deadline && !done(counts)) {
    c.Notify();
    std::this_thread::sleep_for(1ms);
    counts = c.counts();
  }
  return counts;
}

// Waits until a run after the `runs_before`th has left nothing behind.
WalCheckpointer::Counts AwaitCaughtUp(WalCheckpointer& c, int64_t runs_before) {
  return AwaitCounts(c, [&](const WalCheckpointer::Counts& n) {
    return n.runs > runs_before && n.frames_behind == 0;
  });
}

// An application connection: a plain SQLite handle with SQLite's defaults.
struct App {
  explicit App(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
  }
  ~App() { sqlite3_close(db); }
  void Exec(const std::string& sql) {
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK)
        << sql << ": " << err;
  }
  // One transaction of `rows` rows of ~100 bytes: about rows / 35 pages.
  void InsertRows(int64_t first, int rows) {
    Exec("BEGIN IMMEDIATE");
    for (int i = 0; i < rows; ++i) {
      Exec("INSERT INTO t VALUES (" + std::to_string(first + i) + ", printf('%.100c', 'x'))");
    }
    Exec("COMMIT");
  }
  sqlite3* db = nullptr;
};

TEST(WalCheckpointerTest, CopiesAnotherProcesssCommitsIntoTheDatabaseFile) {
  const std::string path = NewWalDatabase("ckpt-copy");
  auto checkpointer = WalCheckpointer::Start(path, {});
  ASSERT_TRUE(checkpointer.ok()) << checkpointer.status();
  // Another process commits ~100 pages and, with its automatic checkpoint off, leaves them all
  // in the WAL.
  ASSERT_TRUE(
      sqlite::testing::RunSqliteCli(path,
                                    "PRAGMA wal_autocheckpoint=0; BEGIN; WITH RECURSIVE n(i) AS "
                                    "(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3500) "
                                    "INSERT INTO t SELECT i, printf('%.100c', 'x') FROM n; COMMIT;")
          .ok());
  const int64_t db_before = FileSize(path);
  EXPECT_LT(db_before, 10 * kPage);
  EXPECT_EQ((*checkpointer)->counts().runs, 0);  // Not without a Notify.

  const WalCheckpointer::Counts counts = AwaitCaughtUp(**checkpointer, 0);
  EXPECT_GE(counts.runs, 1);
  EXPECT_GE(counts.wal_frames, 90);
  EXPECT_EQ(counts.frames_behind, 0);
  EXPECT_GE(FileSize(path), db_before + 80 * kPage);
  // The copy is the data: a new reader of the database file alone (WAL emptied) sees every row.
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "PRAGMA wal_checkpoint(TRUNCATE);").ok());
  EXPECT_EQ(FileSize(path + "-wal"), 0);
  EXPECT_EQ(*sqlite::testing::RunSqliteCli(path, "SELECT count(*), sum(length(payload)) FROM t;"),
            "3500|350000\n");
}

// The point of the unit: with marmot copying each commit soon after it, the application's commits
// start the WAL over instead of growing it to SQLite's 1,000-page automatic checkpoint, which the
// committing application would have to run.
TEST(WalCheckpointerTest, TheApplicationsWalStaysFarBelowTheAutomaticCheckpoint) {
  const std::string path = NewWalDatabase("ckpt-small");
  auto checkpointer = WalCheckpointer::Start(path, {});
  ASSERT_TRUE(checkpointer.ok());
  App app(path);
  int64_t runs = 0;
  for (int commit = 0; commit < 100; ++commit) {  // ~30 pages each, 3,000 pages in all
    app.InsertRows(commit * 1000, 1000);
    runs = AwaitCaughtUp(**checkpointer, runs).runs;
  }
  EXPECT_EQ(*sqlite::testing::RunSqliteCli(path, "SELECT count(*) FROM t;"), "100000\n");
  EXPECT_LT(FileSize(path + "-wal"), 100 * kPage);
}

TEST(WalCheckpointerTest, WithoutItTheSameWritesGrowTheWalToTheAutomaticCheckpoint) {
  // The control of the test above: the same application on its own.
  const std::string path = NewWalDatabase("ckpt-control");
  App app(path);
  for (int commit = 0; commit < 100; ++commit) app.InsertRows(commit * 1000, 1000);
  EXPECT_GT(FileSize(path + "-wal"), 900 * kPage);
}

TEST(WalCheckpointerTest, AnOpenReadTransactionHoldsFramesBackUntilItEnds) {
  const std::string path = NewWalDatabase("ckpt-reader");
  auto checkpointer = WalCheckpointer::Start(path, {});
  ASSERT_TRUE(checkpointer.ok());
  App app(path), reader(path);
  app.InsertRows(0, 100);
  AwaitCaughtUp(**checkpointer, 0);
  reader.Exec("BEGIN; SELECT count(*) FROM t;");  // The reader's snapshot: 100 rows.
  app.InsertRows(100, 1000);                      // ~30 pages
  // Runs go on, and report the frames the reader holds back.
  const WalCheckpointer::Counts held = AwaitCounts(
      **checkpointer, [](const WalCheckpointer::Counts& n) { return n.wal_frames >= 20; });
  EXPECT_GE(held.wal_frames, 20);
  EXPECT_EQ(held.frames_behind, held.wal_frames);  // The reader still needs the file without them.
  reader.Exec("COMMIT");
  const WalCheckpointer::Counts after = AwaitCaughtUp(**checkpointer, held.runs);
  EXPECT_EQ(after.frames_behind, 0);
  EXPECT_GT(after.runs, held.runs);
}

TEST(WalCheckpointerTest, LooksAtTheWalAtMostOncePerInterval) {
  const std::string path = NewWalDatabase("ckpt-rate");
  auto checkpointer = WalCheckpointer::Start(path, {.min_interval = 50ms});
  ASSERT_TRUE(checkpointer.ok());
  App app(path);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 200; ++i) {
    app.InsertRows(i, 1);  // every commit leaves something to copy
    (*checkpointer)->Notify();
    std::this_thread::sleep_for(1ms);
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LE((*checkpointer)->counts().runs, 1 + elapsed / 50ms);
  EXPECT_GE((*checkpointer)->counts().runs, 1);
}

// Small commits do not each cost a checkpoint (and a sync of the database file): one per
// min_pages pages.
TEST(WalCheckpointerTest, WaitsForMinPagesBeforeCheckpointing) {
  const std::string path = NewWalDatabase("ckpt-min");
  auto checkpointer = WalCheckpointer::Start(path, {.min_pages = 100});
  ASSERT_TRUE(checkpointer.ok());
  App app(path);
  app.Exec("PRAGMA wal_autocheckpoint=0");
  for (int i = 0; i < 40; ++i) {  // ~2 pages per commit (the row's page and the root)
    app.InsertRows(i, 1);
    (*checkpointer)->Notify();
    std::this_thread::sleep_for(2ms);
  }
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ((*checkpointer)->counts().runs, 0);
  app.InsertRows(1000, 5000);  // ~150 pages
  const WalCheckpointer::Counts counts = AwaitCaughtUp(**checkpointer, 0);
  EXPECT_GE(counts.runs, 1);
  EXPECT_GE(counts.wal_frames, 100);
  EXPECT_EQ(counts.frames_behind, 0);
}

// Closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's
// too. Marmot stops its checkpointer while its applier may be in a write transaction (applies
// and snapshot installs go on until the Raft host stops): a descriptor of the -shm file closed
// then would release the WAL write lock, another process would write into the WAL beside the
// applier, and the file would be corrupt ("database disk image is malformed"), as rolling
// SIGTERM restarts under write load showed (tools/rolling_restart_stress.py).
TEST(WalCheckpointerTest, StoppingLeavesTheLocksOfTheProcesssOtherConnections) {
  const std::string path = NewWalDatabase("ckpt-locks");
  App applier(path);
  auto checkpointer = WalCheckpointer::Start(path, {});
  ASSERT_TRUE(checkpointer.ok());
  applier.InsertRows(0, 100);
  AwaitCaughtUp(**checkpointer, 0);
  applier.Exec("BEGIN IMMEDIATE; INSERT INTO t VALUES (1000, 'applier');");
  checkpointer->reset();

  // Another process cannot write while the applier's transaction is open.
  absl::StatusOr<std::string> other = sqlite::testing::RunSqliteCli(
      path, ".timeout 0\nINSERT INTO t VALUES (2000, 'other process');");
  ASSERT_FALSE(other.ok()) << "another process wrote beside the applier's open transaction";
  EXPECT_NE(other.status().message().find("database is locked"), std::string::npos)
      << other.status();

  applier.Exec("COMMIT");
  EXPECT_EQ(*sqlite::testing::RunSqliteCli(path, "PRAGMA integrity_check; SELECT count(*) FROM t;"),
            "ok\n101\n");
}

}  // namespace
}  // namespace marmot::replicator
