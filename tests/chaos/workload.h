// Workload: writer threads that commit to the real SQLite file of each node through the SQLite
// C API (with a busy timeout), as applications beside marmot do, and remember every change they
// committed.
//
// Two tables, created on every node before marmot starts (kSchema):
//   owned(w, k, v, body)  each writer owns the rows with its id in `w`: inserts, updates,
//                         deletes, key changes (UPDATE ... SET k) and BLOBs from 16 bytes to
//                         256 KiB. Only its writer changes a row, so every change of a row
//                         comes from one node in commit order, and the row's final state on
//                         every node must be exactly the writer's last committed state.
//   hot(id, v, who, n)    every writer of every node upserts and deletes the same few rows:
//                         concurrent writes of the same rows. Checked for convergence and for
//                         holding a value some writer wrote, not for any particular winner.
// Writes are single-statement transactions or bursts (one transaction of 20–60 statements, or
// a quick run of transactions without pauses). A transaction that fails (busy, I/O) is rolled
// back and not recorded.
#ifndef MARMOT_TESTS_CHAOS_WORKLOAD_H_
#define MARMOT_TESTS_CHAOS_WORKLOAD_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace marmot::chaos {

inline constexpr char kSchema[] =
    "CREATE TABLE owned (w INTEGER NOT NULL, k INTEGER NOT NULL, v INTEGER, body BLOB,"
    " PRIMARY KEY (w, k));\n"
    "CREATE TABLE hot (id INTEGER PRIMARY KEY, v TEXT, who INTEGER, n INTEGER);\n";

inline constexpr int kHotRows = 8;

// FNV-1a 64 of a byte string.
uint64_t Fnv1a(const void* data, size_t n);

// One committed change, as the writer saw it commit.
struct WriteRecord {
  int64_t micros;  // wall clock at commit
  int node;
  int writer;
  char table;  // 'o' owned, 'h' hot
  char op;     // 'I' insert, 'U' update, 'D' delete, 'K' key change (owned); 'P' upsert (hot)
  int64_t key;
  int64_t new_key;  // for 'K'
  int64_t v;        // owned: value written; hot: writer-unique sequence
  uint64_t body_hash;
  int64_t body_len;
};

// What a writer's own rows hold after its last commit.
struct OwnedRow {
  int64_t v;
  uint64_t body_hash;
  int64_t body_len;
  bool operator==(const OwnedRow&) const = default;
};

struct WorkloadOptions {
  uint64_t seed = 1;
  int writers_per_node = 2;
  // Mean pause between transactions of one writer.
  int pause_ms = 20;
  // Key changes as `UPDATE owned SET k = ?` alone (true) or with the row's values written again
  // (false). A partial update copies whatever the local row holds, and marmot's apply of this
  // node's own older change can briefly put an older version there (TESTING.md, "known
  // issues"), so with true the "no lost write" check fails; false keeps it meaningful.
  bool partial_rekey = false;
};

class Workload {
 public:
  // One writer per (node, slot); `db_paths[i]` is node i+1's database.
  Workload(WorkloadOptions options, std::vector<std::string> db_paths);
  ~Workload();

  void Start();
  void Stop();  // Joins the writers.

  // After Stop(): every committed change, in commit order per writer.
  std::vector<WriteRecord> History() const;
  // After Stop(): (writer, key) -> row, for the rows the writers' last commits left.
  std::map<std::pair<int, int64_t>, OwnedRow> OwnedModel() const;
  int64_t committed() const { return committed_.load(); }
  int64_t failed() const { return failed_.load(); }
  // Reads of its own row, before changing it, where a writer found an older version than its
  // last commit (read-your-writes broken on the origin node), and how many reads were made.
  int64_t stale_reads() const { return stale_reads_.load(); }
  int64_t own_reads() const { return own_reads_.load(); }

  // The value a hot write stores in `v`.
  static std::string HotValue(int writer, int64_t seq);
  static void Body(int writer, int64_t v, int64_t len, std::string* out);

 private:
  struct Writer;
  void Run(Writer* w);

  WorkloadOptions options_;
  std::vector<std::string> db_paths_;
  std::vector<std::unique_ptr<Writer>> writers_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> committed_{0}, failed_{0}, stale_reads_{0}, own_reads_{0};
};

}  // namespace marmot::chaos

#endif  // MARMOT_TESTS_CHAOS_WORKLOAD_H_
