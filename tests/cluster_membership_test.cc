// The admin calls AddNode and RemoveNode over real Raft hosts (pane/cluster_membership.h): a node
// joins every shard as a learner, the call waits for its promotion, gives up with a clear
// message when the node cannot catch up, and finishes when called again.
#include "pane/cluster_membership.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "raft/membership.h"
#include "tests/host/test_cluster.h"

namespace marmot::pane {
namespace {

using raft::host::testing::TestCluster;
using ::testing::HasSubstr;

std::string TestDir() {
  return absl::StrCat(::testing::TempDir(), "/",
                      ::testing::UnitTest::GetInstance()->current_test_info()->name());
}

constexpr int kShards = 3;

TEST(ClusterMembershipTest, AddNodeWaitsForPromotionAndCanBeCalledAgainAfterATimeout) {
  TestCluster c(TestDir(), 3, kShards);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  // Given a new node that cannot be reached, so it cannot catch up,
  c.Isolate(4, true);
  c.Start(4, /*join=*/true);
  // when it is added through node 2 with a short wait,
  absl::Status s = AddNodeToEveryShard(*c.host(2), 4, c.address(4), absl::Seconds(2));
  // then the call gives up saying it is a learner that will be promoted by itself,
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_THAT(s.message(), HasSubstr("still a learner catching up"));
  EXPECT_THAT(s.message(), HasSubstr("promotes it to voter automatically"));
  for (int shard = 0; shard < kShards; ++shard) {
    const raft::v1::ConfState cs = c.host(2)->GetShardInfo(shard).applied_conf_state;
    EXPECT_TRUE(raft::IsLearner(cs, 4)) << shard;
    EXPECT_FALSE(raft::IsVoter(cs, 4)) << shard;
  }
  // and once the node is reachable, calling again through another node returns when it is a
  // voter of every shard.
  c.Isolate(4, false);
  s = AddNodeToEveryShard(*c.host(3), 4, c.address(4), absl::Seconds(30));
  ASSERT_TRUE(s.ok()) << s;
  for (int shard = 0; shard < kShards; ++shard) {
    const raft::v1::ConfState cs = c.host(3)->GetShardInfo(shard).applied_conf_state;
    EXPECT_TRUE(raft::IsVoter(cs, 4)) << shard;
    EXPECT_FALSE(raft::IsLearner(cs, 4)) << shard;
  }
  // Adding a voter again is a no-op.
  EXPECT_TRUE(AddNodeToEveryShard(*c.host(1), 4, c.address(4), absl::Seconds(5)).ok());
}

TEST(ClusterMembershipTest, RemoveNodeRemovesALearnerFromEveryShard) {
  TestCluster c(TestDir(), 3, kShards);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  c.Isolate(4, true);
  c.Start(4, /*join=*/true);
  ASSERT_EQ(AddNodeToEveryShard(*c.host(1), 4, c.address(4), absl::Seconds(1)).code(),
            absl::StatusCode::kDeadlineExceeded);
  // Given node 4 is a learner of every shard, when it is removed,
  absl::Status s = RemoveNodeFromEveryShard(*c.host(2), 4);
  ASSERT_TRUE(s.ok()) << s;
  // then it is a member of none, and removing it again is NOT_FOUND.
  for (int shard = 0; shard < kShards; ++shard) {
    const raft::v1::ConfState cs = c.host(2)->GetShardInfo(shard).conf_state;
    EXPECT_FALSE(raft::IsLearner(cs, 4) || raft::IsVoter(cs, 4)) << shard;
  }
  EXPECT_EQ(RemoveNodeFromEveryShard(*c.host(2), 4).code(), absl::StatusCode::kNotFound);
}

TEST(ClusterMembershipTest, AnAddressNoNodeCanDialOrAMembersNewAddressIsRefusedAndNothingChanges) {
  TestCluster c(TestDir(), 3, kShards);
  c.StartAll();
  ASSERT_TRUE(c.WaitForLeaders());
  for (const std::string bad :
       {"not an address", "127.0.0.1", "127.0.0.1:0", "0.0.0.0:8610", ":8610"}) {
    absl::Status s = AddNodeToEveryShard(*c.host(1), 4, bad, absl::Seconds(5));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad << ": " << s;
  }
  // Node 2 is a member at its address: another one is refused, the same one is fine.
  absl::Status moved = AddNodeToEveryShard(*c.host(1), 2, "127.0.0.1:1", absl::Seconds(5));
  EXPECT_EQ(moved.code(), absl::StatusCode::kFailedPrecondition) << moved;
  EXPECT_THAT(std::string(moved.message()), ::testing::HasSubstr("remove it first"));
  EXPECT_TRUE(AddNodeToEveryShard(*c.host(1), 2, c.address(2), absl::Seconds(5)).ok());
  for (int shard = 0; shard < kShards; ++shard) {
    const raft::v1::ConfState cs = c.host(1)->GetShardInfo(shard).conf_state;
    EXPECT_FALSE(raft::IsLearner(cs, 4) || raft::IsVoter(cs, 4)) << shard;
  }
  EXPECT_EQ(c.host(1)->PeerAddresses().at(2), c.address(2));
}

}  // namespace
}  // namespace marmot::pane
