#include "raft/host/proposal_codec.h"

#include <cstring>

#include "gtest/gtest.h"

namespace marmot::raft::host {
namespace {

TEST(ProposalCodecTest, SingleProposalRoundTrips) {
  uint64_t proposer = 0;
  std::vector<DecodedProposal> out;
  ASSERT_TRUE(DecodeProposals(EncodeSingle(3, 77, "payload"), &proposer, &out).ok());
  EXPECT_EQ(proposer, 3u);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].id, 77u);
  EXPECT_EQ(out[0].payload, "payload");
}

TEST(ProposalCodecTest, SingleHeaderIsTwoLittleEndianWords) {
  // Entries written before packs existed: the header was two native (x86: little-endian)
  // words; they must still decode.
  std::string data(16, '\0');
  const uint64_t proposer = 0x0102030405060708, id = 42;
  memcpy(data.data(), &proposer, 8);
  memcpy(data.data() + 8, &id, 8);
  data += "old";
  EXPECT_EQ(EncodeSingle(proposer, id, "old"), data);
  uint64_t got = 0;
  std::vector<DecodedProposal> out;
  ASSERT_TRUE(DecodeProposals(std::move(data), &got, &out).ok());
  EXPECT_EQ(got, proposer);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].id, id);
  EXPECT_EQ(out[0].payload, "old");
}

TEST(ProposalCodecTest, PackRoundTripsInOrderIncludingEmptyPayloads) {
  PackWriter w(5, 0);
  w.Add(1, "a");
  w.Add(2, "");
  w.Add(9, std::string(1000, 'z'));
  uint64_t proposer = 0;
  std::vector<DecodedProposal> out;
  ASSERT_TRUE(DecodeProposals(w.Take(), &proposer, &out).ok());
  EXPECT_EQ(proposer, 5u);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].id, 1u);
  EXPECT_EQ(out[0].payload, "a");
  EXPECT_EQ(out[1].id, 2u);
  EXPECT_EQ(out[1].payload, "");
  EXPECT_EQ(out[2].id, 9u);
  EXPECT_EQ(out[2].payload, std::string(1000, 'z'));
}

TEST(ProposalCodecTest, DamagedFramingIsRefused) {
  uint64_t proposer = 0;
  std::vector<DecodedProposal> out;
  EXPECT_FALSE(DecodeProposals("short", &proposer, &out).ok());
  EXPECT_FALSE(DecodeProposals(std::string(12, '\1'), &proposer, &out).ok());  // single, cut
  PackWriter w(5, 0);
  w.Add(1, "abc");
  w.Add(2, "defgh");
  const std::string pack = w.Take();
  const size_t boundary = kPackHeaderBytes + kPackItemHeaderBytes + 3;
  for (size_t cut = kPackHeaderBytes + 1; cut < pack.size(); ++cut) {
    if (cut == boundary) continue;
    EXPECT_FALSE(DecodeProposals(pack.substr(0, cut), &proposer, &out).ok()) << cut;
    EXPECT_TRUE(out.empty());
  }
  // Cut exactly between two proposals, the pack is whole but shorter: framing cannot tell.
  ASSERT_TRUE(DecodeProposals(pack.substr(0, boundary), &proposer, &out).ok());
  EXPECT_EQ(out.size(), 1u);
}

}  // namespace
}  // namespace marmot::raft::host
