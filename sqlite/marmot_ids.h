// Node-unique 64-bit row ids for tables written on several nodes (the SQLite function
// `marmot_id()` of the loadable extension libmarmot_ids.so, sqlite/marmot_ids_extension.cc).
//
// SQLite gives a new row max(rowid) + 1 (with AUTOINCREMENT, at least one more than any rowid the
// table ever held), so nodes that insert at the same time give different rows the same id, and
// marmot keeps one of them. An id from here is unique in the cluster instead:
//
//   bit 63: 0 (ids are positive) | 41 bits: milliseconds since 2025-01-01 UTC |
//   10 bits: node id (1..1023) | 12 bits: sequence within the millisecond
//
// The 53 bits of milliseconds and sequence form a "tick", which only grows on one node: the next
// tick is max(last tick + 1, now in ms * 4096). So:
// - ids of two nodes never collide (their node bits differ), whatever the clocks say;
// - ids of one node never repeat and only grow, as long as every issuer of that node shares the
//   last tick (TickFile: one small file beside the database, locked while a tick is taken);
// - a clock that goes back does not go back with the ids: they go on from the last tick, up by
//   one each, until the clock passes it again;
// - over 4,096 ids in one millisecond borrow the next milliseconds (ids run ahead of the clock
//   for a moment, still unique);
// - ids run out in 2094 (2^41 ms); a clock before 2025 is refused.
//
// Dependency-free (libc and the C++ standard library) so that the extension loads into any
// process: the sqlite3 shell, Python, an application server.
#ifndef MARMOT_SQLITE_MARMOT_IDS_H_
#define MARMOT_SQLITE_MARMOT_IDS_H_

#include <cstdint>
#include <string>

namespace marmot::ids {

inline constexpr int kSequenceBits = 12;
inline constexpr int kNodeBits = 10;
inline constexpr int kMillisBits = 41;
inline constexpr int64_t kMaxNodeId = (int64_t{1} << kNodeBits) - 1;  // 1023
inline constexpr int64_t kEpochUnixMillis = 1735689600000;            // 2025-01-01T00:00:00Z
// Ticks are below this: 41 bits of milliseconds, 12 of sequence.
inline constexpr int64_t kTickLimit = int64_t{1} << (kMillisBits + kSequenceBits);

// "" when `node` can be put in an id, else why not (one line, naming the valid range).
std::string CheckNodeId(int64_t node);

// The tick after `last` (0: none yet) at wall-clock time `unix_millis`: max(last + 1, the clock's
// first tick). False with `*error` set when the clock is before 2025 or the ticks ran out, or
// `last` is not a tick at all (a damaged state file).
bool NextTick(int64_t last, int64_t unix_millis, int64_t* tick, std::string* error);

// The id of `tick` on `node`; both must be valid (CheckNodeId, below kTickLimit).
int64_t ComposeId(int64_t tick, int64_t node);

// The parts of an id, for tests and for people reading ids.
struct IdParts {
  int64_t unix_millis;  // When it was issued (later than that if its node ran ahead).
  int64_t node;
  int64_t sequence;
};
IdParts SplitId(int64_t id);

// The last tick of one node, shared by every process and connection that issues its ids: an
// 8-byte file (normally `<database>-marmot-id`, beside `-wal` and `-shm`), locked with flock(2)
// while a tick is taken, so two connections of one process exclude each other too. Without a
// path (an in-memory or temporary database), the last tick lives in this object only.
class TickFile {
 public:
  // Nothing is opened until the first Take. `mode` is the permission of a file it creates.
  TickFile(std::string path, int mode);
  ~TickFile();
  TickFile(const TickFile&) = delete;
  TickFile& operator=(const TickFile&) = delete;

  // Takes the next tick at `unix_millis` and records it. False with `*error` set (naming the
  // file) when the file cannot be opened, locked, read or written, or NextTick refuses.
  bool Take(int64_t unix_millis, int64_t* tick, std::string* error);

 private:
  bool Open(std::string* error);

  const std::string path_;
  const int mode_;
  int fd_ = -1;
  int64_t last_ = 0;  // Used when path_ is empty.
};

}  // namespace marmot::ids

#endif  // MARMOT_SQLITE_MARMOT_IDS_H_
