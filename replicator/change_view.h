// The answers to the decider's questions about one change (ApplyView, apply_decider.h), read
// from what the applier keeps: its local change index, its dead letters, its applied state and
// the rows themselves. Batch apply, the no-write path, dead-letter retry and snapshot install
// all ask through it, so each question has one answer whichever path asks it.
// Reads run on the applier's connection, inside its transaction when one is open.
#ifndef MARMOT_REPLICATOR_CHANGE_VIEW_H_
#define MARMOT_REPLICATOR_CHANGE_VIEW_H_

#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/change.pb.h"
#include "replicator/applied_state.h"
#include "replicator/apply_decider.h"
#include "replicator/conflict_store.h"
#include "replicator/dead_letter_index.h"
#include "replicator/dead_letter_store.h"
#include "replicator/local_change_index.h"
#include "replicator/row_versions.h"
#include "replicator/shard_router.h"
#include "replicator/shipped_columns.h"
#include "replicator/table_plans.h"
#include "sqlite/database.h"
#include "sqlite/value.h"

namespace marmot::replicator {

// What the applier keeps, which the views read. Everything outlives the views.
struct ApplierState {
  sqlite::Database& db;
  DeadLetterStore& dead_letters;
  AppliedState& applied;
  uint64_t local_node = 0;  // 0: none (no change is own, no local change log is consulted).
  // The columns this node's changes were shipped with; null: not known (a local change not yet
  // applied then hides every column of another node's change of its row).
  const ShippedColumns* shipped = nullptr;
  RowVersions* versions = nullptr;  // The rows' versions (row_versions.h); null: none kept.
  // Where rows a write deletes through another UNIQUE index are kept (displaced_rows.h), and
  // the router that tells their shards; null: not kept.
  ConflictStore* conflicts = nullptr;
  const ShardRouter* router = nullptr;
};

class ChangeView final : public ApplyView {
 public:
  // What the views of one table's changes share: the reads made once per table.
  class Table {
   public:
    // The changes `t` in `shard`, planned by `plan` (its writer is used only when its status is
    // OK; null for a dead letter whose change cannot be read). `t` and `plan` outlive this.
    Table(const ApplierState& state, int shard, const change::v1::TableChanges& t,
          const TablePlan* plan);

    // The table's part of the local change index is `rows`, read by the caller (null when its
    // log is not known)...
    void UseLocalRows(LocalChangeIndex::TableRows* rows);
    // ...or is read from `index` (LocalChangeIndex::CatchUp) when a question first needs it.
    void CatchUpLocalRows(LocalChangeIndex& index) { catch_up_ = &index; }

    const std::vector<int>& key_positions() const { return key_positions_; }

    // The node whose changes these are (for MadeWithoutSeeingItsRow).
    void set_origin(uint64_t origin) { origin_ = origin; }

   private:
    friend class ChangeView;
    // Null when the log is not known (no local node, not captured, or it cannot be read).
    LocalChangeIndex::TableRows* LocalRows();
    // This node's newest change of the table applied in the shard.
    absl::StatusOr<int64_t> OwnChangesApplied();

    const ApplierState& state_;
    const int shard_;
    const change::v1::TableChanges& t_;
    const TablePlan* plan_;
    const std::vector<int> key_positions_;
    LocalChangeIndex* catch_up_ = nullptr;
    bool rows_known_ = false;
    LocalChangeIndex::TableRows* rows_ = nullptr;
    std::optional<int64_t> own_applied_;
    uint64_t origin_ = 0;
  };

  // The change `c` of `table`'s changes; `table` and `c` outlive the view.
  ChangeView(Table& table, const change::v1::Change& c) : table_(table), c_(c) {}

  // For a dead letter tried again: held back as its index entry `entry` says, by dead letters
  // with an id below `before` only. Otherwise the change's own rows are.
  void HeldBackAs(const DeadLetterIndex::Entry& entry,
                  int64_t before = std::numeric_limits<int64_t>::max()) {
    entry_ = &entry;
    before_ = before;
  }

  // The keys of the rows the change touches and their keys as versions are kept, computed by
  // the caller (the same as Keys() and VersionKeys() would compute).
  void UseKeys(std::vector<std::vector<sqlite::Value>> keys,
               std::vector<std::string> version_keys) {
    keys_ = std::move(keys);
    version_keys_ = std::move(version_keys);
  }

  // The keys of the rows the change touches (KeysOf), read once.
  const std::vector<std::vector<sqlite::Value>>& Keys();
  // The same, moved out: the view is done with.
  std::vector<std::vector<sqlite::Value>> TakeKeys() {
    Keys();
    return *std::move(keys_);
  }

  absl::StatusOr<bool> NewerLocalChangeOfRow() override;
  absl::StatusOr<LocalOverwrite> LocalChangeNotYetApplied() override;
  absl::StatusOr<std::optional<int64_t>> BlockingDeadLetter() override;
  absl::StatusOr<bool> RowAlreadyHolds() override;
  absl::StatusOr<bool> MadeWithoutSeeingItsRow() override;

  // The rows' keys as their versions are kept (RowVersions::KeyOf), one per key of Keys().
  absl::StatusOr<std::vector<std::string>> VersionKeys();
  // The version of its (first) row here, as MadeWithoutSeeingItsRow read it (or reads it now).
  absl::StatusOr<std::optional<RowVersion>> CurrentVersion();

  // After LocalChangeNotYetApplied() answered kOtherRow: this node's change (its id) of the
  // row that the change's upsert would replace, which will replace it.
  int64_t displaced_by() const { return displaced_by_; }
  // ...and the key of that row.
  const std::vector<sqlite::Value>& displaced_by_key() const { return displaced_by_key_; }

  // After MadeWithoutSeeingItsRow() answered false for a change made over a version of its row
  // that this node kept at once (KeepDisplacedNow) and still waits to be replaced by its own
  // change of another row: that conflict's id (0: none). Every other node wrote that version
  // and the change over it, so the conflict is no longer one once the change is written or
  // kept in its place.
  int64_t kept_at_once() const { return kept_at_once_; }

  // After LocalChangeNotYetApplied() answered kSome: the columns of the change that the local
  // changes do not carry, which it writes (WriteColumns).
  const std::vector<std::string>& uncarried() const { return uncarried_; }

 private:
  // kAll or kSome for an insert or update of one row whose newest local change not yet applied
  // is `newest` (see ShippedColumns).
  LocalOverwrite Overwrite(int64_t newest);

  Table& table_;
  const change::v1::Change& c_;
  const DeadLetterIndex::Entry* entry_ = nullptr;
  int64_t before_ = std::numeric_limits<int64_t>::max();
  std::optional<std::vector<std::vector<sqlite::Value>>> keys_;
  std::vector<std::string> uncarried_;
  int64_t displaced_by_ = 0;
  int64_t kept_at_once_ = 0;
  std::vector<sqlite::Value> displaced_by_key_;
  std::optional<std::vector<std::string>> version_keys_;
  bool current_read_ = false;
  std::optional<RowVersion> current_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_CHANGE_VIEW_H_
