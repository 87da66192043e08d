#include "replicator/shard_router.h"

#include <glog/logging.h>
#include <xxhash.h>

#include <cstring>

namespace marmot::replicator {
namespace {

void AppendU32Le(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void AppendU64Be(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void AppendBytes(std::string* out, absl::string_view bytes) {
  AppendU32Le(out, static_cast<uint32_t>(bytes.size()));
  out->append(bytes.data(), bytes.size());
}

}  // namespace

std::string EncodeRowIdentity(absl::string_view table, const std::vector<sqlite::Value>& key) {
  std::string out;
  AppendBytes(&out, table);
  for (const sqlite::Value& v : key) {
    out.push_back(static_cast<char>(v.storage_class()));
    switch (v.storage_class()) {
      case sqlite::StorageClass::kNull:
        break;
      case sqlite::StorageClass::kInteger:
        AppendU64Be(&out, static_cast<uint64_t>(v.integer()));
        break;
      case sqlite::StorageClass::kReal: {
        double d = v.real();
        uint64_t bits;
        std::memcpy(&bits, &d, sizeof bits);
        AppendU64Be(&out, bits);
        break;
      }
      case sqlite::StorageClass::kText:
      case sqlite::StorageClass::kBlob:
        AppendBytes(&out, v.bytes());
        break;
    }
  }
  return out;
}

ShardRouter::ShardRouter(int shards) : shards_(shards) {
  CHECK_GT(shards, 0) << "a router needs at least one shard";
}

uint64_t ShardRouter::Hash(absl::string_view table, const std::vector<sqlite::Value>& key) const {
  std::string encoded = EncodeRowIdentity(table, key);
  return XXH64(encoded.data(), encoded.size(), 0);
}

int ShardRouter::ShardOf(absl::string_view table, const std::vector<sqlite::Value>& key) const {
  if (renames_ != nullptr) {
    return static_cast<int>(Hash(renames_->RouteOf(table), key) % static_cast<uint64_t>(shards_));
  }
  return static_cast<int>(Hash(table, key) % static_cast<uint64_t>(shards_));
}

}  // namespace marmot::replicator
