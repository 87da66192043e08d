#include "replicator/stop_signals.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace marmot::replicator {
namespace {

using namespace std::chrono_literals;

// Real signals, sent to this process; the fake exit records the code instead of ending it.
class StopSignalsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // As marmot's main does, before any thread starts: only the watcher takes them.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &stop, nullptr), 0);
  }
  StopSignals::ExitNow FakeExit() {
    return [this](int code) {
      exit_code_ = code;
      exits_.fetch_add(1);
    };
  }
  // True once the fake exit ran, within 5 s.
  bool Exited() {
    for (int i = 0; i < 500 && exits_.load() == 0; ++i) std::this_thread::sleep_for(10ms);
    return exits_.load() > 0;
  }
  std::atomic<int> exits_{0};
  int exit_code_ = -1;
};

TEST_F(StopSignalsTest, ASignalWhileStartingEndsTheProcessAtOnce) {
  StopSignals signals(absl::Seconds(60), FakeExit());
  kill(getpid(), SIGTERM);
  EXPECT_TRUE(Exited());
  EXPECT_EQ(exit_code_, 0);
}

TEST_F(StopSignalsTest, ASignalAfterStartingStartsADrainThatEndsNormally) {
  StopSignals signals(absl::Seconds(60), FakeExit());
  signals.Started();
  kill(getpid(), SIGINT);
  EXPECT_EQ(signals.WaitForStop(), SIGINT);
  signals.Drained();
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(exits_.load(), 0);
}

TEST_F(StopSignalsTest, ASecondSignalWhileDrainingEndsTheProcess) {
  StopSignals signals(absl::Seconds(60), FakeExit());
  signals.Started();
  kill(getpid(), SIGTERM);
  EXPECT_EQ(signals.WaitForStop(), SIGTERM);
  EXPECT_EQ(exits_.load(), 0);
  kill(getpid(), SIGTERM);
  EXPECT_TRUE(Exited());
  EXPECT_EQ(exit_code_, 0);
}

TEST_F(StopSignalsTest, ADrainPastItsLimitEndsTheProcess) {
  StopSignals signals(absl::Milliseconds(200), FakeExit());
  signals.Started();
  kill(getpid(), SIGTERM);
  EXPECT_EQ(signals.WaitForStop(), SIGTERM);
  EXPECT_TRUE(Exited());  // never Drained()
  EXPECT_EQ(exits_.load(), 1);
}

}  // namespace
}  // namespace marmot::replicator
