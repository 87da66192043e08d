#include "raft/host/env_fault_injection.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace marmot::raft::host {

// A file of the target Env whose calls pass through the faults first.
class FaultInjectionEnv::File : public WritableFile {
 public:
  File(FaultInjectionEnv* env, std::unique_ptr<WritableFile> file, std::string path)
      : env_(env), file_(std::move(file)), path_(std::move(path)) {}

  absl::Status Append(absl::string_view data) override {
    if (absl::Status s = env_->Check(Op::kAppend); !s.ok()) return s;
    const uint64_t fits = env_->TakeRoom(data.size());
    if (absl::Status s = file_->Append(data.substr(0, fits)); !s.ok()) return s;
    if (fits < data.size()) {
      return absl::ResourceExhaustedError(
          absl::StrCat("write ", path_, ": No space left on device (injected)"));
    }
    return absl::OkStatus();
  }
  absl::Status Sync() override {
    if (absl::Status s = env_->Check(Op::kSync); !s.ok()) return s;
    return file_->Sync();
  }
  absl::Status Close() override {
    if (absl::Status s = env_->Check(Op::kClose); !s.ok()) {
      file_.reset();  // a failed close still closes (POSIX)
      return s;
    }
    return file_->Close();
  }

 private:
  FaultInjectionEnv* const env_;
  std::unique_ptr<WritableFile> file_;
  const std::string path_;
};

FaultInjectionEnv::FaultInjectionEnv(Env* target)
    : EnvWrapper(target != nullptr ? target : Env::Default()) {}

void FaultInjectionEnv::FailAfter(Op op, int successes, absl::Status error) {
  std::lock_guard<std::mutex> l(mu_);
  faults_[op] = {.successes_left = successes, .error = std::move(error)};
}

void FaultInjectionEnv::SetDiskRoom(uint64_t bytes) {
  std::lock_guard<std::mutex> l(mu_);
  room_ = bytes;
}

void FaultInjectionEnv::ClearFaults() {
  std::lock_guard<std::mutex> l(mu_);
  faults_.clear();
  room_.reset();
}

int FaultInjectionEnv::calls(Op op) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = calls_.find(op);
  return it == calls_.end() ? 0 : it->second;
}

absl::Status FaultInjectionEnv::Check(Op op) {
  std::lock_guard<std::mutex> l(mu_);
  ++calls_[op];
  auto it = faults_.find(op);
  if (it == faults_.end()) return absl::OkStatus();
  if (it->second.successes_left > 0) {
    --it->second.successes_left;
    return absl::OkStatus();
  }
  return it->second.error;
}

uint64_t FaultInjectionEnv::TakeRoom(uint64_t n) {
  std::lock_guard<std::mutex> l(mu_);
  if (!room_) return n;
  const uint64_t fits = std::min(n, *room_);
  *room_ -= fits;
  return fits;
}

absl::StatusOr<std::unique_ptr<WritableFile>> FaultInjectionEnv::NewWritableFile(
    const std::string& path, const NewFileOptions& options) {
  if (absl::Status s = Check(Op::kCreate); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<WritableFile>> file = target()->NewWritableFile(path, options);
  if (!file.ok()) return file.status();
  return std::make_unique<File>(this, *std::move(file), path);
}

absl::Status FaultInjectionEnv::RenameFile(const std::string& from, const std::string& to) {
  if (absl::Status s = Check(Op::kRename); !s.ok()) return s;
  return target()->RenameFile(from, to);
}

absl::Status FaultInjectionEnv::RemoveFile(const std::string& path) {
  if (absl::Status s = Check(Op::kRemove); !s.ok()) return s;
  return target()->RemoveFile(path);
}

absl::Status FaultInjectionEnv::SyncFolder(const std::string& dir) {
  if (absl::Status s = Check(Op::kSyncFolder); !s.ok()) return s;
  return target()->SyncFolder(dir);
}

absl::StatusOr<uint64_t> FaultInjectionEnv::FreeDiskBytes(const std::string& dir) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (room_) return *room_;
  }
  return target()->FreeDiskBytes(dir);
}

}  // namespace marmot::raft::host
