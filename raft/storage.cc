#include "raft/storage.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "raft/errors.h"

namespace marmot::raft {

MemoryLogStorage::MemoryLogStorage() { entries_.emplace_back(); }

MemoryLogStorage MemoryLogStorage::Bootstrap(const ConfState& conf_state, std::string data) {
  MemoryLogStorage s;
  v1::Snapshot snap;
  snap.mutable_metadata()->set_index(1);
  snap.mutable_metadata()->set_term(1);
  *snap.mutable_metadata()->mutable_conf_state() = conf_state;
  snap.set_data(std::move(data));
  auto applied = s.ApplySnapshot(snap);
  CHECK(applied.ok()) << applied;
  HardState hs;
  hs.set_term(1);
  hs.set_commit(1);
  s.SetHardState(hs);
  return s;
}

absl::StatusOr<PersistedState> MemoryLogStorage::InitialState() const {
  return PersistedState{hard_state_, snapshot_.metadata().conf_state(),
                        snapshot_.metadata().index()};
}

uint64_t MemoryLogStorage::FirstIndex() const { return offset() + 1; }

uint64_t MemoryLogStorage::LastIndex() const { return offset() + entries_.size() - 1; }

absl::StatusOr<std::vector<Entry>> MemoryLogStorage::Entries(uint64_t lo, uint64_t hi,
                                                             uint64_t max_bytes) const {
  if (lo <= offset()) return CompactedError();
  if (hi > LastIndex() + 1) return UnavailableError();
  std::vector<Entry> out;
  out.reserve(hi - lo);
  uint64_t bytes = 0;
  for (uint64_t i = lo; i < hi; ++i) {
    const Entry& e = entries_[i - offset()];
    bytes += EntrySize(e);
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(e);
  }
  return out;
}

absl::StatusOr<uint64_t> MemoryLogStorage::Term(uint64_t i) const {
  if (i < offset()) return CompactedError();
  if (i > LastIndex()) return UnavailableError();
  return entries_[i - offset()].term();
}

absl::StatusOr<v1::Snapshot> MemoryLogStorage::Snapshot() const {
  if (snapshot_unavailable_) return SnapshotTemporarilyUnavailableError();
  return snapshot_;
}

absl::Status MemoryLogStorage::ApplySnapshot(const v1::Snapshot& snapshot) {
  if (snapshot.metadata().index() <= snapshot_.metadata().index()) {
    return SnapshotOutOfDateError();
  }
  snapshot_ = snapshot;
  entries_.clear();
  entries_.emplace_back();
  entries_[0].set_index(snapshot.metadata().index());
  entries_[0].set_term(snapshot.metadata().term());
  return absl::OkStatus();
}

absl::StatusOr<v1::Snapshot> MemoryLogStorage::CreateSnapshot(uint64_t i,
                                                              const ConfState& conf_state,
                                                              std::string data) {
  if (i <= snapshot_.metadata().index()) return SnapshotOutOfDateError();
  if (i > LastIndex()) {
    return absl::InvalidArgumentError(
        absl::StrCat("raft: snapshot index ", i, " is past the last index ", LastIndex()));
  }
  snapshot_.mutable_metadata()->set_index(i);
  snapshot_.mutable_metadata()->set_term(entries_[i - offset()].term());
  *snapshot_.mutable_metadata()->mutable_conf_state() = conf_state;
  snapshot_.set_data(std::move(data));
  return snapshot_;
}

absl::Status MemoryLogStorage::Compact(uint64_t compact_index) {
  if (compact_index <= offset()) return CompactedError();
  if (compact_index > LastIndex()) {
    return absl::InvalidArgumentError(absl::StrCat("raft: compact index ", compact_index,
                                                   " is past the last index ", LastIndex()));
  }
  const uint64_t k = compact_index - offset();
  entries_.erase(entries_.begin(), entries_.begin() + k);
  // entries_[0] becomes the dummy for the compacted prefix: keep only index and term.
  entries_[0].clear_data();
  entries_[0].clear_type();
  return absl::OkStatus();
}

absl::Status MemoryLogStorage::Append(const std::vector<Entry>& entries) {
  std::vector<Entry> copy = entries;
  return Append(std::move(copy));
}

absl::Status MemoryLogStorage::Append(std::vector<Entry>&& entries) {
  if (entries.empty()) return absl::OkStatus();
  for (size_t j = 1; j < entries.size(); ++j) {
    if (entries[j].index() != entries[j - 1].index() + 1) {
      return absl::InvalidArgumentError("raft: appended entries are not consecutive");
    }
  }
  const uint64_t first = FirstIndex();
  const uint64_t last_new = entries.back().index();
  if (last_new < first) return absl::OkStatus();  // all already compacted
  size_t skip = 0;
  if (entries.front().index() < first) skip = first - entries.front().index();
  const uint64_t start = entries[skip].index();
  if (start > LastIndex() + 1) {
    return absl::InvalidArgumentError(absl::StrCat("raft: missing log entries [last: ", LastIndex(),
                                                   ", append at: ", start, "]"));
  }
  // Truncate the suffix from `start` on, then append. The core only hands us entries that
  // either extend the log or replace a suffix that a newer leader overwrote.
  entries_.resize(start - offset());
  for (size_t j = skip; j < entries.size(); ++j) entries_.push_back(std::move(entries[j]));
  return absl::OkStatus();
}

}  // namespace marmot::raft
