#include "replicator/shard_router.h"

#include <gtest/gtest.h>

namespace marmot::replicator {
namespace {

using sqlite::Value;

// The row identity ('Album', 42, 'abc', 1.5, NULL, X'00ff') and its encoding, spelled out byte
// by byte from the specification in shard_router.h.
const std::vector<Value> kKey = {Value::Integer(42), Value::Text("abc"), Value::Real(1.5),
                                 Value::Null(), Value::Blob(std::string("\0\xff", 2))};
const std::string kEncoded(
    "\x05\x00\x00\x00"
    "Album"
    "\x01\x00\x00\x00\x00\x00\x00\x00\x2a"
    "\x03\x03\x00\x00\x00"
    "abc"
    "\x02\x3f\xf8\x00\x00\x00\x00\x00\x00"
    "\x00"
    "\x04\x02\x00\x00\x00\x00\xff",
    43);

TEST(ShardRouterTest, EncodingFollowsTheSpecification) {
  EXPECT_EQ(EncodeRowIdentity("Album", kKey), kEncoded);
}

TEST(ShardRouterTest, HashIsPinned) {
  // Values computed independently with `xxhsum -H64` over the bytes above. If this test fails,
  // rows of running clusters would move to other shards: do not change the encoding.
  ShardRouter router(16);
  EXPECT_EQ(router.Hash("Album", kKey), 0x9707dbbf8218348fULL);
  EXPECT_EQ(router.Hash("Album", {Value::Integer(1)}), 0xc8bacfd36d8d3704ULL);
  EXPECT_EQ(router.ShardOf("Album", kKey), static_cast<int>(0x9707dbbf8218348fULL % 16));
}

TEST(ShardRouterTest, StorageClassIsPartOfTheIdentity) {
  ShardRouter router(1 << 20);
  EXPECT_NE(router.Hash("t", {Value::Integer(1)}), router.Hash("t", {Value::Text("1")}));
  EXPECT_NE(router.Hash("t", {Value::Integer(1)}), router.Hash("t", {Value::Real(1.0)}));
  EXPECT_NE(router.Hash("t", {Value::Text("ab")}), router.Hash("t", {Value::Blob("ab")}));
  // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
  EXPECT_NE(router.Hash("t", {Value::Text("ab"), Value::Text("c")}),
            router.Hash("t", {Value::Text("a"), Value::Text("bc")}));
  EXPECT_NE(router.Hash("t1", {Value::Integer(1)}), router.Hash("t", {Value::Integer(1)}));
}

TEST(ShardRouterTest, SpreadsKeysOverAllShards) {
  ShardRouter router(16);
  std::vector<int> counts(16, 0);
  for (int i = 0; i < 16000; ++i) ++counts[router.ShardOf("t", {Value::Integer(i)})];
  for (int c : counts) {
    EXPECT_GT(c, 800);
    EXPECT_LT(c, 1200);
  }
}

}  // namespace
}  // namespace marmot::replicator
