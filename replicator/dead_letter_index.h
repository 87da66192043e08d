// An in-memory index of this node's dead letters (`__marmot__dead_letters`) by the rows they
// concern, so that the applier can keep each row's changes in order cheaply.
//
// Why: a change that could not apply here is held back; if a LATER change of the same row then
// applied, retrying the older one would overwrite the newer version and this node would differ
// from the others forever. So while a row has a dead letter, every later change of that row is
// queued behind it (dead-lettered too), and a retry applies a row's dead letters in id order,
// never one whose earlier dead letter of the same row is still there. Dead-letter ids are the
// table's rowids, handed out in apply order, and a row lives in exactly one shard (a rekey across
// shards travels as a delete and an insert), so "earlier id" means "earlier in the row's shard
// order".
//
// A row is named by its identity, EncodeRowIdentity(table, key) (the bytes the router hashes).
// A change touches one identity, a rekey two (old key and new key). Snapshot rows that could not
// be installed block a whole table within their shard. An undecodable entry blocks nothing (its
// rows cannot be known).
//
// The index is a plain container: the applier loads it from the table, and keeps it equal to
// the table's committed content (see ChangeApplier). Not thread-safe; the applier's mutex guards
// it.
#ifndef MARMOT_REPLICATOR_DEAD_LETTER_INDEX_H_
#define MARMOT_REPLICATOR_DEAD_LETTER_INDEX_H_

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace marmot::replicator {

class DeadLetterIndex {
 public:
  // What one dead letter holds back.
  struct Entry {
    int shard = 0;
    uint64_t raft_index = 0;
    std::string table;              // Empty for an undecodable entry.
    std::vector<std::string> rows;  // Row identities of its change (none for whole_table).
    bool whole_table = false;       // Snapshot rows of `table` in `shard`: every row of it.
  };

  // Adds dead letter `id`. An entry already under `id` is replaced: ids are rowids, so one that
  // comes back was deleted from the table behind the index's back.
  void Add(int64_t id, Entry entry);
  // Removes dead letter `id`; nothing when it is not there.
  void Remove(int64_t id);

  // The entry of `id`, or nullptr.
  const Entry* Find(int64_t id) const;
  bool empty() const { return entries_.empty(); }
  size_t size() const { return entries_.size(); }
  // Every id, ascending.
  std::vector<int64_t> Ids() const;
  // The smallest id above `after`, or nullopt.
  std::optional<int64_t> NextId(int64_t after) const;
  // The largest id, or 0 when empty.
  int64_t MaxId() const { return entries_.empty() ? 0 : entries_.rbegin()->first; }
  // Ids of `shard`'s dead letters recorded at a Raft index at or below `raft_index`, ascending.
  std::vector<int64_t> IdsUpTo(int shard, uint64_t raft_index) const;

  // The oldest dead letter with an id below `before` that a change of `rows` of `table` in
  // `shard` must stay behind: one of the same row, or a whole-table one of that table and shard.
  // With `whole_table` (the change is every row of the table in the shard) any dead letter of
  // that table and shard counts. nullopt: nothing holds it back.
  std::optional<int64_t> Blocker(int shard, const std::string& table,
                                 const std::vector<std::string>& rows, bool whole_table,
                                 int64_t before = std::numeric_limits<int64_t>::max()) const;

 private:
  using TableKey = std::pair<int, std::string>;  // (shard, table)

  std::map<int64_t, Entry> entries_;
  std::unordered_map<std::string, std::set<int64_t>> by_row_;
  std::map<TableKey, std::set<int64_t>> whole_tables_;  // Whole-table entries only.
  std::map<TableKey, std::set<int64_t>> by_table_;      // Every entry with a table.
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_DEAD_LETTER_INDEX_H_
