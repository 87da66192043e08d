#include "replicator/change_detector.h"

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using namespace std::chrono_literals;
using Wakeup = ChangeDetector::Wakeup;

TEST(ChangeDetectorTest, WakesOnAWriteByAnotherProcessLongBeforeTheTimeout) {
  std::string path = sqlite::testing::NewTempDir("detect") + "/d.db";
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "PRAGMA journal_mode=WAL; CREATE TABLE t (x);").ok());
  auto detector = ChangeDetector::Open(path);
  ASSERT_TRUE(detector.ok()) << detector.status();
  // Quiet database: the wait runs out.
  while ((*detector)->Wait(10ms) != Wakeup::kTimeout) {
  }
  EXPECT_EQ((*detector)->Wait(50ms), Wakeup::kTimeout);

  std::thread writer([&] { ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "INSERT INTO t VALUES (1);").ok()); });
  auto start = std::chrono::steady_clock::now();
  Wakeup w = (*detector)->Wait(30s);
  auto waited = std::chrono::steady_clock::now() - start;
  writer.join();
  EXPECT_EQ(w, Wakeup::kFileEvent);
  EXPECT_LT(waited, 20s);  // Woken by the event, not by the 30 s timeout.
}

TEST(ChangeDetectorTest, DataVersionCatchesCommitsWhenFileEventsAreLost) {
  std::string path = sqlite::testing::NewTempDir("detect-dv") + "/d.db";
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "PRAGMA journal_mode=WAL; CREATE TABLE t (x);").ok());
  auto detector = ChangeDetector::Open(path);
  ASSERT_TRUE(detector.ok());
  (*detector)->Wait(1ms);  // Learns the current data_version.
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "INSERT INTO t VALUES (1);").ok());
  // Drop the file events, as some container file systems do; the poll still notices.
  Wakeup w;
  do {
    w = (*detector)->Wait(1ms);
  } while (w == Wakeup::kFileEvent);
  EXPECT_EQ(w, Wakeup::kDataVersion);
}

TEST(ChangeDetectorTest, WakeEndsAWait) {
  std::string path = sqlite::testing::NewTempDir("detect-int") + "/d.db";
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(path, "CREATE TABLE t (x);").ok());
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
