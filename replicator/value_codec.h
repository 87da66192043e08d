// Conversions between SQLite values (sqlite::Value) and their wire form (change::v1::Value).
// Exact in both directions: the storage class and the bytes survive.
#ifndef MARMOT_REPLICATOR_VALUE_CODEC_H_
#define MARMOT_REPLICATOR_VALUE_CODEC_H_

#include <vector>

#include "google/protobuf/repeated_field.h"
#include "proto/change.pb.h"
#include "sqlite/value.h"

namespace marmot::replicator {

change::v1::Value ToWire(const sqlite::Value& v);
// A wire value with no kind set (from a newer or broken sender) reads as NULL.
sqlite::Value FromWire(const change::v1::Value& v);
std::vector<sqlite::Value> FromWire(
    const google::protobuf::RepeatedPtrField<change::v1::Value>& vs);

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_VALUE_CODEC_H_
