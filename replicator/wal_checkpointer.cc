#include "replicator/wal_checkpointer.h"

#include <glog/logging.h>
#include <sqlite3.h>

namespace marmot::replicator {

absl::StatusOr<std::unique_ptr<WalCheckpointer>> WalCheckpointer::Start(
    const std::string& db_path, std::chrono::milliseconds min_interval) {
  absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(db_path, {.create = false});
  if (!db.ok()) return db.status();
  std::unique_ptr<WalCheckpointer> c(new WalCheckpointer(*std::move(db), min_interval));
  c->thread_ = std::thread([raw = c.get()] { raw->Loop(); });
  return c;
}

WalCheckpointer::~WalCheckpointer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void WalCheckpointer::Notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (notified_) return;
    notified_ = true;
  }
  cv_.notify_all();
}

WalCheckpointer::Counts WalCheckpointer::counts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_;
}

void WalCheckpointer::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stop_ || notified_; });
    if (stop_) return;
    notified_ = false;
    lock.unlock();
    const auto next = std::chrono::steady_clock::now() + min_interval_;
    const bool moved = Checkpoint();
    lock.lock();
    // While the WAL moves, run again without waiting for a Notify: the one who notifies may be
    // busy (a pump shipping a flood), and a WAL left alone for long reaches SQLite's automatic
    // checkpoint, which the application's commit then runs.
    if (moved) notified_ = true;
    // Commits during the interval are taken by the run after it.
    cv_.wait_until(lock, next, [&] { return stop_; });
  }
}

bool WalCheckpointer::Checkpoint() {
  int wal_frames = 0, copied = 0;
  const int rc = sqlite3_wal_checkpoint_v2(db_.raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal_frames,
                                           &copied);
  std::lock_guard<std::mutex> lock(mu_);
  if (rc == SQLITE_BUSY) {
    ++counts_.busy;
    return true;
  }
  if (rc != SQLITE_OK) {
    // Nothing is lost: the application's own automatic checkpoints still run.
    LOG_EVERY_N(WARNING, 1000) << "checkpointing " << db_.path() << " failed: " << sqlite3_errmsg(db_.raw());
    return false;
  }
  // The WAL moved since the last run if it has other frames or other frames copied (a writer
  // that started it over can have as many as before).
  const bool moved = counts_.runs == 0 || wal_frames != counts_.wal_frames || wal_frames - copied != counts_.frames_behind;
  ++counts_.runs;
  counts_.wal_frames = wal_frames;
  counts_.frames_behind = wal_frames - copied;
  return moved;
}

}  // namespace marmot::replicator
