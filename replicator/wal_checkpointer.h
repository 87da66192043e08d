// Copies the database's WAL back into the database file in the background, so that the
// application's commits seldom have to.
//
// In WAL mode SQLite makes the commit that leaves 1,000 or more pages in the WAL copy them into the
// database and sync it (the automatic checkpoint), on the committing connection: an application
// writing steadily pays for every page twice, and with capture triggers the WAL takes each row
// twice (the row and its change-log row). Marmot already wakes at every commit to ship its
// changes; told so (Notify), this unit runs a PASSIVE checkpoint on its own connection and
// thread. Once everything is copied, the next writer starts the WAL over from its beginning, so
// the WAL rarely reaches the automatic checkpoint's threshold and the application's commits only
// append to it.
//
// A PASSIVE checkpoint never waits for and never blocks readers or writers: it copies what no open
// read transaction still needs and leaves the rest for the next run. It changes no data, so it is
// safe at any moment, including a crash halfway. Checkpoints run at most once per `min_interval`
// (each one syncs the database file), after a Notify and then for as long as the WAL keeps
// changing between runs: an idle node does nothing.
#ifndef MARMOT_REPLICATOR_WAL_CHECKPOINTER_H_
#define MARMOT_REPLICATOR_WAL_CHECKPOINTER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "sqlite/database.h"

namespace marmot::replicator {

class WalCheckpointer {
 public:
  struct Counts {
    int64_t runs = 0;  // Checkpoints that ran to their end.
    int64_t busy = 0;  // Skipped: another connection was checkpointing.
    // After the last run: frames in the WAL, and of those not yet in the database (an open
    // read transaction holds them back; a reader that never ends makes the WAL grow).
    int64_t wal_frames = 0;
    int64_t frames_behind = 0;
  };

  // Opens its own connection to the WAL-mode database at `db_path` and starts its thread.
  static absl::StatusOr<std::unique_ptr<WalCheckpointer>> Start(const std::string& db_path,
                                                                 std::chrono::milliseconds min_interval);
  // Stops the thread (waiting for a checkpoint in progress) and closes the connection.
  ~WalCheckpointer();

  // A commit may have added frames to the WAL: checkpoint as soon as `min_interval` allows.
  // Cheap and safe from any thread; notifications before the next run count once.
  void Notify();

  Counts counts() const;

 private:
  WalCheckpointer(sqlite::Database db, std::chrono::milliseconds min_interval)
      : db_(std::move(db)), min_interval_(min_interval) {}
  void Loop();
  // Runs one checkpoint; whether the WAL moved since the previous one (or it could not tell).
  bool Checkpoint();

  sqlite::Database db_;  // Used by the thread only.
  const std::chrono::milliseconds min_interval_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool notified_ = false;  // Guarded by mu_.
  bool stop_ = false;      // Guarded by mu_.
  Counts counts_;          // Guarded by mu_.
  std::thread thread_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_WAL_CHECKPOINTER_H_
