// Snapshot payload files: a writer that fails or is abandoned leaves nothing under the final
// name; a source reads any range and refuses ranges past the end.
#include "raft/host/snapshot_file.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "raft/host/env_fault_injection.h"
#include "raft/host/test_dir.h"

namespace marmot::raft::host {
namespace {

namespace fs = std::filesystem;

TEST(SnapshotFileTest, AFinishedPayloadReadsBackAtAnyOffset) {
  const std::string path = FreshTestDir() + "/p.snap";
  std::string want;
  {
    auto w = SnapshotFileWriter::Create(path);
    ASSERT_TRUE(w.ok()) << w.status();
    // Small writes (buffered) and one larger than the buffer (written through).
    for (int i = 0; i < 1000; ++i) {
      const std::string piece = absl::StrCat("piece ", i, ";");
      want += piece;
      ASSERT_TRUE((*w)->Write(piece).ok());
    }
    const std::string big(3 << 20, 'b');
    want += big;
    ASSERT_TRUE((*w)->Write(big).ok());
    ASSERT_TRUE((*w)->Write("end").ok());
    want += "end";
    EXPECT_EQ((*w)->size(), want.size());
    EXPECT_FALSE(fs::exists(path)) << "named before it is whole";
    ASSERT_TRUE((*w)->Finish().ok());
  }
  ASSERT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto src = FileSnapshotSource::Open(path);
  ASSERT_TRUE(src.ok()) << src.status();
  EXPECT_EQ((*src)->size(), want.size());
  std::string got;
  ASSERT_TRUE((*src)->ReadAt(0, 8, &got).ok());
  EXPECT_EQ(got, "piece 0;");
  ASSERT_TRUE((*src)->ReadAt(want.size() - 3, 3, &got).ok());
  EXPECT_EQ(got, "end");
  EXPECT_TRUE(absl::IsOutOfRange((*src)->ReadAt(want.size() - 2, 3, &got)));
  EXPECT_TRUE(absl::IsOutOfRange((*src)->ReadAt(want.size() + 1, 0, &got)));
  // Deleted while open (a newer snapshot replaced it): still readable through the source.
  fs::remove(path);
  ASSERT_TRUE((*src)->ReadAt(6, 2, &got).ok());
  EXPECT_EQ(got, "0;");
}

TEST(SnapshotFileTest, AnAbandonedPayloadLeavesNoFile) {
  const std::string dir = FreshTestDir();
  {
    auto w = SnapshotFileWriter::Create(dir + "/p.snap");
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Write(std::string(2 << 20, 'x')).ok());
  }
  EXPECT_TRUE(fs::is_empty(dir));
  EXPECT_TRUE(absl::IsNotFound(FileSnapshotSource::Open(dir + "/p.snap").status()));
}

TEST(SnapshotFileTest, APayloadOnADiskThatFillsUpOrFailsToSyncNeverTakesItsName) {
  const std::string dir = FreshTestDir();
  {
    FaultInjectionEnv env;
    env.SetDiskRoom(1 << 20);
    auto w = SnapshotFileWriter::Create(dir + "/p.snap", &env);
    ASSERT_TRUE(w.ok());
    // Buffered: the disk is not touched yet.
    ASSERT_TRUE((*w)->Write(std::string(1000, 'x')).ok());
    // Past the buffer: the write that does not fit fails as a full disk, and stays failed.
    EXPECT_TRUE(absl::IsResourceExhausted((*w)->Write(std::string(2 << 20, 'y'))));
    EXPECT_TRUE(absl::IsResourceExhausted((*w)->Write("z")));
    EXPECT_TRUE(absl::IsResourceExhausted((*w)->Finish()));
  }
  EXPECT_TRUE(fs::is_empty(dir));
  {
    FaultInjectionEnv env;
    env.FailAfter(FaultInjectionEnv::Op::kSync, 0, absl::InternalError("injected EIO"));
    auto w = SnapshotFileWriter::Create(dir + "/p.snap", &env);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Write("payload").ok());
    EXPECT_TRUE(absl::IsInternal((*w)->Finish()));
  }
  EXPECT_TRUE(fs::is_empty(dir));
}

TEST(SnapshotFileTest, NamesStayInTheFolder) {
  EXPECT_TRUE(IsSnapshotFileName("recv-1-2-3-ab.snap"));
  EXPECT_FALSE(IsSnapshotFileName(""));
  EXPECT_FALSE(IsSnapshotFileName("."));
  EXPECT_FALSE(IsSnapshotFileName(".."));
  EXPECT_FALSE(IsSnapshotFileName("../db/CURRENT"));
  EXPECT_FALSE(IsSnapshotFileName("/etc/passwd"));
  EXPECT_FALSE(IsSnapshotFileName(std::string("a\0b", 3)));
}

TEST(SnapshotFileTest, AStringSourceRefusesRangesPastItsEnd) {
  StringSnapshotSource src("abcdef");
  std::string got;
  ASSERT_TRUE(src.ReadAt(2, 3, &got).ok());
  EXPECT_EQ(got, "cde");
  EXPECT_TRUE(absl::IsOutOfRange(src.ReadAt(4, 3, &got)));
  EXPECT_TRUE(absl::IsOutOfRange(src.ReadAt(7, 0, &got)));
}

}  // namespace
}  // namespace marmot::raft::host
