#include "raft/inflights.h"

#include "glog/logging.h"

namespace marmot::raft {

Inflights::Inflights(size_t max_count, uint64_t max_bytes)
    : max_count_(max_count), max_bytes_(max_bytes) {
  CHECK_GT(max_count, 0u);
}

void Inflights::Add(uint64_t index, uint64_t bytes) {
  CHECK(!Full()) << "cannot add into a full inflights window (count " << count_ << ", bytes "
                 << bytes_ << ")";
  if (buffer_.size() < max_count_) {
    buffer_.resize(max_count_);  // allocate lazily: most groups are idle
  }
  size_t next = start_ + count_;
  if (next >= max_count_) next -= max_count_;
  if (count_ > 0) {
    size_t last = next == 0 ? max_count_ - 1 : next - 1;
    CHECK(buffer_[last].index < index)
        << "inflight index " << index << " does not increase (last " << buffer_[last].index << ")";
  }
  buffer_[next] = {index, bytes};
  ++count_;
  bytes_ += bytes;
}

void Inflights::FreeLE(uint64_t to) {
  if (count_ == 0 || to < buffer_[start_].index) return;
  size_t idx = start_;
  size_t i = 0;
  uint64_t freed = 0;
  for (; i < count_; ++i) {
    if (to < buffer_[idx].index) break;
    freed += buffer_[idx].bytes;
    if (++idx >= max_count_) idx -= max_count_;
  }
  count_ -= i;
  bytes_ -= freed;
  start_ = count_ == 0 ? 0 : idx;
}

void Inflights::FreeFirstOne() {
  if (count_ > 0) FreeLE(buffer_[start_].index);
}

bool Inflights::Full() const {
  return count_ == max_count_ || (max_bytes_ != 0 && bytes_ >= max_bytes_);
}

void Inflights::Reset() {
  start_ = 0;
  count_ = 0;
  bytes_ = 0;
}

}  // namespace marmot::raft
