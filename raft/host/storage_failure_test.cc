// The line and the exit code a process ends with when its raft folder stops taking writes.
#include "raft/host/storage_failure.h"

#include "gtest/gtest.h"

namespace marmot::raft::host {
namespace {

TEST(StorageFailureTest, FullDiskLineNamesTheCauseTheFolderAndWhatToDo) {
  const absl::Status cause = absl::ResourceExhaustedError(
      "commit raft write batch: IO error: No space left on device: While appending to file: "
      "/var/raft/db/000004.log: No space left on device");
  EXPECT_EQ(StorageFailureMessage(3, "/var/raft", "log write", cause),
            "[node 3] raft log write failed: No space left on device (the disk of raft folder "
            "/var/raft is full); exiting; nothing acknowledged is lost, restart after freeing "
            "space (commit raft write batch: IO error: No space left on device: While appending "
            "to file: /var/raft/db/000004.log: No space left on device)");
}

TEST(StorageFailureTest, OtherErrorsAreNamedAsTheyCame) {
  const std::string line = StorageFailureMessage(
      1, "/var/raft", "snapshot write", absl::InternalError("fsync /var/raft/x.tmp: I/O error"));
  EXPECT_EQ(line,
            "[node 1] raft snapshot write failed: INTERNAL: fsync /var/raft/x.tmp: I/O error; "
            "exiting; nothing acknowledged is lost, restart once the disk of raft folder "
            "/var/raft works again");
}

TEST(StorageFailureDeathTest, ExitsWithItsOwnCodeAndOneLineNotAnAbort) {
  EXPECT_EXIT(ExitOnStorageFailure(1, "/var/raft", "log write",
                                   absl::ResourceExhaustedError("No space left on device")),
              ::testing::ExitedWithCode(kStorageFailureExitCode),
              "raft log write failed: No space left on device \\(the disk of raft folder "
              "/var/raft is full\\)");
}

}  // namespace
}  // namespace marmot::raft::host
