// Env: the real one keeps the promises the host relies on (durable replacement, exclusive
// creation, reads of removed files, bounded waits), and the test Envs behave as their headers
// say: a clock that moves only when told, a disk that fails when told.
#include "raft/host/env.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "raft/host/env_fault_injection.h"
#include "raft/host/env_manual_clock.h"
#include "raft/host/test_dir.h"

namespace marmot::raft::host {
namespace {

namespace fs = std::filesystem;
using Op = FaultInjectionEnv::Op;

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST(EnvTest, ADurableWriteReplacesTheWholeFileAndLeavesNoTemporaryFile) {
  Env* env = Env::Default();
  const std::string dir = FreshTestDir();
  const std::string path = dir + "/f";
  ASSERT_TRUE(WriteFileDurably(env, path, "first content").ok());
  ASSERT_TRUE(WriteFileDurably(env, path, "second").ok());
  EXPECT_EQ(*ReadWholeFile(env, path), "second");
  EXPECT_EQ(*env->FileSize(path), 6u);
  EXPECT_EQ(*env->ListFolder(dir), std::vector<std::string>{"f"});
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(absl::IsNotFound(ReadWholeFile(env, dir + "/none").status()));
  EXPECT_TRUE(absl::IsNotFound(env->ListFolder(dir + "/none").status()));
}

TEST(EnvTest, FilesAreCreatedExclusivelyOrTruncatedAndStayReadableOnceRemoved) {
  Env* env = Env::Default();
  const std::string dir = FreshTestDir();
  auto w = env->NewWritableFile(dir + "/a", {.exclusive = true});
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE((*w)->Append("0123456789").ok());
  ASSERT_TRUE((*w)->Sync().ok());
  ASSERT_TRUE((*w)->Close().ok());
  EXPECT_FALSE((*w)->Append("x").ok()) << "written after Close";
  EXPECT_TRUE(
      absl::IsAlreadyExists(env->NewWritableFile(dir + "/a", {.exclusive = true}).status()));

  auto r = env->NewRandomAccessFile(dir + "/a");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->size(), 10u);
  ASSERT_TRUE(env->RemoveFile(dir + "/a").ok());
  EXPECT_TRUE(absl::IsNotFound(env->RemoveFile(dir + "/a")));
  std::string got;
  ASSERT_TRUE((*r)->Read(3, 4, &got).ok());
  EXPECT_EQ(got, "3456");
  EXPECT_TRUE(absl::IsOutOfRange((*r)->Read(8, 3, &got)));

  ASSERT_TRUE(WriteFileDurably(env, dir + "/b", "long content").ok());
  auto t = env->NewWritableFile(dir + "/b", {});
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE((*t)->Append("new").ok());
  t->reset();  // closed by its destructor
  EXPECT_EQ(*ReadWholeFile(env, dir + "/b"), "new");
  ASSERT_TRUE(env->RenameFile(dir + "/b", dir + "/c").ok());
  EXPECT_EQ(Sorted(*env->ListFolder(dir)), std::vector<std::string>{"c"});
  ASSERT_TRUE(env->SyncFolder(dir).ok());
  EXPECT_GT(*env->FreeDiskBytes(dir), 0u);
}

TEST(EnvTest, TheRealClockWaitsUntilDoneOrTheDeadline) {
  Env* env = Env::Default();
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  {
    std::unique_lock<std::mutex> l(mu);
    const absl::Time start = env->MonotonicNow();
    EXPECT_FALSE(env->WaitFor(l, cv, absl::Milliseconds(30), [&] { return done; }));
    EXPECT_GE(env->MonotonicNow() - start, absl::Milliseconds(30));
  }
  std::thread t([&] {
    env->SleepFor(absl::Milliseconds(10));
    std::lock_guard<std::mutex> l(mu);
    done = true;
    cv.notify_all();
  });
  {
    std::unique_lock<std::mutex> l(mu);
    EXPECT_TRUE(env->WaitUntil(l, cv, absl::InfiniteFuture(), [&] { return done; }));
  }
  t.join();
  EXPECT_LT(absl::AbsDuration(env->WallNow() - absl::Now()), absl::Seconds(1));
}

TEST(EnvTest, AManualClockMovesOnlyWhenTold) {
  ManualClockEnv env;
  const absl::Time t0 = env.MonotonicNow();
  const absl::Time w0 = env.WallNow();
  absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(env.MonotonicNow(), t0);
  env.Advance(absl::Seconds(3));
  env.SleepFor(absl::Seconds(2));  // a sleeper lets the time pass
  EXPECT_EQ(env.MonotonicNow() - t0, absl::Seconds(5));
  EXPECT_EQ(env.WallNow() - w0, absl::Seconds(5));
}

TEST(EnvTest, AWaitOnAManualClockEndsAtItsDeadlineOnlyWhenTheClockGetsThere) {
  ManualClockEnv env;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::atomic<int> result{-1};
  const absl::Time deadline = env.MonotonicNow() + absl::Seconds(10);
  std::thread waiter([&] {
    std::unique_lock<std::mutex> l(mu);
    result = env.WaitUntil(l, cv, deadline, [&] { return done; });
  });
  ASSERT_TRUE(env.AwaitWaiter(deadline));
  env.Advance(absl::Seconds(9));
  absl::SleepFor(absl::Milliseconds(50));  // real time: the waiter would have ended by now
  EXPECT_EQ(result, -1) << "ended before its deadline on the manual clock";
  env.Advance(absl::Seconds(1));
  waiter.join();
  EXPECT_EQ(result, 0);
  EXPECT_FALSE(env.AwaitWaiter(deadline, absl::ZeroDuration()));

  // A waiter whose condition comes true ends without the clock moving.
  std::thread notifier([&] {
    EXPECT_TRUE(env.AwaitWaiter(env.MonotonicNow() + absl::Hours(1)));
    std::lock_guard<std::mutex> l(mu);
    done = true;
    cv.notify_all();
  });
  std::unique_lock<std::mutex> l(mu);
  EXPECT_TRUE(env.WaitFor(l, cv, absl::Hours(1), [&] { return done; }));
  l.unlock();
  notifier.join();
}

TEST(EnvTest, ADiskThatFillsUpKeepsTheOldFileAndNoTemporaryOne) {
  FaultInjectionEnv env;
  const std::string dir = FreshTestDir();
  const std::string path = dir + "/f";
  ASSERT_TRUE(WriteFileDurably(&env, path, "old").ok());
  env.SetDiskRoom(5);
  EXPECT_EQ(*env.FreeDiskBytes(dir), 5u);
  const absl::Status s = WriteFileDurably(&env, path, "more than five bytes");
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_EQ(*ReadWholeFile(&env, path), "old");
  EXPECT_EQ(*env.ListFolder(dir), std::vector<std::string>{"f"});
  EXPECT_EQ(*env.FreeDiskBytes(dir), 0u);
  env.ClearFaults();
  ASSERT_TRUE(WriteFileDurably(&env, path, "more than five bytes").ok());
  EXPECT_EQ(*ReadWholeFile(&env, path), "more than five bytes");
}

TEST(EnvTest, InjectedFaultsFireAfterTheirSuccessesAndStay) {
  FaultInjectionEnv env;
  const std::string dir = FreshTestDir();
  const std::string path = dir + "/f";
  ASSERT_TRUE(WriteFileDurably(&env, path, "old").ok());
  for (Op op : {Op::kCreate, Op::kSync, Op::kClose, Op::kRename}) {
    env.FailAfter(op, 0, absl::InternalError("injected I/O error"));
    EXPECT_TRUE(absl::IsInternal(WriteFileDurably(&env, path, "new")));
    EXPECT_EQ(*ReadWholeFile(&env, path), "old");
    EXPECT_EQ(*env.ListFolder(dir), std::vector<std::string>{"f"});
    env.ClearFaults();
  }
  // The folder's sync comes after the rename: the content is new, the caller told it failed.
  env.FailAfter(Op::kSyncFolder, 0, absl::InternalError("injected"));
  EXPECT_TRUE(absl::IsInternal(WriteFileDurably(&env, path, "new")));
  env.ClearFaults();

  const int appends = env.calls(Op::kAppend);
  env.FailAfter(Op::kAppend, 2, absl::ResourceExhaustedError("injected ENOSPC"));
  auto w = env.NewWritableFile(dir + "/g", {});
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE((*w)->Append("1").ok());
  EXPECT_TRUE((*w)->Append("2").ok());
  EXPECT_TRUE(absl::IsResourceExhausted((*w)->Append("3")));
  EXPECT_TRUE(absl::IsResourceExhausted((*w)->Append("4"))) << "a full disk stays full";
  EXPECT_EQ(env.calls(Op::kAppend), appends + 4);
}

}  // namespace
}  // namespace marmot::raft::host
