// PacedRetry: a retry of dead letters (DeadLetterRetry) run through the node's DatabaseWriter
// one bounded step at a time, so that retrying many never keeps others from writing. Each step
// is one transaction (ChangeApplier::RetryDeadLetters) that tries dead letters for at most
// `step_time` (and at most DeadLetterRetry::max_per_step()), in a writer turn of its own; the
// next step waits `pause` after it. Between two steps the shards' apply rounds that asked for
// the writer take their turns (turns are handed out in order), and the application, whose
// writers poll for SQLite's write lock while their busy timeout runs, finds it free: SQLite
// queues no one, so a lock taken again at once would keep a polling writer out. Used by the
// replicator for an operator's retry and for the retry after a schema change.
#ifndef MARMOT_REPLICATOR_PACED_RETRY_H_
#define MARMOT_REPLICATOR_PACED_RETRY_H_

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "raft/host/env.h"
#include "replicator/database_writer.h"
#include "replicator/dead_letter_retrier.h"

namespace marmot::replicator {

struct RetryPacing {
  // A step's transaction tries dead letters for at most this long (at least one).
  absl::Duration step_time = absl::Milliseconds(50);
  // The writer and the database are left to others this long between two steps.
  absl::Duration pause = absl::Milliseconds(50);
};

class PacedRetry {
 public:
  // `writer` and `env` (its clock) outlive the retry.
  PacedRetry(DatabaseWriter& writer, raft::host::Env& env, DeadLetterRetry retry,
             RetryPacing pacing = {})
      : writer_(writer), env_(env), retry_(std::move(retry)), pacing_(pacing) {}

  // Runs the next step now (whatever the pause), in a writer turn of its own. A failure of
  // the database is waited out (DatabaseWriter::Run); Cancelled once the writer shuts down;
  // NOT_FOUND, nothing done, at the first step when a selected id does not exist.
  absl::Status Step();
  // Runs every step, each once the pause after the previous one passed, until the retry is
  // done (its totals) or `stop` says so before a step (Cancelled, with what was done so far in
  // the message). Errors as Step's.
  absl::StatusOr<RetryResult> Run(absl::FunctionRef<bool()> stop);

  // When the next step is due (the end of the pause after the last one).
  absl::Time next_step_at() const { return next_step_at_; }
  bool done() const { return retry_.done(); }
  const RetryResult& result() const { return retry_.result(); }

 private:
  DatabaseWriter& writer_;
  raft::host::Env& env_;
  DeadLetterRetry retry_;
  const RetryPacing pacing_;
  absl::Time next_step_at_ = absl::InfinitePast();
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_PACED_RETRY_H_
