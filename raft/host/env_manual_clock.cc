#include "raft/host/env_manual_clock.h"

#include <chrono>

#include "glog/logging.h"

namespace marmot::raft::host {

ManualClockEnv::ManualClockEnv(Env* files, absl::Time monotonic_start, absl::Time wall_start)
    : EnvWrapper(files != nullptr ? files : Env::Default()),
      monotonic_start_(monotonic_start),
      wall_start_(wall_start) {}

void ManualClockEnv::Advance(absl::Duration d) {
  CHECK_GE(d, absl::ZeroDuration()) << "a clock that goes back";
  std::lock_guard<std::mutex> l(mu_);
  elapsed_ += d;
  for (std::condition_variable* cv : waiting_) cv->notify_all();
}

bool ManualClockEnv::AwaitWaiter(absl::Time deadline, absl::Duration timeout) {
  std::unique_lock<std::mutex> l(mu_);
  return waiters_changed_.wait_for(l, absl::ToChronoNanoseconds(timeout),
                                   [&] { return deadlines_.count(deadline) > 0; });
}

absl::Time ManualClockEnv::MonotonicNow() {
  std::lock_guard<std::mutex> l(mu_);
  return monotonic_start_ + elapsed_;
}

absl::Time ManualClockEnv::WallNow() {
  std::lock_guard<std::mutex> l(mu_);
  return wall_start_ + elapsed_;
}

void ManualClockEnv::SleepFor(absl::Duration d) {
  if (d > absl::ZeroDuration()) Advance(d);
}

bool ManualClockEnv::WaitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                               absl::Time deadline, absl::FunctionRef<bool()> done) {
  if (deadline == absl::InfiniteFuture()) {
    cv.wait(lock, [&] { return done(); });
    return true;
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    waiting_.insert(&cv);
    deadlines_.insert(deadline);
    waiters_changed_.notify_all();
  }
  bool result;
  while (!(result = done()) && MonotonicNow() < deadline) {
    // An Advance between the reading above and this wait notifies no one: the slice bounds
    // how late the waiter notices it.
    cv.wait_for(lock, std::chrono::milliseconds(1));
  }
  std::lock_guard<std::mutex> l(mu_);
  waiting_.erase(waiting_.find(&cv));
  deadlines_.erase(deadlines_.find(deadline));
  return result;
}

}  // namespace marmot::raft::host
