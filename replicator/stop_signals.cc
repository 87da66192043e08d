#include "replicator/stop_signals.h"

#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
  // Waits in short steps: the destructor and the drain deadline are checked between them.
  const timespec step = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
  for (;;) {
    const int sig = sigtimedwait(&stop, nullptr, &step);
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
