// DatabaseLock: one marmot process per database file.
#include "replicator/database_lock.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using ::testing::HasSubstr;

TEST(DatabaseLockTest, ASecondHolderIsRefusedWithTheFirstsPidUntilItReleases) {
  const std::string db = sqlite::testing::NewTempDir("db-lock") + "/app.db";
  {
    absl::StatusOr<DatabaseLock> first = DatabaseLock::Acquire(db);
    ASSERT_TRUE(first.ok()) << first.status();
    // flock is per open file: another process (a child here) is refused.
    const pid_t child = ::fork();
    if (child == 0) {
      absl::StatusOr<DatabaseLock> second = DatabaseLock::Acquire(db);
      const bool refused =
          second.status().code() == absl::StatusCode::kFailedPrecondition &&
          std::string(second.status().message()).find(absl::StrCat("pid ", ::getppid())) !=
              std::string::npos;
      ::_exit(refused ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    // So is a second open file in this process.
    absl::StatusOr<DatabaseLock> again = DatabaseLock::Acquire(db);
    EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(again.status().message()), HasSubstr("stop it first"));
  }
  // Released with its holder.
  EXPECT_TRUE(DatabaseLock::Acquire(db).ok());
}

TEST(DatabaseLockTest, ASymbolicLinkToTheDatabaseMeetsTheSameLock) {
  const std::string dir = sqlite::testing::NewTempDir("db-lock-link");
  const std::string db = dir + "/app.db";
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(db, "CREATE TABLE t (id INTEGER PRIMARY KEY);").ok());
  ASSERT_EQ(::symlink(db.c_str(), (dir + "/link.db").c_str()), 0);
  absl::StatusOr<DatabaseLock> first = DatabaseLock::Acquire(db);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<DatabaseLock> through_link = DatabaseLock::Acquire(dir + "/link.db");
  EXPECT_EQ(through_link.status().code(), absl::StatusCode::kFailedPrecondition)
      << through_link.status();
  EXPECT_THAT(std::string(through_link.status().message()), HasSubstr("stop it first"));
}

}  // namespace
}  // namespace marmot::replicator
