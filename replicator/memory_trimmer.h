// Gives back to the system the memory that malloc keeps after it is freed.
//
// glibc's malloc returns freed memory to the system only from the top of each arena; what is
// freed below a block still in use stays in the process, and marmot's threads each allocate from
// arenas of their own. After a node sends or receives a database (memtables, Raft entries, apply
// rounds and snapshot pieces come and go) a third of its resident memory was such free memory:
// malloc_trim(0) took a sender from 248 to 184 MiB and a newcomer from 197 to 164 MiB (issue 22).
//
// A thread looks every `interval` at how much malloc holds free (mallinfo2) and, from
// `min_free_bytes`, calls malloc_trim(0), which hands back every whole free page of every arena.
// Both walk malloc's free lists under its locks: microseconds to a few milliseconds, once per
// interval; an idle node has little free memory and only looks.
#ifndef MARMOT_REPLICATOR_MEMORY_TRIMMER_H_
#define MARMOT_REPLICATOR_MEMORY_TRIMMER_H_

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>

namespace marmot::replicator {

class MemoryTrimmer {
 public:
  struct Options {
    std::chrono::milliseconds interval{2000};
    size_t min_free_bytes = size_t{16} << 20;
  };

  // Starts the thread.
  explicit MemoryTrimmer(Options options);
  // Stops it.
  ~MemoryTrimmer();
  MemoryTrimmer(const MemoryTrimmer&) = delete;
  MemoryTrimmer& operator=(const MemoryTrimmer&) = delete;

  // The bytes malloc holds free now (in use by the process, not by the program).
  static size_t FreeBytes();
  // One look: trims when FreeBytes() is at least `min_free_bytes`; whether it trimmed.
  static bool TrimIfOver(size_t min_free_bytes);

 private:
  void Run();

  const Options options_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_MEMORY_TRIMMER_H_
