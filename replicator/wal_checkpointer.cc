#include "replicator/wal_checkpointer.h"

#include <glog/logging.h>
#include <sqlite3.h>

#include <cstring>

namespace marmot::replicator {
namespace {

// The WAL-index header at the start of the -shm file (https://www.sqlite.org/walformat.html),
// in the machine's byte order: two copies of a 48-byte header, then the checkpoint information.
// SQLite maps the file in regions of 32 KiB; the header is at the start of the first.
constexpr int kShmRegionSize = 32768;
constexpr size_t kShmPrefix = 136;
constexpr size_t kVersionAt = 0;    // u32 iVersion, 3007000
constexpr size_t kChangeAt = 8;     // u32 iChange: counts write transactions
constexpr size_t kIsInitAt = 12;    // u8 isInit
constexpr size_t kMaxFrameAt = 16;  // u32 mxFrame: the last valid frame
constexpr size_t kBackfillAt = 96;  // u32 nBackfill: frames copied into the database
constexpr uint32_t kWalIndexVersion = 3007000;

uint32_t U32At(const unsigned char* p, size_t at) {
  uint32_t v;
  std::memcpy(&v, p + at, sizeof v);
  return v;
}

}  // namespace

absl::StatusOr<std::unique_ptr<WalCheckpointer>> WalCheckpointer::Start(const std::string& db_path,
                                                                        Options options) {
  absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(db_path, {.create = false});
  if (!db.ok()) return db.status();
  std::unique_ptr<WalCheckpointer> c(new WalCheckpointer(*std::move(db), options));
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

std::optional<WalCheckpointer::WalIndex> WalCheckpointer::ReadWalIndex() {
  // The connection's own mapping of the -shm file, through its VFS (as SQLite's WAL code maps
  // it): no descriptor of ours on the file (see the header for why).
  sqlite3_file* file = nullptr;
  if (sqlite3_file_control(db_.raw(), "main", SQLITE_FCNTL_FILE_POINTER, &file) != SQLITE_OK ||
      file == nullptr || file->pMethods == nullptr || file->pMethods->iVersion < 2) {
    return std::nullopt;
  }
  volatile void* region = nullptr;
  const int rc = file->pMethods->xShmMap(file, 0, kShmRegionSize, 0, &region);
  if (rc != SQLITE_OK || region == nullptr) return std::nullopt;
  unsigned char header[kShmPrefix];
  const volatile unsigned char* shm = static_cast<const volatile unsigned char*>(region);
  for (size_t i = 0; i < kShmPrefix; ++i) header[i] = shm[i];
  if (U32At(header, kVersionAt) != kWalIndexVersion || header[kIsInitAt] != 1) return std::nullopt;
  const uint32_t max_frame = U32At(header, kMaxFrameAt), backfill = U32At(header, kBackfillAt);
  return WalIndex{.change = U32At(header, kChangeAt),
                  .pending = max_frame >= backfill ? max_frame - backfill : max_frame};
}

void WalCheckpointer::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  std::optional<WalIndex> last;
  while (true) {
    cv_.wait(lock, [&] { return stop_ || notified_; });
    if (stop_) return;
    notified_ = false;
    lock.unlock();
    const auto next = std::chrono::steady_clock::now() + options_.min_interval;
    std::optional<WalIndex> now = ReadWalIndex();
    bool moved;
    if (now.has_value()) {
      moved = !last.has_value() || now->change != last->change || now->pending != last->pending;
      if (now->pending >= options_.min_pages) {
        Checkpoint();
        now = ReadWalIndex();
      }
    } else {
      // No header to look at: checkpoint at every Notify; the WAL moved if the run saw it move.
      const Counts before = counts();
      Checkpoint();
      const Counts after = counts();
      moved = after.wal_frames != before.wal_frames || after.frames_behind != before.frames_behind;
    }
    last = now;
    lock.lock();
    // While the WAL moves, look again without waiting for a Notify: the one who notifies may be
    // busy (a pump shipping a flood), and a WAL left alone for long reaches SQLite's automatic
    // checkpoint, which the application's commit then runs.
    if (moved) notified_ = true;
    cv_.wait_until(lock, next, [&] { return stop_; });
  }
}

void WalCheckpointer::Checkpoint() {
  int wal_frames = 0, copied = 0;
  const int rc = sqlite3_wal_checkpoint_v2(db_.raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                           &wal_frames, &copied);
  std::lock_guard<std::mutex> lock(mu_);
  if (rc == SQLITE_BUSY) {
    ++counts_.busy;
    return;
  }
  if (rc != SQLITE_OK) {
    // Nothing is lost: the application's own automatic checkpoints still run.
    LOG_EVERY_N(WARNING, 1000) << "checkpointing " << db_.path()
                               << " failed: " << sqlite3_errmsg(db_.raw());
    return;
  }
  ++counts_.runs;
  counts_.wal_frames = wal_frames;
  counts_.frames_behind = wal_frames - copied;
}

}  // namespace marmot::replicator
