// A digest of a row's values by column name: what a row version leaves on the nodes that wrote
// it (`__marmot__versions.digest`, replicator/row_versions.h), so that the copy of a table made
// again (sqlite/change_log.h, CaptureOptions::made_again) can tell the rows it changed from
// those it holds as they were.
//
// XXH64 (seed 0) over the (name, value) pairs ordered by name in ASCII lower case (one name to
// SQLite in any case): each name as a u32 little-endian length and its lower-case bytes, each
// value as a storage-class tag and its bytes (an INTEGER or a REAL as its 8 bytes, a TEXT or a
// BLOB as a u32 length and its bytes). The same values in another storage class, or another
// set of columns, give another digest. 0 is never a digest: it stands for "no row" (a delete).
#ifndef MARMOT_SQLITE_ROW_DIGEST_H_
#define MARMOT_SQLITE_ROW_DIGEST_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "sqlite/database.h"
#include "sqlite/value.h"

namespace marmot::sqlite {

// The digest that stands for "the version leaves no row" (a delete).
inline constexpr int64_t kNoRowDigest = 0;

// RowDigest of rows of one set of columns, the columns' order worked out once.
class RowDigester {
 public:
  explicit RowDigester(const std::vector<std::string>& columns);
  // The digest of the row whose value in column i is value(i).
  int64_t Of(absl::FunctionRef<Value(size_t)> value) const;

 private:
  std::vector<size_t> order_;       // Column positions by lower-case name.
  std::vector<std::string> names_;  // Each name's encoding, in that order.
};

// The digest of a row holding `values[i]` in column `columns[i]` (same sizes).
int64_t RowDigest(const std::vector<std::string>& columns, const std::vector<Value>& values);

// Registers `marmot_row_digest(name1, value1, name2, value2, ...)` on `db`'s connection: the
// RowDigest of those columns, as SQL. Idempotent.
absl::Status RegisterRowDigest(Database& db);

}  // namespace marmot::sqlite

#endif  // MARMOT_SQLITE_ROW_DIGEST_H_
