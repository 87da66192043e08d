// Which columns each of this node's changes carried when the shipper read it, for the applier.
//
// Capture logs keys only; the shipper reads a changed row's values when it reads the change, in
// the table's columns as they are then (sqlite/change_log.h). A change read before a column was
// added here carries no value for it, and every node applies it as a partial update that keeps
// what the column held. So when another node's change C of a row arrives while a change L of
// this node to the same row is still to be applied in the shard (L comes after C there), L
// overwrites only the columns it carries; the others keep C's values on every node. The applier
// must then write C's values for those columns here too, and skip only what L carries. Before
// L is read, it is going to carry every column the table has when it is (so C is skipped whole:
// writing C into the row would make L carry C's values as this node's write).
//
// Changes read by an earlier process are not known: after the first look at each table, every
// change that was already in its log counts, once read again, as carrying no column (C is then
// written whole; L, coming later, writes its row back: transient, but nothing diverges).
//
// Thread-safe: the shipper records from its thread, the applier asks from its own.
#ifndef MARMOT_REPLICATOR_SHIPPED_COLUMNS_H_
#define MARMOT_REPLICATOR_SHIPPED_COLUMNS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace marmot::replicator {

class ShippedColumns {
 public:
  using Columns = std::vector<std::string>;

  // The first look of this process at `table`'s log (later calls do nothing): ids up to
  // `newest` may have been read by an earlier process, with columns not known.
  void FirstLook(const std::string& table, int64_t newest);
  // The changes of `table` up to `through_id` were read with `columns` (every column, key
  // included, in the table's order). Ids only grow from call to call.
  void Read(const std::string& table, int64_t through_id, const Columns& columns);

  // The columns change `id` of `table` carries: nullopt when it has not been read yet (it will
  // carry the row's columns as they are then); empty when they are not known.
  std::optional<Columns> Carried(const std::string& table, int64_t id) const;

 private:
  struct Table {
    bool looked = false;
    int64_t unknown_through = 0;  // FirstLook's `newest` (or the first Read's last id).
    int64_t read_through = 0;
    // Ranges of ids read with the same columns, by their last id: the range of id i is the first
    // one whose last id is >= i. Columns change rarely, so a table keeps a few ranges.
    std::map<int64_t, std::shared_ptr<const Columns>> ranges;
  };
  // Records (read_through, through] as read with `columns`.
  static void Extend(Table& t, int64_t through, std::shared_ptr<const Columns> columns);

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Table> tables_ ABSL_GUARDED_BY(mu_);
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_SHIPPED_COLUMNS_H_
