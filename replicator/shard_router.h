// Routes a row to its shard: the same row goes to the same shard on every node and every
// version of marmot.
//
// shard = XXH64(encoding, seed 0) mod shards, where the encoding of a row identity is
//
//   u32 little-endian byte length of the table name, the name's bytes,
//   then for each key value in key order (the rowid for tables keyed by rowid):
//     one tag byte: 0 NULL, 1 INTEGER, 2 REAL, 3 TEXT, 4 BLOB, followed by
//     INTEGER: 8 bytes, big-endian two's complement
//     REAL:    8 bytes, big-endian IEEE 754 bit pattern
//     TEXT, BLOB: u32 little-endian byte length, the bytes
//     NULL:    nothing
//
// The storage class is part of the identity, as it is in SQLite: INTEGER 1 and TEXT '1' are
// different keys. The encoding is pinned by a test vector; changing it would split a running
// cluster's rows across different shards, so never change it.
//
// The table name hashed is the table's route (table_renames.h): its own name, or for a table
// renamed by a replicated ALTER TABLE RENAME the name it had when it was created, so that its
// rows stay in their shards.
#ifndef MARMOT_REPLICATOR_SHARD_ROUTER_H_
#define MARMOT_REPLICATOR_SHARD_ROUTER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "replicator/table_renames.h"
#include "sqlite/value.h"

namespace marmot::replicator {

// The bytes hashed for (table, key) as specified above.
std::string EncodeRowIdentity(absl::string_view table, const std::vector<sqlite::Value>& key);

class ShardRouter {
 public:
  // `shards` must be positive.
  explicit ShardRouter(int shards);

  // The hash of (table, key) as encoded above, `table` taken as it is.
  uint64_t Hash(absl::string_view table, const std::vector<sqlite::Value>& key) const;
  // The shard of a row of `table`: by the table's route (renames(), if set).
  int ShardOf(absl::string_view table, const std::vector<sqlite::Value>& key) const;
  int shards() const { return shards_; }

  // The routes of renamed tables, shared by every copy of this router made after; none: every
  // table routes by its own name.
  void set_renames(std::shared_ptr<TableRenames> renames) { renames_ = std::move(renames); }
  TableRenames* renames() const { return renames_.get(); }

 private:
  int shards_;
  std::shared_ptr<TableRenames> renames_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_SHARD_ROUTER_H_
