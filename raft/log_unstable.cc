#include "raft/log_unstable.h"

#include "glog/logging.h"

namespace marmot::raft {

std::optional<uint64_t> UnstableLog::MaybeFirstIndex() const {
  if (snapshot_) return snapshot_->metadata().index() + 1;
  return std::nullopt;
}

std::optional<uint64_t> UnstableLog::MaybeLastIndex() const {
  if (!entries_.empty()) return offset_ + entries_.size() - 1;
  if (snapshot_) return snapshot_->metadata().index();
  return std::nullopt;
}

std::optional<uint64_t> UnstableLog::MaybeTerm(uint64_t i) const {
  if (i < offset_) {
    if (snapshot_ && snapshot_->metadata().index() == i) return snapshot_->metadata().term();
    return std::nullopt;
  }
  auto last = MaybeLastIndex();
  if (!last || i > *last) return std::nullopt;
  if (entries_.empty()) return std::nullopt;  // only a snapshot, and i != its index
  return entries_[i - offset_].term();
}

void UnstableLog::StableTo(uint64_t i, uint64_t t) {
  auto gt = MaybeTerm(i);
  if (!gt || i < offset_) return;
  // Only if the entry at i is still the one that was persisted: a leader may have replaced
  // it while the host was writing.
  if (*gt != t) return;
  entries_.erase(entries_.begin(), entries_.begin() + (i + 1 - offset_));
  offset_ = i + 1;
}

void UnstableLog::StableSnapTo(uint64_t i) {
  if (snapshot_ && snapshot_->metadata().index() == i) snapshot_.reset();
}

void UnstableLog::Restore(const v1::Snapshot& s) {
  offset_ = s.metadata().index() + 1;
  entries_.clear();
  snapshot_ = s;
}

void UnstableLog::TruncateAndAppend(std::vector<v1::Entry> entries) {
  if (entries.empty()) return;
  const uint64_t after = entries.front().index();
  if (after == offset_ + entries_.size()) {
    // Directly extends the held entries.
    if (entries_.empty()) {
      entries_ = std::move(entries);
      return;
    }
    entries_.reserve(entries_.size() + entries.size());
    for (auto& e : entries) entries_.push_back(std::move(e));
  } else if (after <= offset_) {
    // Replaces everything held (and diverges from storage at `after`; the host truncates there).
    offset_ = after;
    entries_ = std::move(entries);
  } else {
    // Keeps [offset_, after), then appends.
    entries_.resize(after - offset_);
    for (auto& e : entries) entries_.push_back(std::move(e));
  }
}

void UnstableLog::Slice(uint64_t lo, uint64_t hi, std::vector<v1::Entry>* out) const {
  CHECK(lo <= hi && lo >= offset_ && hi <= offset_ + entries_.size())
      << "unstable.slice[" << lo << "," << hi << ") out of bound [" << offset_ << ","
      << offset_ + entries_.size() << "]";
  out->insert(out->end(), entries_.begin() + (lo - offset_), entries_.begin() + (hi - offset_));
}

}  // namespace marmot::raft
