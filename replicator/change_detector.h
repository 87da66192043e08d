// Notices that the database may have changed, within milliseconds and without busy polling.
//
// Two sources: inotify events for writes to the database file and its `-wal` file (watched on
// the files, and through their folder for when SQLite creates the WAL anew), and, as a safety net
// for file systems and containers that lose file events, `PRAGMA data_version` polled on a short
// timer. `Wait` returns as soon as a commit of another connection is visible, or when the timer
// ends, or on Wake().
//
// A file event comes before its commit can be seen: a writer appends its frames to the WAL (the
// event), syncs them (with synchronous=FULL, milliseconds on a real disk) and only then
// publishes the commit in the shared-memory index, which raises no event. So an event whose
// commit is not visible yet is followed by data_version checks 0.1, 0.2, 0.4 ... 16, 16 ms
// later for up to 100 ms; waking at the event and then sleeping until the timer would make
// every lone write wait for the safety net.
//
// Marmot's own apply transactions write the same files. While one is open no other connection can
// commit, so its file events announce nothing to ship: given OwnWrites, the detector waits for
// that transaction to end and then checks once, instead of checking after every burst of pages
// (on a follower under load, a wakeup per few WAL pages).
#ifndef MARMOT_REPLICATOR_CHANGE_DETECTOR_H_
#define MARMOT_REPLICATOR_CHANGE_DETECTOR_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sqlite/database.h"

namespace marmot::replicator {

// Marmot's own write transactions on the database: the apply rounds' (DatabaseWriter).
class OwnWrites {
 public:
  virtual ~OwnWrites() = default;
  // Blocks while an own write transaction is open, at most `timeout`. Whether one was open.
  virtual bool AwaitEnd(std::chrono::microseconds timeout) = 0;
};

class ChangeDetector {
 public:
  struct Options {
    // false: no inotify, only the data_version poll (a file system without file events).
    bool file_events = true;
  };
  static absl::StatusOr<std::unique_ptr<ChangeDetector>> Open(const std::string& db_path,
                                                              Options options);
  static absl::StatusOr<std::unique_ptr<ChangeDetector>> Open(const std::string& db_path) {
    return Open(db_path, Options());
  }
  ~ChangeDetector();

  enum class Wakeup { kFileEvent, kDataVersion, kTimeout, kWoken };

  // Blocks up to `max_wait` for a commit of another connection: kFileEvent when file events
  // announced it, kDataVersion when only the poll saw it (file events lost). max_wait is how
  // late a change that raised no file event is noticed.
  Wakeup Wait(std::chrono::milliseconds max_wait);

  // Makes the current or next Wait return kWoken. Safe from any thread.
  void Wake();

  // Set before the first Wait; must outlive the detector. nullptr: none.
  void set_own_writes(OwnWrites* own_writes) { own_writes_ = own_writes; }

  // PRAGMA data_version checks so far: what each wakeup costs besides the wakeup itself.
  int64_t checks() const { return checks_; }

 private:
  ChangeDetector(sqlite::Database db, std::string dir, std::string base_name, int inotify_fd,
                 int event_fd)
      : db_(std::move(db)),
        dir_(std::move(dir)),
        base_name_(std::move(base_name)),
        inotify_fd_(inotify_fd),
        event_fd_(event_fd) {}
  // Watches writes to the database file (suffix "") or its WAL ("-wal").
  void WatchFile(absl::string_view suffix);
  // Reads the pending file events; whether any concerns the database.
  bool DrainFileEvents();
  // Waits until marmot's own transaction ends, the deadline passes or Wake() is called; whether
  // one was open.
  bool AwaitOwnWritesEnd(std::chrono::steady_clock::time_point deadline);
  // Whether PRAGMA data_version moved since the last check (false at the first).
  bool DataVersionChanged();

  sqlite::Database db_;  // Only for PRAGMA data_version.
  std::string dir_;
  std::string base_name_;
  int inotify_fd_;
  int event_fd_;
  OwnWrites* own_writes_ = nullptr;
  std::atomic<bool> wake_pending_{false};  // Set by Wake() until a Wait returns kWoken.
  int64_t checks_ = 0;
  int64_t data_version_ = -1;
  // After a file event whose commit was not visible: check again every settle_step_ until then.
  std::chrono::steady_clock::time_point settle_until_;
  std::chrono::microseconds settle_step_{100};
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_CHANGE_DETECTOR_H_
