#include "raft/host/env.h"

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace marmot::raft::host {

absl::Status WriteFileDurably(Env* env, const std::string& path, absl::string_view data,
                              uint32_t permissions) {
  const std::string tmp = path + ".tmp";
  absl::Status s = [&]() -> absl::Status {
    absl::StatusOr<std::unique_ptr<WritableFile>> file =
        env->NewWritableFile(tmp, {.permissions = permissions});
    if (!file.ok()) return file.status();
    if (absl::Status s = (*file)->Append(data); !s.ok()) return s;
    if (absl::Status s = (*file)->Sync(); !s.ok()) return s;
    if (absl::Status s = (*file)->Close(); !s.ok()) return s;
    return env->RenameFile(tmp, path);
  }();
  if (!s.ok()) {
    env->RemoveFile(tmp).IgnoreError();  // may not exist: the create itself failed
    return s;
  }
  return env->SyncFolder(std::filesystem::path(path).parent_path().string());
}

absl::StatusOr<std::string> ReadWholeFile(Env* env, const std::string& path) {
  absl::StatusOr<std::unique_ptr<RandomAccessFile>> file = env->NewRandomAccessFile(path);
  if (!file.ok()) return file.status();
  std::string out;
  if (absl::Status s = (*file)->Read(0, (*file)->size(), &out); !s.ok()) return s;
  return out;
}

}  // namespace marmot::raft::host
