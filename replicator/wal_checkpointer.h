// Copies the database's WAL back into the database file in the background, so that the
// application's commits seldom have to.
//
// In WAL mode SQLite makes the commit that leaves 1,000 or more pages in the WAL copy them into the
// database and sync it (the automatic checkpoint), on the committing connection: an application
// writing steadily pays for every page twice, and with capture triggers the WAL takes each row
// twice (the row and its change-log row). Marmot already wakes at every commit to ship its
// changes; told so (Notify), this unit looks at how many WAL pages are not in the database yet
// and, from `min_pages` of them, runs a PASSIVE checkpoint on its own connection and thread.
// Once everything is copied, the next writer starts the WAL over from its beginning, so under a
// flood the WAL rarely reaches SQLite's threshold and the application's commits only append.
//
// Each checkpoint that copies pages syncs the database file. On a disk where a sync takes
// milliseconds, checkpointing after every small commit (1,000 single-row writes a second)
// competed with the syncs of the Raft log and raised replication latency by half; `min_pages`
// keeps small commits to one checkpoint per `min_pages` pages.
//
// The count comes from the WAL-index header in the `-shm` file (mxFrame and nBackfill, SQLite's
// documented WAL-index format, read without locks: a hint, checked by the checkpoint itself).
// When that header cannot be read the unit checkpoints at every Notify instead. The header is
// read through the unit's own connection's mapping of the file (the VFS's xShmMap), never
// through a descriptor of its own: closing any descriptor of a file drops every POSIX lock the
// process holds on that file, SQLite's included. Closed while the applier's transaction is open
// (marmot stops the unit before the Raft host), it would release the WAL write lock under that
// transaction, the application would write into the WAL beside it, and the database would be
// corrupt ("database disk image is malformed").
//
// A PASSIVE checkpoint never waits for and never blocks readers or writers: it copies what no open
// read transaction still needs and leaves the rest for the next run. It changes no data, so it is
// safe at any moment, including a crash halfway. The WAL is looked at most once per
// `min_interval`, after a Notify and then for as long as it keeps changing: an idle node does
// nothing.
#ifndef MARMOT_REPLICATOR_WAL_CHECKPOINTER_H_
#define MARMOT_REPLICATOR_WAL_CHECKPOINTER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "sqlite/database.h"

namespace marmot::replicator {

class WalCheckpointer {
 public:
  struct Options {
    // Checkpoint once this many WAL pages are not in the database file yet. 1: at every change.
    int64_t min_pages = 1;
    // How often the WAL is looked at while it changes.
    std::chrono::milliseconds min_interval{1};
  };
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
                                                                Options options);
  // Stops the thread (waiting for a checkpoint in progress) and closes the connection.
  ~WalCheckpointer();

  // A commit may have added frames to the WAL: look at it as soon as `min_interval` allows.
  // Cheap and safe from any thread; notifications before the next look count once.
  void Notify();

  Counts counts() const;

 private:
  WalCheckpointer(sqlite::Database db, Options options) : db_(std::move(db)), options_(options) {}
  struct WalIndex {
    uint32_t change = 0;  // Counts write transactions.
    int64_t pending = 0;  // Frames not copied into the database yet.
  };
  void Loop();
  // From the WAL-index header; nullopt when it cannot be read.
  std::optional<WalIndex> ReadWalIndex();
  void Checkpoint();

  sqlite::Database db_;  // Used by the thread only.
  const Options options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool notified_ = false;  // Guarded by mu_.
  bool stop_ = false;      // Guarded by mu_.
  Counts counts_;          // Guarded by mu_.
  std::thread thread_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_WAL_CHECKPOINTER_H_
