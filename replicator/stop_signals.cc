#include "replicator/stop_signals.h"

#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

#include "absl/time/clock.h"
#include "glog/logging.h"

namespace marmot::replicator {

StopSignals::StopSignals(absl::Duration drain_limit, ExitNow exit_now)
    : drain_limit_(drain_limit),
      exit_now_(exit_now != nullptr ? std::move(exit_now)
                                    : ExitNow([](int code) { _exit(code); })) {
  watcher_ = std::thread([this] { Watch(); });
}

StopSignals::~StopSignals() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  // The watcher sleeps until a signal comes: this one, directed at its thread (where SIGTERM is
  // blocked, so it stays pending for the watcher's wait), only wakes it to see stopping_.
  pthread_kill(watcher_.native_handle(), SIGTERM);
  watcher_.join();
}

void StopSignals::Started() {
  std::lock_guard<std::mutex> l(mu_);
  if (phase_ == Phase::kStarting) phase_ = Phase::kRunning;
}

int StopSignals::WaitForStop() {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [this] { return phase_ == Phase::kDraining || phase_ == Phase::kDrained; });
  return signal_;
}

void StopSignals::Drained() {
  std::lock_guard<std::mutex> l(mu_);
  phase_ = Phase::kDrained;
}

void StopSignals::Watch() {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  for (;;) {
    // Without a timer while nothing can be late: an idle marmot does not wake here. The drain
    // deadline is set by this thread, so it is known when the wait starts; the destructor wakes
    // the wait with a signal.
    absl::Time deadline;
    {
      std::lock_guard<std::mutex> l(mu_);
      deadline = phase_ == Phase::kDraining ? drain_deadline_ : absl::InfiniteFuture();
    }
    int sig;
    if (deadline == absl::InfiniteFuture()) {
      sig = sigwaitinfo(&stop, nullptr);
    } else {
      const timespec left =
          absl::ToTimespec(std::max(deadline - absl::Now(), absl::ZeroDuration()));
      sig = sigtimedwait(&stop, nullptr, &left);
    }
    std::unique_lock<std::mutex> l(mu_);
    if (stopping_) return;
    const bool late = phase_ == Phase::kDraining && absl::Now() >= drain_deadline_;
    if (sig <= 0 && !late) continue;
    switch (phase_) {
      case Phase::kStarting:
        LOG(WARNING) << "received " << strsignal(sig)
                     << " while starting: exiting now; nothing committed is lost, the next start "
                        "resumes";
        exit_now_(0);
        return;
      case Phase::kRunning:
        phase_ = Phase::kDraining;
        signal_ = sig;
        drain_deadline_ = absl::Now() + drain_limit_;
        cv_.notify_all();
        break;
      case Phase::kDraining:
        if (late) {
          LOG(WARNING) << "draining took over " << drain_limit_
                       << ": exiting now; nothing committed is lost, the next start resumes";
        } else {
          LOG(WARNING) << "received " << strsignal(sig)
                       << " again while draining: exiting now; nothing committed is lost";
        }
        exit_now_(0);
        return;
      case Phase::kDrained:
        break;  // the process is about to return from main
    }
  }
}

}  // namespace marmot::replicator
