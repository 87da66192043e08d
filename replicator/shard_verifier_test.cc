// How Verify compares what nodes measured: the reference is what most nodes hold (a tie goes to
// the leader), a node without the table differs, a node that could not measure is named; pages
// of keys are compared only as far as both cover, and say where the next page starts.
#include "replicator/shard_verifier.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "replicator/value_codec.h"

namespace marmot::replicator {
namespace {

using change::v1::VerifyReport;
using sqlite::Value;
using ::testing::ElementsAre;

VerifyReport Digests(uint64_t node, std::vector<std::tuple<std::string, int64_t, uint64_t>> t) {
  VerifyReport r;
  r.set_node(node);
  r.set_index(42);
  for (const auto& [table, rows, digest] : t) {
    VerifyReport::TableDigest* d = r.add_tables();
    d->set_table(table);
    d->set_rows(rows);
    d->set_digest(digest);
  }
  return r;
}

TEST(CompareDigestsTest, TheNodesThatDifferFromTheMajorityDiffer) {
  std::map<uint64_t, VerifyReport> reports{
      {1, Digests(1, {{"a", 3, 0xa}, {"b", 1, 0xb}})},
      {2, Digests(2, {{"a", 3, 0xa}, {"b", 1, 0xb}})},
      {3, Digests(3, {{"a", 3, 0xdead}, {"b", 1, 0xb}})},
  };
  ShardVerdict v = CompareDigests(5, reports, /*leader=*/3);
  EXPECT_EQ(v.shard, 5);
  EXPECT_EQ(v.index, 42u);
  EXPECT_THAT(v.reported, ElementsAre(1, 2, 3));
  ASSERT_EQ(v.tables.size(), 1u);
  EXPECT_EQ(v.tables[0].table, "a");
  EXPECT_THAT(v.tables[0].differing, ElementsAre(3));
  EXPECT_NE(v.tables[0].reference_node, 3u);
  EXPECT_TRUE(v.divergent());
}

TEST(CompareDigestsTest, ATieGoesToTheLeaderAndAMissingTableDiffers) {
  std::map<uint64_t, VerifyReport> reports{
      {1, Digests(1, {{"a", 3, 0xa}})},
      {2, Digests(2, {{"a", 3, 0xb}, {"only2", 1, 0x1}})},
  };
  ShardVerdict v = CompareDigests(0, reports, /*leader=*/2);
  ASSERT_EQ(v.tables.size(), 2u);
  EXPECT_EQ(v.tables[0].table, "a");
  EXPECT_EQ(v.tables[0].reference_node, 2u);
  EXPECT_THAT(v.tables[0].differing, ElementsAre(1));
  EXPECT_EQ(v.tables[1].table, "only2");
  EXPECT_EQ(v.tables[1].reference_node, 2u);
  EXPECT_THAT(v.tables[1].differing, ElementsAre(1));
  EXPECT_FALSE(v.tables[1].digests.at(1).has_value());
}

TEST(CompareDigestsTest, AllAlikeIsNotDivergentAndANodeThatCouldNotMeasureIsNamed) {
  VerifyReport failed;
  failed.set_node(3);
  failed.set_error("database is locked");
  std::map<uint64_t, VerifyReport> reports{
      {1, Digests(1, {{"a", 3, 0xa}})}, {2, Digests(2, {{"a", 3, 0xa}})}, {3, failed}};
  ShardVerdict v = CompareDigests(0, reports, 1);
  EXPECT_FALSE(v.divergent());
  EXPECT_EQ(v.errors.at(3), "database is locked");
}

TEST(CompareDigestsTest, DigestsOverFoldedColumnNamesAreComparedWhenEveryNodeReportedOne) {
  // Node 2 spells a column `Extra`, nodes 1 and 3 `extra`: the same rows, digests as written
  // differ, over folded names they do not (shard_digest.h).
  auto report = [](uint64_t node, uint64_t digest, std::optional<uint64_t> folded) {
    VerifyReport r = Digests(node, {{"t", 2, digest}});
    if (folded.has_value()) r.mutable_tables(0)->set_digest_folded(*folded);
    return r;
  };
  std::map<uint64_t, VerifyReport> reports{
      {1, report(1, 0xa, 0xf)}, {2, report(2, 0xb, 0xf)}, {3, report(3, 0xa, 0xf)}};
  EXPECT_FALSE(CompareDigests(0, reports, 1).divergent());
  // Rows that differ differ over folded names too.
  reports[2] = report(2, 0xb, 0xe);
  ShardVerdict v = CompareDigests(0, reports, 1);
  ASSERT_EQ(v.tables.size(), 1u);
  EXPECT_THAT(v.tables[0].differing, ElementsAre(2));
  // A node of an older version reports the digest as written only: that one is compared, as
  // such a node compares it.
  reports[2] = report(2, 0xb, 0xf);
  reports[3] = report(3, 0xa, std::nullopt);
  v = CompareDigests(0, reports, 1);
  ASSERT_EQ(v.tables.size(), 1u);
  EXPECT_THAT(v.tables[0].differing, ElementsAre(2));
}

TEST(CompareDigestsTest, ATableSpelledInAnotherCaseOnANodeIsTheSameTable) {
  // `Item` on nodes 1 and 3, `item` on node 2: one table to SQLite, not one each node lacks.
  std::map<uint64_t, VerifyReport> reports{{1, Digests(1, {{"Item", 2, 0xa}})},
                                           {2, Digests(2, {{"item", 2, 0xa}})},
                                           {3, Digests(3, {{"Item", 2, 0xa}})}};
  EXPECT_FALSE(CompareDigests(0, reports, 2).divergent());
  // Rows that differ differ, and the verdict names the table as the reference node does.
  reports[2] = Digests(2, {{"item", 2, 0xb}});
  ShardVerdict v = CompareDigests(0, reports, 2);
  ASSERT_EQ(v.tables.size(), 1u);
  EXPECT_EQ(v.tables[0].table, "Item");
  EXPECT_THAT(v.tables[0].differing, ElementsAre(2));
  EXPECT_EQ(v.tables[0].digests.at(2)->table, "item");
}

VerifyReport Keys(std::vector<std::pair<int64_t, uint64_t>> keys, bool more) {
  VerifyReport r;
  for (const auto& [key, hash] : keys) {
    VerifyReport::KeyHash* k = r.add_keys();
    *k->add_key() = ToWire(Value::Integer(key));
    k->set_row_hash(hash);
  }
  r.set_more_keys(more);
  return r;
}

TEST(CompareKeyPagesTest, FindsChangedMissingAndExtraKeysInKeyOrder) {
  std::vector<DifferingKey> out;
  auto next = CompareKeyPages(3, Keys({{1, 10}, {2, 20}, {4, 40}}, false),
                              Keys({{1, 10}, {2, 99}, {3, 30}}, false), out);
  EXPECT_FALSE(next.has_value());
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].key, std::vector<Value>{Value::Integer(2)});
  EXPECT_EQ(out[0].kind, DifferingKey::Kind::kChanged);
  EXPECT_EQ(out[1].key, std::vector<Value>{Value::Integer(3)});
  EXPECT_EQ(out[1].kind, DifferingKey::Kind::kExtra);
  EXPECT_EQ(out[2].key, std::vector<Value>{Value::Integer(4)});
  EXPECT_EQ(out[2].kind, DifferingKey::Kind::kMissing);
  for (const DifferingKey& k : out) EXPECT_EQ(k.node, 3u);
}

TEST(CompareKeyPagesTest, ComparesOnlyAsFarAsBothPagesCoverAndSaysWhereToGoOn) {
  // The reference's page stops at 3 (more after); the other's goes to 6: keys 5 and 6 of the
  // other are not known to be extra yet.
  std::vector<DifferingKey> out;
  auto next = CompareKeyPages(2, Keys({{1, 1}, {3, 3}}, true),
                              Keys({{1, 1}, {3, 3}, {5, 5}, {6, 6}}, false), out);
  EXPECT_TRUE(out.empty());
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(*next, std::vector<Value>{Value::Integer(3)});
}

TEST(ShardVerifierTest, RefusesBadArgumentsAndAnswersUnavailableBeforeItHasAHost) {
  ShardVerifier verifier({.node_id = 1, .shards = 4});
  EXPECT_TRUE(absl::IsInvalidArgument(verifier.Verify({4}, absl::Seconds(1)).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(verifier.Verify({-1}, absl::Seconds(1)).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(verifier.Verify({}, absl::ZeroDuration()).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(verifier.Verify({}, absl::Minutes(11)).status()));
  EXPECT_TRUE(absl::IsUnavailable(verifier.Verify({0}, absl::Seconds(1)).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(verifier.Repair(4, absl::Seconds(1)).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(verifier.Repair(0, absl::ZeroDuration()).status()));
  EXPECT_TRUE(absl::IsUnavailable(verifier.Repair(0, absl::Seconds(1)).status()));
  // An order for another node writes nothing here (and needs no database).
  change::v1::RepairOrder order;
  order.set_table("t");
  order.add_writes()->set_node(2);
  verifier.Ordered(0, order);
  // A marker is not measured without a host to report through.
  change::v1::VerifyMarker marker;
  marker.set_deadline_ms(absl::ToUnixMillis(absl::Now() + absl::Minutes(1)));
  EXPECT_FALSE(verifier.ShouldMeasure(marker));
}

}  // namespace
}  // namespace marmot::replicator
