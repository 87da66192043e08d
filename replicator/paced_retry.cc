#include "replicator/paced_retry.h"

#include "absl/strings/str_cat.h"

namespace marmot::replicator {

absl::Status PacedRetry::Step() {
  if (retry_.done()) return absl::OkStatus();
  absl::Status s = writer_.Run([] { return std::string("retrying dead letters"); },
                               [&](ChangeApplier& applier) {
                                 const absl::Time end = env_.MonotonicNow() + pacing_.step_time;
                                 return applier.RetryDeadLetters(
                                     retry_, [&] { return env_.MonotonicNow() < end; });
                               });
  next_step_at_ = env_.MonotonicNow() + pacing_.pause;
  return s;
}

absl::StatusOr<RetryResult> PacedRetry::Run(absl::FunctionRef<bool()> stop) {
  while (!retry_.done()) {
    if (stop()) {
      return absl::CancelledError(absl::StrCat("stopping; retried so far: ", result().applied,
                                               " applied, ", result().still_failing,
                                               " still failing"));
    }
    const absl::Time now = env_.MonotonicNow();
    if (now < next_step_at_) env_.SleepFor(next_step_at_ - now);
    if (absl::Status s = Step(); !s.ok()) return s;
  }
  return result();
}

}  // namespace marmot::replicator
