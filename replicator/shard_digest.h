// What Verify compares (shard_verifier.h): a digest of a shard's rows of each table, and the
// keys of a shard's rows of one table with a hash of each row, as this node holds them.
//
// Rows are read in key order, `ORDER BY` each key column `COLLATE BINARY` (the rowid for a table
// keyed by it), so that the order depends on the values alone, not on a column's collation:
// NULL first, then INTEGER and REAL by value, then TEXT, then BLOB, both byte by byte
// (CompareKeys). Only the rows the router puts in the shard count.
//
// A row is encoded as the router encodes a key (shard_router.h: a storage-class tag per value,
// then its bytes), over every writable column in declaration order, the rowid first for a
// table keyed by it: the same values in another storage class (INTEGER 1, TEXT '1') encode
// differently. A table's digest is XXH64 (seed 0) over its column names (each a u32
// little-endian length and the bytes) followed by the encoding of each of the shard's rows in
// key order; a row's hash is XXH64 of its encoding. The same rows give the same digest whatever
// order they were written in.
//
// Column names are one name in any ASCII case to SQLite, and two nodes may spell one column
// differently (`Extra` made on one, `extra` on another at once: schema_changes.h). So a table
// also has `digest_folded`, the same over its column names in ASCII lower case, which Verify
// compares. `digest`, over the names as written, is what nodes of older versions compare: a
// node of this version reports both, so that neither kind of node sees a difference the other
// kind does not during a rolling upgrade (a table whose column names are all lower case has
// one digest of both kinds, hashed once).
//
// Every call reads inside the caller's read transaction on `db`.
#ifndef MARMOT_REPLICATOR_SHARD_DIGEST_H_
#define MARMOT_REPLICATOR_SHARD_DIGEST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "replicator/shard_router.h"
#include "sqlite/database.h"
#include "sqlite/value.h"

namespace marmot::replicator {

struct TableDigest {
  std::string table;
  int64_t rows = 0;  // The shard's rows of the table.
  uint64_t digest = 0;
  uint64_t digest_folded = 0;  // Column names in ASCII lower case (above).
};

// The digest of `shard`'s rows of every user table (sqlite::ListUserTables), sorted by name.
// Errors are the database's.
absl::StatusOr<std::vector<TableDigest>> DigestShard(sqlite::Database& db,
                                                     const ShardRouter& router, int shard);

struct KeyHash {
  std::vector<sqlite::Value> key;  // In key order; the rowid for a table keyed by it.
  uint64_t row_hash = 0;
};

struct KeyPage {
  std::vector<KeyHash> keys;  // In key order.
  bool more = false;          // The shard has more rows of the table after the last one.
};

// The first `limit` (positive) keys of `shard`'s rows of `table` (spelled in any ASCII case)
// after the key `after` (from the first when empty), in key order, each with its row's hash.
// NOT_FOUND when the table is not a user table here; INVALID_ARGUMENT when `after` does not have
// one value per key column.
absl::StatusOr<KeyPage> ListShardKeys(sqlite::Database& db, const ShardRouter& router, int shard,
                                      const std::string& table,
                                      const std::vector<sqlite::Value>& after, int limit);

// The name table `table` (compared without ASCII case, as SQLite compares names) has here:
// another node may spell it otherwise. `table` itself when there is no such table.
absl::StatusOr<std::string> UserTableNamedHere(sqlite::Database& db, const std::string& table);

// The order of the listing above: negative, zero or positive as `a` comes before, with or after
// `b`, value by value, then the shorter first.
int CompareKeys(const std::vector<sqlite::Value>& a, const std::vector<sqlite::Value>& b);

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_SHARD_DIGEST_H_
