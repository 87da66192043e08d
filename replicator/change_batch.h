// Builds the wire form of captured changes: ChangeRecords read from a table's change log become
// a TableChanges message of a ChangeBatch, ready to be proposed to a shard.
#ifndef MARMOT_REPLICATOR_CHANGE_BATCH_H_
#define MARMOT_REPLICATOR_CHANGE_BATCH_H_

#include "proto/change.pb.h"
#include "sqlite/change_log.h"
#include "sqlite/schema.h"

namespace marmot::replicator {

// An empty TableChanges for `table`: its name, columns and key columns.
change::v1::TableChanges TableHeader(const sqlite::TableSchema& table);

// The wire form of one captured change of `table`.
change::v1::Change ToWire(const sqlite::TableSchema& table, const sqlite::ChangeRecord& record);

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_CHANGE_BATCH_H_
