// ManualClockEnv: an Env whose clock moves only when a test says so; files go to the wrapped
// Env. A test drives timeouts, backoffs and delays of the code under test by Advance() instead
// of sleeping, so it neither waits for them nor depends on how fast the machine runs.
//
// - MonotonicNow() and WallNow() start at the given times and move together, by Advance() and
//   by SleepFor() only.
// - SleepFor(d) moves the clock by d and returns at once: a thread that sleeps lets that much
//   time pass for everyone (what a sleeping loop means to wait for has then happened).
// - WaitUntil blocks until its condition holds or an Advance() reaches the deadline; a waiter
//   notices an Advance at once, or within a millisecond of real time at the latest.
#ifndef MARMOT_RAFT_HOST_ENV_MANUAL_CLOCK_H_
#define MARMOT_RAFT_HOST_ENV_MANUAL_CLOCK_H_

#include <condition_variable>
#include <mutex>
#include <set>

#include "absl/time/time.h"
#include "raft/host/env.h"

namespace marmot::raft::host {

class ManualClockEnv : public EnvWrapper {
 public:
  // `files` (Env::Default() if null) serves every file operation and must outlive this.
  explicit ManualClockEnv(Env* files = nullptr,
                          absl::Time monotonic_start = absl::UnixEpoch() + absl::Hours(1),
                          absl::Time wall_start = absl::FromUnixSeconds(1'800'000'000));

  // Moves the clock forward by `d` (>= 0) and wakes the threads waiting on it.
  void Advance(absl::Duration d);
  // Blocks, for at most `timeout` of real time, until a thread waits on this clock with
  // `deadline` exactly (WaitUntil): a test knows then that the code under test is parked on the
  // clock before it advances it. False on timeout.
  bool AwaitWaiter(absl::Time deadline, absl::Duration timeout = absl::Seconds(10));

  absl::Time MonotonicNow() override;
  absl::Time WallNow() override;
  void SleepFor(absl::Duration d) override;
  bool WaitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                 absl::Time deadline, absl::FunctionRef<bool()> done) override;

 private:
  mutable std::mutex mu_;
  absl::Duration elapsed_ = absl::ZeroDuration();  // under mu_
  const absl::Time monotonic_start_;
  const absl::Time wall_start_;
  // The condition variables of the threads in a timed WaitUntil, notified at every Advance, and
  // their deadlines.
  std::multiset<std::condition_variable*> waiting_;
  std::multiset<absl::Time> deadlines_;
  std::condition_variable waiters_changed_;
};

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_ENV_MANUAL_CLOCK_H_
