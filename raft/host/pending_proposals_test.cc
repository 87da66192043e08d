#include "raft/host/pending_proposals.h"

#include <vector>

#include "gtest/gtest.h"

namespace marmot::raft::host {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1000);

struct Outcome {
  absl::StatusCode code;
  uint64_t index;
};

ProposalCallback Record(std::vector<Outcome>* out) {
  return [out](absl::Status s, uint64_t index) { out->push_back({s.code(), index}); };
}

TEST(PendingProposalsTest, IdsStartAtTheFirstAndGrow) {
  PendingProposals p(2, 500);
  std::vector<Outcome> out;
  EXPECT_EQ(p.Add(0, Record(&out), kNow), 500u);
  EXPECT_EQ(p.Add(1, Record(&out), kNow), 501u);
}

TEST(PendingProposalsTest, AProposalEndsOnce) {
  PendingProposals p(2, 1);
  std::vector<Outcome> out;
  const uint64_t id = p.Add(1, Record(&out), kNow + absl::Seconds(5));
  p.Resolve(0, id, absl::OkStatus(), 7);  // another shard: not this proposal
  EXPECT_TRUE(out.empty());
  p.Resolve(1, id, absl::OkStatus(), 7);
  p.Resolve(1, id, absl::AbortedError("late"), 0);
  p.Expire(kNow + absl::Seconds(10));
  p.CancelAll();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].code, absl::StatusCode::kOk);
  EXPECT_EQ(out[0].index, 7u);
}

TEST(PendingProposalsTest, ExpireEndsOnlyThoseDue) {
  PendingProposals p(1, 1);
  std::vector<Outcome> early, late;
  p.Add(0, Record(&early), kNow);
  const uint64_t later = p.Add(0, Record(&late), kNow + absl::Seconds(1));
  p.Expire(kNow);
  ASSERT_EQ(early.size(), 1u);
  EXPECT_EQ(early[0].code, absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(late.empty());
  p.Resolve(0, later, absl::OkStatus(), 3);
  ASSERT_EQ(late.size(), 1u);
  EXPECT_EQ(late[0].code, absl::StatusCode::kOk);
}

TEST(PendingProposalsTest, CancelAllEndsEveryShardsProposals) {
  PendingProposals p(3, 1);
  std::vector<Outcome> out;
  for (uint64_t shard = 0; shard < 3; ++shard) p.Add(shard, Record(&out), kNow);
  p.CancelAll();
  ASSERT_EQ(out.size(), 3u);
  for (const Outcome& o : out) EXPECT_EQ(o.code, absl::StatusCode::kCancelled);
  p.Expire(kNow);
  EXPECT_EQ(out.size(), 3u);
}

}  // namespace
}  // namespace marmot::raft::host
