#include "replicator/change_encoder.h"

#include <cstring>

#include "proto/change.pb.h"

namespace marmot::replicator {
namespace {

using change::v1::Change;
using change::v1::ChangeBatch;
using change::v1::TableChanges;

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2 };

constexpr uint32_t Tag(int field, WireType type) {
  return (static_cast<uint32_t>(field) << 3) | type;
}

void PutVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

uint64_t ZigZag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}

// The body of a change::v1::Value message (see ToWire in value_codec.h).
size_t ValueSize(const sqlite::Value& v) {
  switch (v.storage_class()) {
    case sqlite::StorageClass::kNull:
      return 2;
    case sqlite::StorageClass::kInteger:
      return 1 + VarintSize(ZigZag(v.integer()));
    case sqlite::StorageClass::kReal:
      return 9;
    case sqlite::StorageClass::kText:
    case sqlite::StorageClass::kBlob:
      return 1 + VarintSize(v.bytes().size()) + v.bytes().size();
  }
  return 0;
}

// `v` as a length-delimited field `field` holding a Value message.
void PutValue(int field, const sqlite::Value& v, std::string* out) {
  PutVarint(Tag(field, kLengthDelimited), out);
  PutVarint(ValueSize(v), out);
  switch (v.storage_class()) {
    case sqlite::StorageClass::kNull:
      PutVarint(Tag(change::v1::Value::kNullFieldNumber, kVarint), out);
      out->push_back(1);
      break;
    case sqlite::StorageClass::kInteger:
      PutVarint(Tag(change::v1::Value::kIntegerFieldNumber, kVarint), out);
      PutVarint(ZigZag(v.integer()), out);
      break;
    case sqlite::StorageClass::kReal: {
      PutVarint(Tag(change::v1::Value::kRealFieldNumber, kFixed64), out);
      const double d = v.real();
      uint64_t bits;
      std::memcpy(&bits, &d, sizeof bits);
      for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(bits >> (8 * i)));
      break;
    }
    case sqlite::StorageClass::kText:
    case sqlite::StorageClass::kBlob:
      PutVarint(Tag(v.storage_class() == sqlite::StorageClass::kText
                        ? change::v1::Value::kTextFieldNumber
                        : change::v1::Value::kBlobFieldNumber,
                    kLengthDelimited),
                out);
      PutVarint(v.bytes().size(), out);
      out->append(v.bytes());
      break;
  }
}

void PutInt64Field(int field, int64_t v, std::string* out) {
  if (v == 0) return;  // proto3: a default scalar is not written
  PutVarint(Tag(field, kVarint), out);
  PutVarint(static_cast<uint64_t>(v), out);
}

change::v1::Op OpOf(sqlite::ChangeOp op) {
  switch (op) {
    case sqlite::ChangeOp::kInsert:
      return change::v1::OP_INSERT;
    case sqlite::ChangeOp::kUpdate:
      return change::v1::OP_UPDATE;
    case sqlite::ChangeOp::kRekey:
      return change::v1::OP_REKEY;
    case sqlite::ChangeOp::kDelete:
      return change::v1::OP_DELETE;
  }
  return change::v1::OP_UNSPECIFIED;
}

}  // namespace

void AppendChange(const sqlite::TableSchema& table, const sqlite::ChangeRecord& record,
                  ChangePart part, std::string* out) {
  const change::v1::Op op = part == ChangePart::kOldKeyDelete || part == ChangePart::kNewKeyDelete
                                ? change::v1::OP_DELETE
                            : part == ChangePart::kNewRowInsert ? change::v1::OP_INSERT
                                                                : OpOf(record.op);
  PutInt64Field(Change::kChangeIdFieldNumber, record.id, out);
  PutInt64Field(Change::kOpFieldNumber, op, out);
  PutInt64Field(Change::kAtMsFieldNumber, record.at_ms, out);
  if (op != change::v1::OP_DELETE) {
    for (const sqlite::Value& v : record.row) PutValue(Change::kRowFieldNumber, v, out);
    if (table.keyed_by_rowid() && !record.key.empty())
      PutValue(Change::kRowidFieldNumber, record.key[0], out);
  }
  if (part == ChangePart::kNewKeyDelete) {
    for (const sqlite::Value& v : record.key) PutValue(Change::kOldKeyFieldNumber, v, out);
  } else if (part != ChangePart::kNewRowInsert) {
    for (const sqlite::Value& v : record.old_key) PutValue(Change::kOldKeyFieldNumber, v, out);
  }
  if (record.prev.has_value() && part == ChangePart::kWhole) {
    std::string version;
    PutInt64Field(change::v1::Version::kOriginFieldNumber, record.prev->origin, &version);
    PutInt64Field(change::v1::Version::kChangeIdFieldNumber, record.prev->change_id, &version);
    PutVarint(Tag(Change::kPrevFieldNumber, kLengthDelimited), out);
    PutVarint(version.size(), out);
    out->append(version);
  }
}

void ChangeBatchWriter::Add(const std::string* header, absl::string_view change) {
  Table* t = nullptr;
  for (Table& existing : tables_) {
    if (existing.header == header) t = &existing;
  }
  if (t == nullptr) t = &tables_.emplace_back(Table{header, {}});
  PutVarint(Tag(TableChanges::kChangesFieldNumber, kLengthDelimited), &t->changes);
  PutVarint(change.size(), &t->changes);
  t->changes.append(change.data(), change.size());
}

std::string ChangeBatchWriter::Finish() const {
  std::string out;
  size_t size = 22;  // origin node and schema epoch
  for (const Table& t : tables_) size += 11 + t.header->size() + t.changes.size();
  out.reserve(size);
  if (origin_node_ != 0) {
    PutVarint(Tag(ChangeBatch::kOriginNodeFieldNumber, kVarint), &out);
    PutVarint(origin_node_, &out);
  }
  for (const Table& t : tables_) {
    PutVarint(Tag(ChangeBatch::kTablesFieldNumber, kLengthDelimited), &out);
    PutVarint(t.header->size() + t.changes.size(), &out);
    out.append(*t.header);
    out.append(t.changes);
  }
  if (schema_epoch_ != 0) {
    PutVarint(Tag(ChangeBatch::kSchemaEpochFieldNumber, kVarint), &out);
    PutVarint(schema_epoch_, &out);
  }
  return out;
}

}  // namespace marmot::replicator
