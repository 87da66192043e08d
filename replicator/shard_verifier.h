// ShardVerifier: Verify, which compares every node's rows of each shard at the same point of
// the shard's Raft log and says which shards differ on which nodes, with the first keys that
// differ.
//
// How. The node asked draws a marker id and proposes a VerifyMarker (proto/change.proto) to each
// shard. Every node applies the marker in log order, so every node measures the same applied
// index: its state machine records the marker as applied, commits the apply round's
// transaction, and measures the shard's rows (shard_digest.h) right then, still holding the
// database writer's turn, so no apply changes rows while it reads. It proposes what it measured
// as a VerifyReport to the same shard: reports travel the Raft log, the channel on which only
// authenticated members are heard, and every node applies them. The node asked keeps the
// reports of the markers it waits for (the others are dropped) and compares them
// (CompareDigests): per table, the (rows, digest) most reporting nodes hold is the reference (a
// tie goes to the shard's leader, then the lowest node id), and every node that holds something
// else, or lacks the table, differs. For each table that differs it then asks for the keys of
// the table with a hash of each row (a VerifyMarker naming the table) by pages of kKeysPerPage
// keys in key order, measured the same way, and compares the reference node's page with each
// differing node's (CompareKeyPages), until it has found up to kMaxKeysPerNode differing keys of
// every differing node, or there are no more keys, or the time is up.
//
// A member that has not reported by the deadline is unreachable: down, cut off, halted, or too
// far behind to apply the marker in time (one that installs a snapshot past the marker never
// measures it). Nothing waits beyond the deadline. A node measures a marker only while someone
// may wait for it (VerifyMarker.deadline_ms, by its clock, plus a minute), so that replaying the
// log at a start does not measure old markers again.
//
// What counts: rows as each node holds them at the marker. A row the application wrote on a
// node and marmot has not replicated yet differs there until it is: verifying while
// applications write can report rows in flight; a difference that stays on a second Verify is
// real. Cost: measuring reads every row of every table once per shard (rows are routed to
// shards by hash), while holding the database writer's turn: other shards' applies wait for it,
// the application's reads and writes do not.
#ifndef MARMOT_REPLICATOR_SHARD_VERIFIER_H_
#define MARMOT_REPLICATOR_SHARD_VERIFIER_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/change.pb.h"
#include "raft/host/env.h"
#include "raft/host/node_host.h"
#include "replicator/replicator_metrics.h"
#include "replicator/shard_digest.h"
#include "replicator/shard_router.h"
#include "sqlite/database.h"

namespace marmot::replicator {

struct DifferingKey {
  enum class Kind {
    kChanged,  // The node holds the row with other values.
    kMissing,  // The node lacks a row the reference node holds.
    kExtra,    // The node holds a row the reference node lacks.
  };
  uint64_t node = 0;
  std::vector<sqlite::Value> key;
  Kind kind = Kind::kChanged;
  uint64_t measured_at = 0;  // The Raft index of the marker whose reports showed it.
};

struct TableVerdict {
  std::string table;
  // Per reporting node, its digest of the table; nullopt when the table is missing there.
  std::map<uint64_t, std::optional<TableDigest>> digests;
  uint64_t reference_node = 0;      // A node holding the reference.
  std::vector<uint64_t> differing;  // Nodes whose rows differ from the reference.
  std::vector<DifferingKey> keys;   // The first ones found, in key order per node.
  std::string keys_note;            // Why keys are missing or incomplete; empty otherwise.
};

struct ShardVerdict {
  int shard = 0;
  uint64_t index = 0;                      // The marker's Raft index (0: no report came).
  std::vector<uint64_t> reported;          // Members that reported, in id order.
  std::vector<uint64_t> unreachable;       // Members that did not report by the deadline.
  std::map<uint64_t, std::string> errors;  // Members that could not measure, and why.
  std::vector<TableVerdict> tables;        // Only the tables that differ.
  std::string error;                       // The marker could not be proposed.
  bool divergent() const { return !tables.empty(); }
};

struct VerifyResult {
  uint64_t marker = 0;
  std::vector<ShardVerdict> shards;
  int divergent_shards = 0;
};

struct RepairResult {
  int64_t rewritten = 0;  // Rows a node holding the reference version was told to write again.
  int64_t deleted = 0;    // Rows only a differing node held, it was told to delete.
  int rounds = 0;         // Verify-and-write rounds run.
  ShardVerdict after;     // The last verification of the shard.
};

// Compares the digest reports of one shard (one per node, all of one marker); `leader` breaks
// ties. Fills tables, reported, errors and index.
ShardVerdict CompareDigests(int shard, const std::map<uint64_t, change::v1::VerifyReport>& reports,
                            uint64_t leader);

// Compares one page of keys of `node` with the reference node's page of the same keys (both
// listed after the same key). Appends the differing keys among the keys both pages cover, in
// key order, to `out`; returns the last key both cover when either page has more keys after
// (where the next page starts), nullopt when both are complete.
std::optional<std::vector<sqlite::Value>> CompareKeyPages(uint64_t node,
                                                          const change::v1::VerifyReport& reference,
                                                          const change::v1::VerifyReport& other,
                                                          std::vector<DifferingKey>& out);

class ShardVerifier {
 public:
  static constexpr int kKeysPerPage = 1000;
  static constexpr size_t kMaxKeyPageBytes = 1 << 20;  // A page is cut short at this size.
  static constexpr int kMaxKeysPerNode = 10;
  static constexpr int kMaxRepairKeysPerNode = 1000;
  static constexpr absl::Duration kMaxTimeout = absl::Minutes(10);
  static constexpr absl::Duration kRetryInterval = absl::Milliseconds(200);

  struct Options {
    uint64_t node_id = 0;
    int shards = 1;
    raft::host::Env* env = raft::host::Env::Default();
    ReplicatorMetrics* metrics = nullptr;  // Optional: the divergent-shards gauge.
    std::string db_path;                   // Where repair orders are written (with capture on).
    // Routes of renamed tables (table_renames.h), shared with the node's other routers.
    std::shared_ptr<TableRenames> renames;
  };
  explicit ShardVerifier(Options options);
  ~ShardVerifier() { Stop(); }

  // Ends the periodic verification and every Verify under way (they answer what came so far).
  void Stop();

  // The host to propose through; before the first Verify. Until it is set, markers applied are
  // not measured.
  void set_host(raft::host::NodeHost* host) { host_.store(host); }

  // The state machine's side, on the shard's apply worker, in the database writer's turn.
  // Whether a marker is to be measured now (someone may still wait for its reports).
  bool ShouldMeasure(const change::v1::VerifyMarker& marker);
  // Measures `shard` on `db` (outside any transaction; reads in one of its own) at the marker
  // applied at `index`, and proposes the report. Never fails: an error is reported.
  void Measure(int shard, uint64_t index, const change::v1::VerifyMarker& marker,
               sqlite::Database& db);
  // A report applied in `shard`'s log; kept if this node waits for it, else dropped.
  void Received(int shard, const change::v1::VerifyReport& report);

  // Verifies `shards` (every shard when empty) within `timeout`. INVALID_ARGUMENT for a shard
  // that does not exist or a timeout that is not positive or above kMaxTimeout; UNAVAILABLE
  // before the host is set. Otherwise the verdicts, unreachable members included.
  absl::StatusOr<VerifyResult> Verify(const std::vector<int>& shards, absl::Duration timeout);

  // Repairs `shard`: verifies it, and for every differing row found (up to kMaxRepairKeysPerNode
  // per node and table) proposes a RepairOrder: a node holding the reference version writes the
  // row again, or the only node holding a row deletes it, with capture on, as an application
  // would; the write replicates as any write does (a concurrent write of the same row on another
  // node orders before or after it, as with any write). Then verifies again, until the shard
  // agrees or `timeout` is over. A table most nodes lack cannot be repaired this way. Errors as
  // Verify's.
  absl::StatusOr<RepairResult> Repair(int shard, absl::Duration timeout);
  // A repair order applied in `shard`'s log: the writes meant for this node are done on a
  // thread of their own (never on the apply worker, which holds the database writer's turn).
  void Ordered(int shard, const change::v1::RepairOrder& order);

  // Verifies the shards this node leads every `every` (each shard is verified by its leader),
  // logging what differs, until destruction. At most once.
  void StartPeriodic(absl::Duration every);

 private:
  struct Pending {
    std::map<uint64_t, change::v1::VerifyReport> reports;
    std::string payload;         // The marker's entry, proposed again while it fails.
    std::string proposal_error;  // Its last proposal failed so.
    bool proposing = false;
    absl::Time proposed_at;
  };
  using PendingKey = std::pair<uint64_t, int>;  // (marker, shard)

  uint64_t NewMarkerId();
  // Registers (marker, shard) and proposes `marker` to `shard`.
  void ProposeMarker(int shard, const change::v1::VerifyMarker& marker);
  // Proposes the marker of `key` (again). Requires mu_ not held.
  void Propose(const PendingKey& key);
  // Waits until every node of `wanted` reported for each key, or `deadline`, proposing markers
  // again whose proposal failed (the shard had no leader, its leader went down); returns what
  // came and forgets the keys.
  std::map<PendingKey, Pending> Collect(const std::map<PendingKey, std::set<uint64_t>>& wanted,
                                        absl::Time deadline);
  // Verify's work on validated arguments, listing up to `max_keys` differing keys per node.
  VerifyResult VerifyUntil(const std::set<int>& shards, absl::Time deadline, int max_keys);
  // Finds the first `max_keys` differing keys of `table` (its verdict) per node in `shard`.
  void ListDifferingKeys(int shard, TableVerdict& table, absl::Time deadline, int max_keys);
  // The repair writer's thread: does the writes of orders as they come.
  void RepairLoop();
  absl::Status WriteOrder(const change::v1::RepairOrder& order);
  int64_t DeadlineMs(absl::Time deadline);
  void UpdateGauge(const std::vector<ShardVerdict>& verdicts);
  void PeriodicLoop(absl::Duration every);

  const Options options_;
  const ShardRouter router_;
  std::atomic<raft::host::NodeHost*> host_{nullptr};

  absl::Mutex mu_;
  std::map<PendingKey, Pending> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t next_marker_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<bool> divergent_ ABSL_GUARDED_BY(mu_);  // Per shard, as last verified here.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<change::v1::RepairOrder> orders_ ABSL_GUARDED_BY(mu_);  // For this node to write.
  std::thread periodic_;
  std::thread repair_writer_;  // Started with the first order for this node.
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_SHARD_VERIFIER_H_
