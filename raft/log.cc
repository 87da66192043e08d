#include "raft/log.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "raft/errors.h"

namespace marmot::raft {

RaftLog::RaftLog(const LogStorage* storage, uint64_t max_applying_bytes)
    : storage_(storage), max_applying_bytes_(max_applying_bytes) {
  CHECK(storage != nullptr);
  const uint64_t first = storage->FirstIndex();
  const uint64_t last = storage->LastIndex();
  unstable_ = UnstableLog(last + 1);
  // Everything up to the snapshot is committed and applied by definition.
  committed_ = first - 1;
  applied_ = first - 1;
}

uint64_t RaftLog::FirstIndex() const {
  if (auto i = unstable_.MaybeFirstIndex()) return *i;
  return storage_->FirstIndex();
}

uint64_t RaftLog::LastIndex() const {
  if (auto i = unstable_.MaybeLastIndex()) return *i;
  return storage_->LastIndex();
}

uint64_t RaftLog::LastTerm() const {
  auto t = Term(LastIndex());
  CHECK(t.ok()) << "unexpected error getting the last term: " << t.status();
  return *t;
}

absl::StatusOr<uint64_t> RaftLog::Term(uint64_t i) const {
  // The valid range is [index of dummy/snapshot entry, last index].
  const uint64_t dummy = FirstIndex() - 1;
  if (i < dummy) return CompactedError();
  if (i > LastIndex()) return uint64_t{0};
  if (auto t = unstable_.MaybeTerm(i)) return *t;
  auto t = storage_->Term(i);
  if (t.ok()) return *t;
  if (IsCompacted(t.status()) || IsEntryUnavailable(t.status())) return t.status();
  LOG(FATAL) << "storage failed to read term " << i << ": " << t.status();
  return t.status();
}

uint64_t RaftLog::ZeroTermOnError(uint64_t i) const {
  auto t = Term(i);
  return t.ok() ? *t : 0;
}

bool RaftLog::MatchTerm(uint64_t i, uint64_t term) const {
  // Term() answers 0 beyond the log (unknown): an index we do not hold matches nothing, also
  // when a (malformed) message pairs it with term 0.
  if (i > LastIndex()) return false;
  auto t = Term(i);
  return t.ok() && *t == term;
}

std::optional<uint64_t> RaftLog::MaybeAppend(uint64_t index, uint64_t log_term, uint64_t committed,
                                             std::vector<v1::Entry> entries,
                                             uint64_t* conflict_index) {
  *conflict_index = 0;
  if (!MatchTerm(index, log_term)) return std::nullopt;
  const uint64_t last_new = index + entries.size();
  const uint64_t ci = FindConflict(entries);
  *conflict_index = ci;
  if (ci != 0) {
    // Overwriting a committed entry would mean two different values committed at one index:
    // the leader's log must agree with ours on everything we know is committed.
    CHECK(ci > committed_) << "entry " << ci << " conflicts with committed entry [committed("
                           << committed_ << ")]";
    const uint64_t offset = index + 1;
    CHECK(ci - offset <= entries.size());
    entries.erase(entries.begin(), entries.begin() + (ci - offset));
    Append(std::move(entries));
  }
  // Only commit what we know matches the leader: entries past last_new may be stale.
  CommitTo(std::min(committed, last_new));
  return last_new;
}

uint64_t RaftLog::Append(std::vector<v1::Entry> entries) {
  if (entries.empty()) return LastIndex();
  const uint64_t after = entries.front().index() - 1;
  CHECK(after >= committed_) << "after(" << after << ") is out of range [committed(" << committed_
                             << ")]";
  unstable_.TruncateAndAppend(std::move(entries));
  return LastIndex();
}

uint64_t RaftLog::FindConflict(const std::vector<v1::Entry>& entries) const {
  for (const auto& e : entries) {
    if (!MatchTerm(e.index(), e.term())) {
      if (e.index() <= LastIndex()) {
        VLOG(2) << "found conflict at index " << e.index()
                << " [existing term: " << ZeroTermOnError(e.index())
                << ", conflicting term: " << e.term() << "]";
      }
      return e.index();
    }
  }
  return 0;
}

std::pair<uint64_t, uint64_t> RaftLog::FindConflictByTerm(uint64_t index, uint64_t term) const {
  for (; index > 0; --index) {
    auto t = Term(index);
    if (!t.ok()) return {index, 0};  // compacted: no term information below
    if (*t <= term) return {index, *t};
  }
  return {0, 0};
}

void RaftLog::MustCheckOutOfBounds(uint64_t lo, uint64_t hi) const {
  CHECK(lo <= hi) << "invalid slice " << lo << " > " << hi;
  const uint64_t length = LastIndex() + 1 - FirstIndex();
  CHECK(hi <= FirstIndex() + length) << "slice[" << lo << "," << hi << ") out of bound ["
                                     << FirstIndex() << "," << LastIndex() << "]";
}

absl::StatusOr<std::vector<v1::Entry>> RaftLog::Slice(uint64_t lo, uint64_t hi,
                                                      uint64_t max_bytes) const {
  if (lo < FirstIndex()) return CompactedError();
  MustCheckOutOfBounds(lo, hi);
  std::vector<v1::Entry> out;
  if (lo == hi) return out;
  const uint64_t uoff = unstable_.offset();
  if (lo < uoff) {
    auto stored = storage_->Entries(lo, std::min(hi, uoff), max_bytes);
    if (!stored.ok()) {
      if (IsCompacted(stored.status())) return stored.status();
      LOG(FATAL) << "storage failed to read entries [" << lo << "," << std::min(hi, uoff)
                 << "): " << stored.status();
    }
    out = std::move(*stored);
    // Storage stopped early because of max_bytes: do not go on into the unstable part.
    if (out.size() < std::min(hi, uoff) - lo) return out;
  }
  if (hi > uoff) {
    unstable_.Slice(std::max(lo, uoff), hi, &out);
    // Apply the byte limit across the joint result (always keep at least one entry).
    uint64_t bytes = 0;
    for (size_t k = 0; k < out.size(); ++k) {
      bytes += EntrySize(out[k]);
      if (k > 0 && bytes > max_bytes) {
        out.resize(k);
        break;
      }
    }
  }
  return out;
}

absl::StatusOr<std::vector<v1::Entry>> RaftLog::Entries(uint64_t i, uint64_t max_bytes) const {
  if (i > LastIndex()) return std::vector<v1::Entry>{};
  return Slice(i, LastIndex() + 1, max_bytes);
}

std::vector<v1::Entry> RaftLog::AllEntries() const {
  auto e = Entries(FirstIndex(), UINT64_MAX);
  CHECK(e.ok()) << e.status();
  return *e;
}

bool RaftLog::IsUpToDate(uint64_t last_index, uint64_t term) const {
  const uint64_t our_term = LastTerm();
  return term > our_term || (term == our_term && last_index >= LastIndex());
}

std::vector<v1::Entry> RaftLog::NextCommittedEntries() const {
  const uint64_t off = std::max(applied_ + 1, FirstIndex());
  if (committed_ + 1 <= off) return {};
  auto e = Slice(off, committed_ + 1, max_applying_bytes_);
  CHECK(e.ok()) << "unexpected error when getting unapplied entries: " << e.status();
  return std::move(*e);
}

bool RaftLog::HasNextCommittedEntries() const {
  return committed_ + 1 > std::max(applied_ + 1, FirstIndex());
}

absl::StatusOr<v1::Snapshot> RaftLog::Snapshot() const {
  if (unstable_.snapshot()) return *unstable_.snapshot();
  return storage_->Snapshot();
}

bool RaftLog::MaybeCommit(uint64_t max_index, uint64_t term) {
  // An entry of an older term may be on a majority and still be overwritten (figure 8): only
  // an entry of the leader's own term, once on a majority, is safe, and commits its prefix.
  if (max_index > committed_ && ZeroTermOnError(max_index) == term) {
    CommitTo(max_index);
    return true;
  }
  return false;
}

void RaftLog::CommitTo(uint64_t to_commit) {
  if (committed_ >= to_commit) return;  // never decrease
  CHECK(to_commit <= LastIndex()) << "to_commit(" << to_commit << ") is out of range [last_index("
                                  << LastIndex() << ")]. Was the raft log corrupted, truncated, "
                                  << "or lost?";
  committed_ = to_commit;
}

void RaftLog::AppliedTo(uint64_t i) {
  if (i == 0) return;
  CHECK(committed_ >= i && i >= applied_) << "applied(" << i << ") is out of range [prev_applied("
                                          << applied_ << "), committed(" << committed_ << ")]";
  applied_ = i;
}

void RaftLog::Restore(const v1::Snapshot& s) {
  VLOG(1) << "log [" << DebugString()
          << "] starts to restore snapshot [index: " << s.metadata().index()
          << ", term: " << s.metadata().term() << "]";
  committed_ = s.metadata().index();
  unstable_.Restore(s);
}

std::string RaftLog::DebugString() const {
  return absl::StrCat("committed=", committed_, ", applied=", applied_,
                      ", unstable.offset=", unstable_.offset(),
                      ", len(unstable.entries)=", unstable_.entries().size());
}

}  // namespace marmot::raft
