// SIGINT and SIGTERM always stop marmot, whatever it is doing.
//
// marmot drains on a stop signal (health NOT_SERVING, leaderships handed away, every thread
// stopped). But starting can take long (capture of a large table, stored snapshots installed)
// and so can a drain (an apply worker finishing a snapshot install): a signal that waited for
// them would let Kubernetes' grace period run out, or leave an operator's Ctrl-C unanswered.
// So a signal that arrives while marmot starts, a second signal, or a drain that outlasts its
// limit ends the process at once. That is as safe as a crash, which marmot must survive anyway:
// SQLite and RocksDB roll back what was not committed, and nothing acknowledged is lost.
#ifndef MARMOT_REPLICATOR_STOP_SIGNALS_H_
#define MARMOT_REPLICATOR_STOP_SIGNALS_H_

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "absl/time/time.h"

namespace marmot::replicator {

class StopSignals {
 public:
  // Ends the process with this exit code, without running destructors.
  using ExitNow = std::function<void(int code)>;

  // SIGINT and SIGTERM must already be blocked in every thread (pthread_sigmask before any
  // thread starts): this object's thread takes them. `exit_now` is _exit unless a test swaps it.
  explicit StopSignals(absl::Duration drain_limit, ExitNow exit_now = nullptr);
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // Startup is over: from now on a signal starts a drain instead of ending the process.
  void Started();
  // Blocks until a stop signal arrives after Started(); returns it. The drain limit runs from
  // then: past it, or on a second signal, the process ends.
  int WaitForStop();
  // The drain finished: nothing ends the process any more.
  void Drained();

 private:
  enum class Phase { kStarting, kRunning, kDraining, kDrained };
  void Watch();

  const absl::Duration drain_limit_;
  const ExitNow exit_now_;
  std::mutex mu_;
  std::condition_variable cv_;
  Phase phase_ = Phase::kStarting;
  int signal_ = 0;
  absl::Time drain_deadline_ = absl::InfiniteFuture();
  bool stopping_ = false;  // the destructor runs
  std::thread watcher_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_STOP_SIGNALS_H_
