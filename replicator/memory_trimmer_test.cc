// MemoryTrimmer: free memory malloc keeps below blocks still in use goes back to the system.
#include "replicator/memory_trimmer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <vector>

namespace marmot::replicator {
namespace {

// Resident bytes of this process (/proc/self/statm).
size_t ResidentBytes() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  std::fclose(f);
  return static_cast<size_t>(resident) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

TEST(MemoryTrimmerTest, FreedMemoryBelowBlocksInUseGoesBackToTheSystem) {
  // Given 64 MiB in 4 KiB blocks, written to, of which every 64th stays: malloc cannot give the
  // rest back from the top of its heap.
  constexpr size_t kBlock = 4096, kBlocks = (size_t{64} << 20) / kBlock;
  std::vector<std::unique_ptr<char[]>> blocks(kBlocks);
  for (auto& b : blocks) {
    b.reset(new char[kBlock]);
    for (size_t i = 0; i < kBlock; i += 512) b[i] = 1;
  }
  for (size_t i = 0; i < kBlocks; ++i) {
    if (i % 64 != 0) blocks[i].reset();
  }
  ASSERT_GE(MemoryTrimmer::FreeBytes(), size_t{48} << 20);

  // Not over a larger threshold: nothing done.
  EXPECT_FALSE(MemoryTrimmer::TrimIfOver(size_t{1} << 40));
  const size_t before = ResidentBytes();

  // Over it: trimmed, and the process holds at least 32 MiB less.
  EXPECT_TRUE(MemoryTrimmer::TrimIfOver(size_t{16} << 20));
  const size_t after = ResidentBytes();
  EXPECT_LE(after + (size_t{32} << 20), before) << "before " << before << " after " << after;
}

TEST(MemoryTrimmerTest, StopsWhenDestroyed) {
  // A long interval: the destructor does not wait for it.
  MemoryTrimmer trimmer({.interval = std::chrono::hours(1)});
}

}  // namespace
}  // namespace marmot::replicator
