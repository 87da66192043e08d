#include "replicator/memory_trimmer.h"

#include <malloc.h>

namespace marmot::replicator {

MemoryTrimmer::MemoryTrimmer(Options options) : options_(options) {
  thread_ = std::thread([this] { Run(); });
}

MemoryTrimmer::~MemoryTrimmer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

size_t MemoryTrimmer::FreeBytes() { return mallinfo2().fordblks; }

bool MemoryTrimmer::TrimIfOver(size_t min_free_bytes) {
  if (FreeBytes() < min_free_bytes) return false;
  malloc_trim(0);
  return true;
}

void MemoryTrimmer::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!wake_.wait_for(lock, options_.interval, [this] { return stopping_; })) {
    lock.unlock();
    TrimIfOver(options_.min_free_bytes);
    lock.lock();
  }
}

}  // namespace marmot::replicator
