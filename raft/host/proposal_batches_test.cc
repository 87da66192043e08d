#include "raft/host/proposal_batches.h"

#include "gtest/gtest.h"
#include "raft/host/proposal_codec.h"

namespace marmot::raft::host {
namespace {

using Ranges = std::vector<std::pair<size_t, size_t>>;

TEST(ProposalBatchesTest, WithoutPackingEachPayloadIsAnEntry) {
  QueuedEntries q = EntriesOfQueue(1, /*pack=*/false, {7, 8, 9}, {"a", "b", "c"});
  EXPECT_EQ(q.entries, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(q.proposals, (Ranges{{0, 1}, {1, 2}, {2, 3}}));
}

TEST(ProposalBatchesTest, SmallProposalsShareOnePack) {
  QueuedEntries q = EntriesOfQueue(3, /*pack=*/true, {7, 8, 9}, {"a", "bb", "ccc"});
  ASSERT_EQ(q.entries.size(), 1u);
  EXPECT_EQ(q.proposals, (Ranges{{0, 3}}));
  uint64_t proposer = 0;
  std::vector<DecodedProposal> decoded;
  ASSERT_TRUE(DecodeProposals(std::move(q.entries[0]), &proposer, &decoded).ok());
  EXPECT_EQ(proposer, 3u);
  ASSERT_EQ(decoded.size(), 3u);
  EXPECT_EQ(decoded[1].id, 8u);
  EXPECT_EQ(decoded[2].payload, "ccc");
}

TEST(ProposalBatchesTest, PacksAreCutAtTheirSizeAndALargeProposalGoesAlone) {
  const std::string half(kMaxPackBytes / 2, 'h');
  const std::string large(kMaxPackBytes + 1, 'l');
  QueuedEntries q =
      EntriesOfQueue(1, /*pack=*/true, {1, 2, 3, 4, 5}, {"s", half, half, large, "s"});
  // "s" and one half fit; the second half would overflow; the large one is alone.
  EXPECT_EQ(q.proposals, (Ranges{{0, 2}, {2, 3}, {3, 4}, {4, 5}}));
  EXPECT_EQ(q.entries.size(), 4u);
}

TEST(ProposalBatchesTest, ChunksAreBoundedByCountAndBytes) {
  EXPECT_TRUE(ProposeChunks({}).empty());
  std::vector<std::string> many(kMaxChunkEntries + 10, "x");
  EXPECT_EQ(ProposeChunks(many), (Ranges{{0, kMaxChunkEntries}, {kMaxChunkEntries, many.size()}}));
  std::vector<std::string> large(3, std::string(kMaxChunkBytes / 2 + 1, 'x'));
  // A chunk ends once it holds kMaxChunkBytes or more: two of these, then the third.
  EXPECT_EQ(ProposeChunks(large), (Ranges{{0, 2}, {2, 3}}));
}

}  // namespace
}  // namespace marmot::raft::host
