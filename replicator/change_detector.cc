#include "replicator/change_detector.h"

#include <glog/logging.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace marmot::replicator {

absl::StatusOr<std::unique_ptr<ChangeDetector>> ChangeDetector::Open(const std::string& db_path,
                                                                     Options options) {
  absl::StatusOr<sqlite::Database> db = sqlite::Database::Open(db_path, {.read_only = true});
  if (!db.ok()) return db.status();
  std::filesystem::path path(db_path);
  std::string dir = path.has_parent_path() ? path.parent_path().string() : ".";
  int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (in < 0) return absl::InternalError(absl::StrCat("inotify_init1: ", std::strerror(errno)));
  int ev = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (ev < 0) {
    close(in);
    return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));
  }
  std::unique_ptr<ChangeDetector> detector(
      new ChangeDetector(*std::move(db), dir, path.filename().string(), in, ev));
  if (options.file_events) {
    // The folder only for files created or moved in (SQLite creates the -wal file anew); writes
    // are watched on the two files themselves, so that other busy files in the folder (the
    // application's logs, other databases) wake nothing.
    if (inotify_add_watch(in, dir.c_str(), IN_CREATE | IN_MOVED_TO) < 0) {
      // Not fatal: the data_version poll still notices every commit, only later.
      LOG(WARNING) << "cannot watch " << dir << " for file events (" << std::strerror(errno)
                   << "); falling back to polling";
    } else {
      detector->WatchFile("");
      detector->WatchFile("-wal");
    }
  }
  return detector;
}

void ChangeDetector::WatchFile(absl::string_view suffix) {
  // Fails while the file does not exist (marmot's own connection opened at Open() normally
  // creates the WAL): the folder's creation event adds the watch then, as for a file replaced on
  // disk. Adding it again for the same file is harmless.
  const std::string file = absl::StrCat(dir_, "/", base_name_, suffix);
  (void)inotify_add_watch(inotify_fd_, file.c_str(), IN_MODIFY | IN_CLOSE_WRITE);
}

ChangeDetector::~ChangeDetector() {
  close(inotify_fd_);
  close(event_fd_);
}

void ChangeDetector::Wake() {
  wake_pending_.store(true);
  uint64_t one = 1;
  ssize_t n = write(event_fd_, &one, sizeof one);
  (void)n;
}

bool ChangeDetector::DrainFileEvents() {
  alignas(inotify_event) char buf[4096];
  bool ours = false;
  while (true) {
    ssize_t n = read(inotify_fd_, buf, sizeof buf);
    if (n <= 0) return ours;
    for (char* p = buf; p < buf + n;) {
      auto* e = reinterpret_cast<inotify_event*>(p);
      p += sizeof(inotify_event) + e->len;
      if (e->mask & (IN_IGNORED | IN_Q_OVERFLOW)) {
        // A watched file was deleted (its watch went with it), or events were lost: check.
        ours = true;
        continue;
      }
      if (e->len == 0) {
        ours = true;  // A write to the database or its WAL (one event per write syscall).
        continue;
      }
      // Created or moved into the folder: one of ours gets a watch on its writes.
      const absl::string_view name(e->name);
      const absl::string_view base(base_name_);
      if (!absl::StartsWith(name, base)) continue;
      const absl::string_view rest = name.substr(base.size());
      if (rest.empty() || rest == "-wal") {
        WatchFile(rest);
        ours = true;
      }
    }
  }
}

bool ChangeDetector::DataVersionChanged() {
  ++checks_;
  absl::StatusOr<sqlite::Value> version = db_.QueryKeptValue("PRAGMA data_version");
  if (!version.ok() || version->storage_class() != sqlite::StorageClass::kInteger) return false;
  const bool changed = data_version_ >= 0 && version->integer() != data_version_;
  data_version_ = version->integer();
  return changed;
}

bool ChangeDetector::AwaitOwnWritesEnd(std::chrono::steady_clock::time_point deadline) {
  using Clock = std::chrono::steady_clock;
  // In slices, so that a Wake() (a proposal's outcome for the shipper) is not held back by a
  // long transaction: the caller's next poll then sees it.
  constexpr Clock::duration kSlice = std::chrono::milliseconds(2);
  bool was_open = false;
  for (;;) {
    const Clock::duration left = std::max(deadline - Clock::now(), Clock::duration::zero());
    const auto slice = std::chrono::ceil<std::chrono::microseconds>(std::min(left, kSlice));
    if (!own_writes_->AwaitEnd(slice)) return was_open;
    was_open = true;
    if (wake_pending_.load() || left == Clock::duration::zero()) return true;
  }
}

ChangeDetector::Wakeup ChangeDetector::Wait(std::chrono::milliseconds max_wait) {
  using Clock = std::chrono::steady_clock;
  using std::chrono::microseconds;
  constexpr auto kSettle = std::chrono::milliseconds(100);
  constexpr microseconds kFirstSettleStep(100);
  constexpr microseconds kMaxSettleStep(16000);
  const Clock::time_point deadline = Clock::now() + max_wait;
  bool saw_file_event = false;
  for (;;) {
    const Clock::time_point now = Clock::now();
    auto timeout =
        std::chrono::ceil<microseconds>(std::max(deadline - now, Clock::duration::zero()));
    const bool settling = settle_until_ > now;
    if (settling) timeout = std::min(timeout, settle_step_);
    // While settling, file events are not waited for: a commit writes its pages one event each,
    // and waking for every one of them would cost a check each. They are read after the step.
    pollfd fds[2] = {{event_fd_, POLLIN, 0}, {inotify_fd_, POLLIN, 0}};
    const timespec ts{static_cast<time_t>(timeout.count() / 1000000),
                      static_cast<long>(timeout.count() % 1000000 * 1000)};
    const int ready = ppoll(fds, settling ? 1 : 2, &ts, nullptr);
    if (ready > 0 && (fds[0].revents & POLLIN)) {
      uint64_t count;
      ssize_t n = read(event_fd_, &count, sizeof count);
      (void)n;
      wake_pending_.store(false);
      return Wakeup::kWoken;
    }
    const bool file_event =
        (settling || (ready > 0 && (fds[1].revents & POLLIN))) && DrainFileEvents();
    saw_file_event = saw_file_event || file_event;
    // Woken only by another file of the folder: nothing to check.
    if (ready > 0 && !settling && !file_event && Clock::now() < deadline) continue;
    if (DataVersionChanged()) {
      settle_until_ = Clock::time_point();
      return saw_file_event ? Wakeup::kFileEvent : Wakeup::kDataVersion;
    }
    // Nothing new is visible, yet files changed: if marmot's own transaction is open, the events
    // are its writes (a commit of another connection before it would be visible now, and none
    // can happen during it). Its end is what to wait for; then one check.
    if (file_event && own_writes_ != nullptr && AwaitOwnWritesEnd(deadline)) {
      DrainFileEvents();
      if (DataVersionChanged()) {
        settle_until_ = Clock::time_point();
        return Wakeup::kFileEvent;
      }
    }
    if (file_event && !settling) {
      settle_until_ = Clock::now() + kSettle;
      settle_step_ = kFirstSettleStep;
    } else if (settling) {
      // More events while settling keep the window open; the checks still slow down.
      if (file_event) settle_until_ = Clock::now() + kSettle;
      settle_step_ = std::min(settle_step_ * 2, kMaxSettleStep);
    }
    // A poll that ran its full course ends the wait even if the clock says it came back a
    // little early: one data_version check per timeout, not two.
    if ((ready == 0 && !settling) || Clock::now() >= deadline) return Wakeup::kTimeout;
  }
}

}  // namespace marmot::replicator
