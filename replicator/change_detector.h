// Notices that the database may have changed, within milliseconds and without busy polling.
//
// Two sources: inotify events for the database file and its `-wal` and `-shm` files (watched
// through their folder, since SQLite creates and deletes the side files), and, as a safety net
// for file systems and containers that lose file events, `PRAGMA data_version` polled on a short
// timer. `Wait` returns as soon as either says "changed", or when the timer ends, or on
// Wake().
#ifndef MARMOT_REPLICATOR_CHANGE_DETECTOR_H_
#define MARMOT_REPLICATOR_CHANGE_DETECTOR_H_

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "sqlite/database.h"

namespace marmot::replicator {

class ChangeDetector {
 public:
  static absl::StatusOr<std::unique_ptr<ChangeDetector>> Open(const std::string& db_path);
  ~ChangeDetector();

  enum class Wakeup { kFileEvent, kDataVersion, kTimeout, kWoken };

  // Blocks up to `max_wait` for a sign of change. The data_version safety net is checked once
  // per call that saw no file event, so max_wait is how late a change that raised no file event
  // is noticed.
  Wakeup Wait(std::chrono::milliseconds max_wait);

  // Makes the current or next Wait return kWoken. Safe from any thread.
  void Wake();

 private:
  ChangeDetector(sqlite::Database db, std::string base_name, int inotify_fd, int event_fd)
      : db_(std::move(db)), base_name_(std::move(base_name)), inotify_fd_(inotify_fd), event_fd_(event_fd) {}
  bool DrainFileEvents();

  sqlite::Database db_;  // Only for PRAGMA data_version.
  std::string base_name_;
  int inotify_fd_;
  int event_fd_;
  int64_t data_version_ = -1;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_CHANGE_DETECTOR_H_
