// ClusterIdentity: how nodes agree on a cluster id and refuse another one.
#include "raft/host/cluster_identity.h"

#include <vector>

#include "gtest/gtest.h"

namespace marmot::raft::host {
namespace {

// Records what would be written to the raft folder.
struct Disk {
  std::vector<std::string> writes;
  absl::Status fail;
  ClusterIdentity::Persist persist() {
    return [this](const std::string& id) {
      if (!fail.ok()) return fail;
      writes.push_back(id);
      return absl::OkStatus();
    };
  }
};

const std::string kA(kClusterIdBytes, 'a');
const std::string kB(kClusterIdBytes, 'b');

TEST(ClusterIdentityTest, NewIdsAreRandomAndPrintAsHex) {
  const std::string a = NewClusterId(), b = NewClusterId();
  EXPECT_EQ(a.size(), kClusterIdBytes);
  EXPECT_NE(a, b);
  EXPECT_EQ(FormatClusterId(std::string(2, '\x0f')), "0f0f");
  EXPECT_EQ(FormatClusterId(""), "(none)");
}

TEST(ClusterIdentityTest, ANodeWithAnIdRefusesAnotherAndTalksToNodesWithoutOne) {
  Disk disk;
  ClusterIdentity me(2, kA, /*candidate=*/false, disk.persist());
  EXPECT_EQ(me.OfferWhenDialing(), kA);
  EXPECT_EQ(me.OfferWhenAnswering(kB), kA);
  const absl::Status refused = me.Check(kB);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(refused.message(), "belongs to cluster " + FormatClusterId(kB) +
                                   ", this node (2) to cluster " + FormatClusterId(kA));
  EXPECT_FALSE(me.Settle(kB, 3, "x:1").ok());
  EXPECT_TRUE(me.Check("").ok());
  EXPECT_TRUE(me.Settle("", 3, "x:1").ok());
  EXPECT_TRUE(me.Check(kA).ok());
  EXPECT_TRUE(me.Settle(kA, 3, "x:1").ok());
  EXPECT_EQ(me.id(), kA);
  EXPECT_TRUE(disk.writes.empty());
}

TEST(ClusterIdentityTest, ANodeWithoutAnIdTakesTheFirstItIsOfferedThenRefusesOthers) {
  Disk disk;
  ClusterIdentity me(4, "", /*candidate=*/false, disk.persist());
  EXPECT_EQ(me.OfferWhenDialing(), "");
  EXPECT_EQ(me.OfferWhenAnswering(kA), "");
  // Two peers of different clusters: both pass the first check, the first to settle wins.
  EXPECT_TRUE(me.Check(kA).ok());
  EXPECT_TRUE(me.Check(kB).ok());
  EXPECT_TRUE(me.Settle(kA, 1, "x:1").ok());
  EXPECT_EQ(me.Settle(kB, 9, "y:1").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(me.Check(kB).ok());
  EXPECT_EQ(me.id(), kA);
  EXPECT_EQ(me.OfferWhenDialing(), kA);
  EXPECT_EQ(disk.writes, std::vector<std::string>{kA});
}

TEST(ClusterIdentityTest, AnIdIsTakenOnlyOnceWrittenAndOnlyIfWellFormed) {
  Disk disk;
  disk.fail = absl::ResourceExhaustedError("disk full");
  ClusterIdentity me(4, "", /*candidate=*/false, disk.persist());
  EXPECT_EQ(me.Settle(kA, 1, "x:1").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(me.id(), "");
  disk.fail = absl::OkStatus();
  EXPECT_EQ(me.Settle("short", 1, "x:1").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(me.id(), "");
  EXPECT_TRUE(me.Settle(kA, 1, "x:1").ok());
  EXPECT_EQ(me.id(), kA);
}

TEST(ClusterIdentityTest, ACandidateBecomesTheClusterIdWhenAPeerWithoutOneTakesIt) {
  // The highest founder drew kA; a founder without an id dials it.
  Disk disk;
  ClusterIdentity me(3, kA, /*candidate=*/true, disk.persist());
  EXPECT_EQ(me.OfferWhenDialing(), "");  // never imposed on a node it dials
  EXPECT_EQ(me.OfferWhenAnswering(""), kA);
  EXPECT_FALSE(me.candidate());
  // From then on it is final: another id is refused.
  EXPECT_FALSE(me.Check(kB).ok());
  EXPECT_TRUE(disk.writes.empty());  // drawn ids are written when drawn
}

TEST(ClusterIdentityTest, ACandidateGivesWayToAnExistingCluster) {
  // A founder whose raft folder was lost bootstrapped again and drew kB; its cluster has kA.
  Disk disk;
  ClusterIdentity me(3, kB, /*candidate=*/true, disk.persist());
  EXPECT_TRUE(me.Check(kA).ok());
  EXPECT_EQ(me.OfferWhenAnswering(kA), kA);
  EXPECT_TRUE(me.Settle(kA, 1, "x:1").ok());
  EXPECT_EQ(me.id(), kA);
  EXPECT_FALSE(me.candidate());
  EXPECT_EQ(disk.writes, std::vector<std::string>{kA});
  EXPECT_FALSE(me.Check(kB).ok());
}

TEST(ClusterIdentityTest, ACandidateThatDialsTakesTheAnswerersId) {
  Disk disk;
  ClusterIdentity me(3, kB, /*candidate=*/true, disk.persist());
  // An answerer without an id: nothing changes, still a candidate.
  EXPECT_TRUE(me.Settle("", 4, "x:1").ok());
  EXPECT_TRUE(me.candidate());
  EXPECT_TRUE(me.Settle(kA, 4, "x:1").ok());
  EXPECT_EQ(me.id(), kA);
  EXPECT_FALSE(me.candidate());
}

}  // namespace
}  // namespace marmot::raft::host
