// Serializes captured changes straight into the protobuf wire format of proto/change.proto,
// without building messages: the shipper's hot path, where creating and freeing a message per
// value of every row cost more than reading the rows. The bytes equal what SerializeAsString()
// of the messages change_batch.h builds gives (pinned by change_encoder_test).
#ifndef MARMOT_REPLICATOR_CHANGE_ENCODER_H_
#define MARMOT_REPLICATOR_CHANGE_ENCODER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "sqlite/change_log.h"
#include "sqlite/schema.h"

namespace marmot::replicator {

// Which Change a record becomes. A rekey whose two keys live in different shards is split: a
// delete of the old key for one shard, an insert of the new row for the other.
enum class ChangePart {
  kWhole,         // ToWire(table, record)
  kOldKeyDelete,  // OP_DELETE carrying the record's old key
  kNewRowInsert,  // OP_INSERT carrying the record's row (and rowid), no old key
  kNewKeyDelete,  // OP_DELETE carrying the record's key as the key to delete (a delete read
                  // from a rekey whose row is gone: its new key is gone too)
};

// Appends the serialized Change of `record` to `out`.
void AppendChange(const sqlite::TableSchema& table, const sqlite::ChangeRecord& record,
                  ChangePart part, std::string* out);

// Assembles a serialized ChangeBatch from serialized TableChanges headers (TableHeader(table)
// serialized: name, columns, key) and serialized changes. Changes of one table are kept in the
// order added; tables come in the order of their first change.
class ChangeBatchWriter {
 public:
  explicit ChangeBatchWriter(uint64_t origin_node) : origin_node_(origin_node) {}
  // `header` identifies the table (compared by address) and must outlive Finish().
  void Add(const std::string* header, absl::string_view change);
  // ChangeBatch.schema_epoch (0: not written).
  void set_schema_epoch(uint64_t epoch) { schema_epoch_ = epoch; }
  std::string Finish() const;

 private:
  struct Table {
    const std::string* header;
    std::string changes;  // Each as TableChanges.changes field: tag, length, bytes.
  };
  uint64_t origin_node_;
  uint64_t schema_epoch_ = 0;
  std::vector<Table> tables_;
};

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_CHANGE_ENCODER_H_
