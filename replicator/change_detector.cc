#include "replicator/change_detector.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <glog/logging.h>

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
  if (options.file_events &&
      inotify_add_watch(in, dir.c_str(), IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO) < 0) {
    // Not fatal: the data_version poll still notices every commit, only later.
    LOG(WARNING) << "cannot watch " << dir << " for file events (" << std::strerror(errno)
                 << "); falling back to polling";
  }
  int ev = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (ev < 0) {
    close(in);
    return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));
  }
  return std::unique_ptr<ChangeDetector>(
      new ChangeDetector(*std::move(db), path.filename().string(), in, ev));
}

ChangeDetector::~ChangeDetector() {
  close(inotify_fd_);
  close(event_fd_);
}

void ChangeDetector::Wake() {
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
      if (e->len > 0 && !ours) {
        // One event per write syscall (a page of the WAL): compared without allocating.
        const absl::string_view name(e->name);
        const absl::string_view base(base_name_);
        if (absl::StartsWith(name, base)) {
          const absl::string_view rest = name.substr(base.size());
          ours = rest.empty() || rest == "-wal" || rest == "-shm";
        }
      }
      p += sizeof(inotify_event) + e->len;
    }
  }
}

bool ChangeDetector::DataVersionChanged() {
  absl::StatusOr<sqlite::Value> version = db_.QueryKeptValue("PRAGMA data_version");
  if (!version.ok() || version->storage_class() != sqlite::StorageClass::kInteger) return false;
  const bool changed = data_version_ >= 0 && version->integer() != data_version_;
  data_version_ = version->integer();
  return changed;
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
    auto timeout = std::chrono::ceil<microseconds>(std::max(deadline - now, Clock::duration::zero()));
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
      return Wakeup::kWoken;
    }
    const bool file_event = (settling || (ready > 0 && (fds[1].revents & POLLIN))) && DrainFileEvents();
    saw_file_event = saw_file_event || file_event;
    if (DataVersionChanged()) {
      settle_until_ = Clock::time_point();
      return saw_file_event ? Wakeup::kFileEvent : Wakeup::kDataVersion;
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
