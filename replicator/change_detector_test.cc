#include "replicator/change_detector.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using namespace std::chrono_literals;
using Wakeup = ChangeDetector::Wakeup;

// A VFS over the default one whose syncs take 50 ms, as on a slow disk: a writer's WAL frames
// (and their file events) then come 50 ms before its commit is visible to readers.
constexpr char kSlowSyncVfs[] = "marmot-slow-sync";

struct SlowFile {
  sqlite3_file base;
  sqlite3_file* real;  // The default VFS's file, allocated right after this struct.
};

sqlite3_file* Real(sqlite3_file* f) { return reinterpret_cast<SlowFile*>(f)->real; }

const sqlite3_io_methods kSlowMethods = {
    3,
    [](sqlite3_file* f) {
      int rc = Real(f)->pMethods->xClose(Real(f));
      f->pMethods = nullptr;
      return rc;
    },
    [](sqlite3_file* f, void* b, int n, sqlite3_int64 o) {
      return Real(f)->pMethods->xRead(Real(f), b, n, o);
    },
    [](sqlite3_file* f, const void* b, int n, sqlite3_int64 o) {
      return Real(f)->pMethods->xWrite(Real(f), b, n, o);
    },
    [](sqlite3_file* f, sqlite3_int64 size) { return Real(f)->pMethods->xTruncate(Real(f), size); },
    [](sqlite3_file* f, int flags) {
      std::this_thread::sleep_for(50ms);
      return Real(f)->pMethods->xSync(Real(f), flags);
    },
    [](sqlite3_file* f, sqlite3_int64* size) {
      return Real(f)->pMethods->xFileSize(Real(f), size);
    },
    [](sqlite3_file* f, int lock) { return Real(f)->pMethods->xLock(Real(f), lock); },
    [](sqlite3_file* f, int lock) { return Real(f)->pMethods->xUnlock(Real(f), lock); },
    [](sqlite3_file* f, int* out) { return Real(f)->pMethods->xCheckReservedLock(Real(f), out); },
    [](sqlite3_file* f, int op, void* arg) {
      return Real(f)->pMethods->xFileControl(Real(f), op, arg);
    },
    [](sqlite3_file* f) { return Real(f)->pMethods->xSectorSize(Real(f)); },
    [](sqlite3_file* f) { return Real(f)->pMethods->xDeviceCharacteristics(Real(f)); },
    [](sqlite3_file* f, int page, int size, int extend, void volatile** out) {
      return Real(f)->pMethods->xShmMap(Real(f), page, size, extend, out);
    },
    [](sqlite3_file* f, int offset, int n, int flags) {
      return Real(f)->pMethods->xShmLock(Real(f), offset, n, flags);
    },
    [](sqlite3_file* f) { Real(f)->pMethods->xShmBarrier(Real(f)); },
    [](sqlite3_file* f, int del) { return Real(f)->pMethods->xShmUnmap(Real(f), del); },
    [](sqlite3_file* f, sqlite3_int64 o, int n, void** out) {
      return Real(f)->pMethods->xFetch(Real(f), o, n, out);
    },
    [](sqlite3_file* f, sqlite3_int64 o, void* p) {
      return Real(f)->pMethods->xUnfetch(Real(f), o, p);
    },
};

void RegisterSlowSyncVfs() {
  static sqlite3_vfs vfs = [] {
    sqlite3_vfs* real = sqlite3_vfs_find(nullptr);
    sqlite3_vfs v = *real;
    v.szOsFile = static_cast<int>(sizeof(SlowFile)) + real->szOsFile;
    v.zName = kSlowSyncVfs;
    v.pNext = nullptr;
    v.pAppData = real;
    v.xOpen = [](sqlite3_vfs* self, const char* name, sqlite3_file* f, int flags, int* out) {
      auto* real_vfs = static_cast<sqlite3_vfs*>(self->pAppData);
      auto* slow = reinterpret_cast<SlowFile*>(f);
      slow->real = reinterpret_cast<sqlite3_file*>(slow + 1);
      int rc = real_vfs->xOpen(real_vfs, name, slow->real, flags, out);
      f->pMethods = slow->real->pMethods != nullptr ? &kSlowMethods : nullptr;
      return rc;
    };
    v.xDelete = [](sqlite3_vfs* self, const char* name, int sync) {
      auto* r = static_cast<sqlite3_vfs*>(self->pAppData);
      return r->xDelete(r, name, sync);
    };
    v.xAccess = [](sqlite3_vfs* self, const char* name, int flags, int* out) {
      auto* r = static_cast<sqlite3_vfs*>(self->pAppData);
      return r->xAccess(r, name, flags, out);
    };
    v.xFullPathname = [](sqlite3_vfs* self, const char* name, int n, char* out) {
      auto* r = static_cast<sqlite3_vfs*>(self->pAppData);
      return r->xFullPathname(r, name, n, out);
    };
    return v;
  }();
  static const int registered = sqlite3_vfs_register(&vfs, 0);
  ASSERT_EQ(registered, SQLITE_OK);
}

TEST(ChangeDetectorTest, WakesOnAWriteByAnotherProcessLongBeforeTheTimeout) {
  std::string path =
      sqlite::testing::NewDatabase("detect", "PRAGMA journal_mode=WAL; CREATE TABLE t (x);");
  auto detector = ChangeDetector::Open(path);
  ASSERT_TRUE(detector.ok()) << detector.status();
  // Quiet database: the wait runs out.
  while ((*detector)->Wait(10ms) != Wakeup::kTimeout) {
  }
  EXPECT_EQ((*detector)->Wait(50ms), Wakeup::kTimeout);

  std::thread writer(
      [&] { ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "INSERT INTO t VALUES (1);").ok()); });
  auto start = std::chrono::steady_clock::now();
  Wakeup w = (*detector)->Wait(30s);
  auto waited = std::chrono::steady_clock::now() - start;
  writer.join();
  EXPECT_EQ(w, Wakeup::kFileEvent);
  EXPECT_LT(waited, 20s);  // Woken by the event, not by the 30 s timeout.
}

TEST(ChangeDetectorTest, DataVersionCatchesCommitsWhenFileEventsAreLost) {
  std::string path =
      sqlite::testing::NewDatabase("detect-dv", "PRAGMA journal_mode=WAL; CREATE TABLE t (x);");
  // No file events, as on some container file systems: the poll still notices.
  auto detector = ChangeDetector::Open(path, {.file_events = false});
  ASSERT_TRUE(detector.ok());
  EXPECT_EQ((*detector)->Wait(1ms), Wakeup::kTimeout);  // Learns the current data_version.
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "INSERT INTO t VALUES (1);").ok());
  EXPECT_EQ((*detector)->Wait(1ms), Wakeup::kDataVersion);
  EXPECT_EQ((*detector)->Wait(1ms), Wakeup::kTimeout);
}

// Regression: a lone write on an idle database reached the other nodes only after the 200 ms
// safety-net poll. Its WAL write woke the detector before the commit was visible; nothing woke
// it again when the commit was published.
TEST(ChangeDetectorTest, ACommitPublishedAfterItsFileEventsIsNoticedWithoutWaitingForThePoll) {
  RegisterSlowSyncVfs();
  std::string path =
      sqlite::testing::NewDatabase("detect-slow", "PRAGMA journal_mode=WAL; CREATE TABLE t (x);");
  auto detector = ChangeDetector::Open(path);
  ASSERT_TRUE(detector.ok());
  while ((*detector)->Wait(10ms) != Wakeup::kTimeout) {
  }
  sqlite3* writer = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &writer, SQLITE_OPEN_READWRITE, kSlowSyncVfs), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(writer, "PRAGMA synchronous=FULL", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &reader, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  auto count = [&] {
    sqlite3_stmt* stmt = nullptr;
    int64_t n = -1;
    if (sqlite3_prepare_v2(reader, "SELECT count(*) FROM t", -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      n = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
    return n;
  };

  std::chrono::steady_clock::time_point committed;
  std::thread write([&] {
    EXPECT_EQ(sqlite3_exec(writer, "INSERT INTO t VALUES (1)", nullptr, nullptr, nullptr),
              SQLITE_OK);
    committed = std::chrono::steady_clock::now();
  });
  // As the pump does: wait, look, wait again while nothing is there. The commit must be
  // noticed by a wakeup, not by the end of a 3 s wait.
  const auto start = std::chrono::steady_clock::now();
  Wakeup w = Wakeup::kTimeout;
  while (count() != 1 && std::chrono::steady_clock::now() - start < 10s) w = (*detector)->Wait(3s);
  const auto seen = std::chrono::steady_clock::now();
  write.join();
  EXPECT_EQ(count(), 1);
  EXPECT_EQ(w, Wakeup::kFileEvent);
  EXPECT_LT(seen - committed, 1s) << "noticed by the end of a wait, not by a wakeup";
  sqlite3_close(reader);
  sqlite3_close(writer);
}

// Stands in for the applier's rounds: open between BEGIN IMMEDIATE and COMMIT.
class FakeOwnWrites : public OwnWrites {
 public:
  void Set(bool writing) {
    {
      std::lock_guard<std::mutex> l(mu_);
      writing_ = writing;
    }
    cv_.notify_all();
  }
  bool AwaitEnd(std::chrono::microseconds timeout) override {
    std::unique_lock<std::mutex> l(mu_);
    if (!writing_) return false;
    cv_.wait_for(l, timeout, [this] { return !writing_; });
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool writing_ = false;
};

// Data_version checks while marmot's own transaction writes WAL pages for 300 ms, with or without
// the detector knowing about it; the Wait must return once that transaction committed.
int64_t ChecksDuringAnOwnTransaction(bool tell_detector) {
  std::string path =
      sqlite::testing::NewDatabase("detect-own", "PRAGMA journal_mode=WAL; CREATE TABLE t (x);");
  auto detector = ChangeDetector::Open(path);
  EXPECT_TRUE(detector.ok());
  FakeOwnWrites own;
  if (tell_detector) (*detector)->set_own_writes(&own);
  while ((*detector)->Wait(10ms) != Wakeup::kTimeout) {
  }
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  // A tiny page cache: the transaction's pages go to the WAL as it runs, one file event each.
  EXPECT_EQ(sqlite3_exec(db, "PRAGMA cache_size = 5", nullptr, nullptr, nullptr), SQLITE_OK);
  std::chrono::steady_clock::time_point committed;
  std::thread writer([&] {
    EXPECT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
    own.Set(true);
    for (int i = 0; i < 10; ++i) {
      EXPECT_EQ(sqlite3_exec(
                    db,
                    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 20) "
                    "INSERT INTO t SELECT randomblob(1000) FROM s",
                    nullptr, nullptr, nullptr),
                SQLITE_OK)
          << sqlite3_errmsg(db);
      std::this_thread::sleep_for(30ms);
    }
    EXPECT_EQ(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
    committed = std::chrono::steady_clock::now();
    own.Set(false);
  });
  const int64_t before = (*detector)->checks();
  Wakeup w;
  do {
    w = (*detector)->Wait(5s);
  } while (w == Wakeup::kTimeout);
  const auto seen = std::chrono::steady_clock::now();
  writer.join();
  EXPECT_EQ(w, Wakeup::kFileEvent);
  EXPECT_LT(seen - committed, 1s);
  sqlite3_close(db);
  return (*detector)->checks() - before;
}

TEST(ChangeDetectorTest, AnOwnTransactionIsWaitedOutInsteadOfCheckedAfterEveryPage) {
  // Without OwnWrites every burst of pages costs a check (the same run proves it makes events).
  EXPECT_GT(ChecksDuringAnOwnTransaction(false), 5);
  // With it: one check at the first event, one after the commit.
  EXPECT_LE(ChecksDuringAnOwnTransaction(true), 3);
}

TEST(ChangeDetectorTest, WakeEndsAWaitForAnOwnTransaction) {
  std::string path = sqlite::testing::NewDatabase("detect-own-wake",
                                                  "PRAGMA journal_mode=WAL; CREATE TABLE t (x);");
  auto detector = ChangeDetector::Open(path);
  ASSERT_TRUE(detector.ok());
  FakeOwnWrites own;
  (*detector)->set_own_writes(&own);
  while ((*detector)->Wait(10ms) != Wakeup::kTimeout) {
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA cache_size = 5", nullptr, nullptr, nullptr), SQLITE_OK);
  // A long own transaction whose pages reach the WAL (file events) while it runs.
  ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  own.Set(true);
  ASSERT_EQ(
      sqlite3_exec(db,
                   "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 200) "
                   "INSERT INTO t SELECT randomblob(1000) FROM s",
                   nullptr, nullptr, nullptr),
      SQLITE_OK);
  std::thread waker([&] {
    std::this_thread::sleep_for(100ms);
    (*detector)->Wake();
  });
  const auto start = std::chrono::steady_clock::now();
  const Wakeup w = (*detector)->Wait(5s);
  const auto waited = std::chrono::steady_clock::now() - start;
  waker.join();
  EXPECT_EQ(w, Wakeup::kWoken);
  EXPECT_LT(waited, 2s) << "held until the wait's end by the open transaction";
  ASSERT_EQ(sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  own.Set(false);
  sqlite3_close(db);
}

TEST(ChangeDetectorTest, OtherFilesOfTheFolderWakeNothing) {
  // Regression: every write to any file of the folder (the application's log, another node's
  // database in a test setup) cost a wakeup and a data_version check; thousands per second.
  const std::string dir = sqlite::testing::NewTempDir("detect-others");
  const std::string path = dir + "/d.db";
  ASSERT_TRUE(
      sqlite::testing::RunSqliteCli(path, "PRAGMA journal_mode=WAL; CREATE TABLE t (x);").ok());
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(dir + "/other.db", "CREATE TABLE u (x);").ok());
  auto detector = ChangeDetector::Open(path);
  ASSERT_TRUE(detector.ok());
  while ((*detector)->Wait(10ms) != Wakeup::kTimeout) {
  }
  std::atomic<bool> done{false};
  std::thread noise([&] {
    FILE* log = std::fopen((dir + "/app.log").c_str(), "w");
    while (!done.load()) {
      std::fputs("a line of the application's log\n", log);
      std::fflush(log);
      std::this_thread::sleep_for(1ms);
    }
    std::fclose(log);
  });
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(dir + "/other.db", "INSERT INTO u VALUES (1);").ok());
  const int64_t before = (*detector)->checks();
  EXPECT_EQ((*detector)->Wait(300ms), Wakeup::kTimeout);
  EXPECT_LE((*detector)->checks() - before, 1);
  // Its own database is still noticed at once.
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "INSERT INTO t VALUES (1);").ok());
  EXPECT_EQ((*detector)->Wait(5s), Wakeup::kFileEvent);
  done = true;
  noise.join();
}

TEST(ChangeDetectorTest, WakeEndsAWait) {
  std::string path = sqlite::testing::NewDatabase("detect-int", "CREATE TABLE t (x);");
  auto detector = ChangeDetector::Open(path);
  ASSERT_TRUE(detector.ok());
  std::thread t([&] {
    std::this_thread::sleep_for(50ms);
    (*detector)->Wake();
  });
  Wakeup w;
  do {
    w = (*detector)->Wait(30s);
  } while (w == Wakeup::kFileEvent || w == Wakeup::kDataVersion);
  t.join();
  EXPECT_EQ(w, Wakeup::kWoken);
}

}  // namespace
}  // namespace marmot::replicator
