// The version of every row in its shard's order: which change wrote it last there, so that a
// change made without seeing that one can be told apart from one made after it (a conflict).
//
// Table `__marmot__versions` (sqlite/change_log.h): per (table, key) the origin node and change
// id of the change its shard applied last on this node, the Raft index of that change's entry,
// the shard, and `held`. Every node applies a shard's entries in one order and sets a row's
// version for every change that is not a duplicate and does not lose (ChangeApplier), so the
// versions are the same on every node at the same index, whatever this node's own application
// wrote meanwhile. The capture triggers read a row's version when the application writes it:
// that is the version the write was made after (Change.prev).
//
// `held` is set when this node's row does not hold its version yet: another node's change won
// in the shard while this node had changes of the row not applied there yet, made without
// seeing it. They will lose to it when they apply (they are kept as conflicts), and until then
// the row keeps what this node's application wrote (a change is shipped with its row as read
// then: written over, it would carry the other node's values). The winner's change is held
// here, serialized as a TableChanges with that one change, and written when the last of them
// lost. While a row's version is held, the triggers record the row's version as "this node's
// own write" (-1), which loses to every other node's version.
//
// Entries of this node's own changes that write nothing (the no-write path) set their rows'
// versions in memory (Defer), written by the next write transaction (WriteDeferred), as the
// applied index is (deferred_apply_state.h); reads here see them. Each version carries its Raft
// index, and a write never replaces a version of a later index, so the deferred ones land right
// whenever they are written.
#ifndef MARMOT_REPLICATOR_ROW_VERSIONS_H_
#define MARMOT_REPLICATOR_ROW_VERSIONS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sqlite/database.h"
#include "sqlite/value.h"

namespace marmot::replicator {

struct RowVersion {
  int shard = 0;
  uint64_t raft_index = 0;
  uint64_t origin = 0;
  int64_t change_id = 0;
  std::string held;  // Empty: this node's row holds it.
  // How many columns the change carried (its table's, as its origin read it); 0: not known.
  int64_t columns = 0;
  // The row the change leaves on the nodes that wrote it (sqlite/row_digest.h; kNoRowDigest:
  // none), when known: what the copy of a table made again compares its rows with.
  std::optional<int64_t> digest;
};

class RowVersions {
 public:
  explicit RowVersions(sqlite::Database& db) : db_(db) {}

  // The key of a row as RowVersionKeySql makes it, from its key values in key order (the rowid
  // for a table keyed by it), always as text: a key of one INTEGER as its digits ("42"), which
  // no other key's text is; the table stores that one as the integer, which this class converts
  // both ways. Every key here and in what it returns (conflicts, snapshots) is this text.
  // Computed here for every storage class but REAL, which SQLite's quote() formats its own way:
  // asked of SQLite (KeyOfBySqlite).
  absl::StatusOr<std::string> KeyOf(const std::vector<sqlite::Value>& key);
  // The same, always asked of SQLite (what the capture triggers compute).
  absl::StatusOr<std::string> KeyOfBySqlite(const std::vector<sqlite::Value>& key);

  // The version of row `key` of `table`, deferred ones included; nullopt when it has none.
  absl::StatusOr<std::optional<RowVersion>> Get(const std::string& table, const std::string& key);

  // The versions of `table` that are held (key, version), in key order, as Get() reads them.
  absl::StatusOr<std::vector<std::pair<std::string, RowVersion>>> Held(const std::string& table);

  // Sets the version of row `key` of `table`, unless it has one of a later Raft index.
  absl::Status Set(const std::string& table, const std::string& key, const RowVersion& version);

  // Many rows of one table read at once and written at once: between BeginBatch and EndBatch,
  // Get and Set of `table` go through the batch (other tables as usual). BeginBatch reads the
  // versions of `keys` in a few statements; a Set is kept in the batch (under Set's rule) and
  // EndBatch writes them all, in a few statements, through the caller's transaction, which must
  // not end in between. A batch not ended (an error on the way) is dropped with its writes: the
  // caller's transaction does not commit then. One batch at a time.
  class Batch {
   public:
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;
    ~Batch() {
      if (!ended_) versions_.batch_.reset();
    }
    absl::Status End() {
      ended_ = true;
      return versions_.EndBatch();
    }

   private:
    friend class RowVersions;
    explicit Batch(RowVersions& versions) : versions_(versions) {}
    RowVersions& versions_;
    bool ended_ = false;
  };
  absl::StatusOr<std::unique_ptr<Batch>> BeginBatch(const std::string& table,
                                                    const std::vector<std::string>& keys);

  // Sets it in memory, for the next write transaction (see above).
  void Defer(const std::string& table, const std::string& key, const RowVersion& version);
  // Writes the deferred versions through the caller's transaction; kept until Committed().
  absl::Status WriteDeferred();
  void DeferredCommitted() { deferred_.clear(); }
  // Drops the deferred versions of `shard` (a snapshot replaced its versions).
  void ForgetDeferred(int shard);
  bool has_deferred() const { return !deferred_.empty(); }

  // For snapshots: calls `visit` with every version of `shard` (table, key, version).
  absl::Status ForEachOfShard(
      int shard,
      const std::function<absl::Status(const std::string&, const std::string&, const RowVersion&)>&
          visit);
  // Deletes every version of `shard` (the install of a snapshot replaces them).
  absl::Status DeleteShard(int shard);

 private:
  // A row's version in the batch: as stored (nullopt: none), or as Set since (`dirty`).
  struct Slot {
    std::optional<RowVersion> version;
    bool dirty = false;
  };
  struct Batched {
    std::string table;
    absl::flat_hash_map<std::string, Slot> slots;
    std::vector<std::string> dirty;  // Keys of the dirty slots, in the order first Set.
    std::set<std::string> held;      // Keys of the dirty slots whose version is held.
  };

  // The version stored for row `key` of `table` (deferred ones aside).
  absl::StatusOr<std::optional<RowVersion>> Stored(const std::string& table,
                                                   const std::string& key);
  // The batch's slot of `key` (read when not yet there).
  absl::StatusOr<Slot*> BatchSlot(const std::string& key);
  absl::Status Write(const std::string& table, const std::string& key, const RowVersion& v);
  absl::Status EndBatch();

  sqlite::Database& db_;
  std::map<std::pair<std::string, std::string>, RowVersion> deferred_;
  std::optional<Batched> batch_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_ROW_VERSIONS_H_
