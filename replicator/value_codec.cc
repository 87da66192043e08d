#include "replicator/value_codec.h"

namespace marmot::replicator {

change::v1::Value ToWire(const sqlite::Value& v) {
  change::v1::Value out;
  switch (v.storage_class()) {
    case sqlite::StorageClass::kNull:
      out.set_null(true);
      break;
    case sqlite::StorageClass::kInteger:
      out.set_integer(v.integer());
      break;
    case sqlite::StorageClass::kReal:
      out.set_real(v.real());
      break;
    case sqlite::StorageClass::kText:
      out.set_text(v.bytes());
      break;
    case sqlite::StorageClass::kBlob:
      out.set_blob(v.bytes());
      break;
  }
  return out;
}

sqlite::Value FromWire(const change::v1::Value& v) {
  switch (v.kind_case()) {
    case change::v1::Value::kInteger:
      return sqlite::Value::Integer(v.integer());
    case change::v1::Value::kReal:
      return sqlite::Value::Real(v.real());
    case change::v1::Value::kText:
      return sqlite::Value::Text(v.text());
    case change::v1::Value::kBlob:
      return sqlite::Value::Blob(v.blob());
    default:
      return sqlite::Value::Null();
  }
}

std::vector<sqlite::Value> FromWire(
    const google::protobuf::RepeatedPtrField<change::v1::Value>& vs) {
  std::vector<sqlite::Value> out;
  out.reserve(vs.size());
  for (const change::v1::Value& v : vs) out.push_back(FromWire(v));
  return out;
}

}  // namespace marmot::replicator
