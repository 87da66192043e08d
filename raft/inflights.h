// Inflights: the MsgApps a leader sent to one follower and not yet heard back about.
//
// In the replicate state the leader streams appends without waiting for each answer; this
// window bounds how far ahead it goes, both in message count and in bytes, so a slow follower
// cannot make the leader buffer (and the network carry) an unbounded amount.
#ifndef MARMOT_RAFT_INFLIGHTS_H_
#define MARMOT_RAFT_INFLIGHTS_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace marmot::raft {

class Inflights {
 public:
  // max_bytes == 0 means no byte limit.
  Inflights(size_t max_count, uint64_t max_bytes);

  // Records a message whose last entry is `index` carrying `bytes`. Indexes must increase.
  // CHECK-fails if Full().
  void Add(uint64_t index, uint64_t bytes);
  // Forgets every message whose last index is <= to (the follower acknowledged them).
  void FreeLE(uint64_t to);
  // Forgets the oldest message (it was probably lost).
  void FreeFirstOne();
  bool Full() const;
  size_t Count() const { return count_; }
  uint64_t Bytes() const { return bytes_; }
  void Reset();

 private:
  struct Inflight {
    uint64_t index;
    uint64_t bytes;
  };
  size_t max_count_;
  uint64_t max_bytes_;
  // Ring buffer of at most max_count_ items starting at start_.
  std::vector<Inflight> buffer_;
  size_t start_ = 0;
  size_t count_ = 0;
  uint64_t bytes_ = 0;
};

}  // namespace marmot::raft

#endif  // MARMOT_RAFT_INFLIGHTS_H_
