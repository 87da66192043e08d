// marmot's applying connection to the local database, as ChangeApplier uses it: triggers off
// (replicated writes are not captured again, the user's triggers do not fire twice), foreign
// keys off (shards apply in different orders), WAL with synchronous=NORMAL (see "Cost" in
// change_applier.h), a busy handler that retries every 250 us for 5 s, and marmot's state
// tables (`__marmot__shard_state`, `__marmot__applied`, `__marmot__dead_letters`,
// `__marmot__schema_epoch`, ...) created if needed.
#ifndef MARMOT_REPLICATOR_APPLIER_DATABASE_H_
#define MARMOT_REPLICATOR_APPLIER_DATABASE_H_

#include <string>

#include "absl/status/statusor.h"
#include "sqlite/database.h"

namespace marmot::replicator {

// Opens the applying connection to the database at `db_path`. Errors are the database's.
absl::StatusOr<sqlite::Database> OpenApplierDatabase(const std::string& db_path);

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_APPLIER_DATABASE_H_
