#include "replicator/pod_identity.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "replicator/node_config.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kTemplate[] = "marmot-{ordinal}.marmot-peers.prod.svc:8610";

TEST(PodIdentityTest, AFoundingPodGetsOrdinalPlusOneAndEveryFounderAsBootstrap) {
  absl::StatusOr<PodIdentity> pod = DerivePodIdentity("marmot-0", kTemplate, 3);
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(pod->ordinal, 0);
  EXPECT_EQ(pod->node_id, 1u);  // Node ids are positive: ordinal 0 is node 1.
  EXPECT_EQ(pod->bootstrap,
            "1@marmot-0.marmot-peers.prod.svc:8610,2@marmot-1.marmot-peers.prod.svc:8610,"
            "3@marmot-2.marmot-peers.prod.svc:8610");
  EXPECT_FALSE(pod->join);

  pod = DerivePodIdentity("marmot-2", kTemplate, 3);
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(pod->node_id, 3u);
  EXPECT_FALSE(pod->join);
}

TEST(PodIdentityTest, APodAddedByScalingUpJoinsTheFounders) {
  absl::StatusOr<PodIdentity> pod = DerivePodIdentity("marmot-3", kTemplate, 3);
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(pod->node_id, 4u);
  EXPECT_TRUE(pod->join);
  EXPECT_THAT(pod->bootstrap, ::testing::Not(HasSubstr("4@")));
}

TEST(PodIdentityTest, NamesWithDashesAndFullyQualifiedNamesWork) {
  absl::StatusOr<PodIdentity> pod =
      DerivePodIdentity("my-sql-cache-12.peers.default.svc.cluster.local", kTemplate, 13);
  ASSERT_TRUE(pod.ok()) << pod.status();
  EXPECT_EQ(pod->node_id, 13u);
}

TEST(PodIdentityTest, RejectsNamesWithoutAnOrdinal) {
  for (const char* bad : {"", "marmot", "marmot-", "-1", "marmot-x", "marmot-01", "marmot--1",
                          "marmot-1a", "marmot-1234567", "marmot-0x1"}) {
    absl::StatusOr<PodIdentity> pod = DerivePodIdentity(bad, kTemplate, 3);
    ASSERT_FALSE(pod.ok()) << bad;
    EXPECT_THAT(std::string(pod.status().message()), StartsWith("-hostname: ")) << bad;
  }
}

TEST(PodIdentityTest, RejectsBadTemplatesAndReplicaCounts) {
  for (const char* bad : {"marmot-0.peers:8610", "{ordinal}-{ordinal}:8610", "{ORDINAL}:1"}) {
    absl::StatusOr<PodIdentity> pod = DerivePodIdentity("marmot-0", bad, 3);
    ASSERT_FALSE(pod.ok()) << bad;
    EXPECT_THAT(std::string(pod.status().message()), StartsWith("-peers-template: ")) << bad;
  }
  for (int64_t bad : {0, -1, 1001}) {
    absl::StatusOr<PodIdentity> pod = DerivePodIdentity("marmot-0", kTemplate, bad);
    ASSERT_FALSE(pod.ok()) << bad;
    EXPECT_THAT(std::string(pod.status().message()), StartsWith("-replicas: ")) << bad;
  }
}

// The flags a StatefulSet pod runs with, through the same validation marmot applies at start.
FlagValues PodFlags(const std::string& hostname) {
  FlagValues f;
  f.db_path = sqlite::testing::NewTempDir("pod") + "/marmot.db";
  f.bind = "0.0.0.0:8610";
  f.raft_path = "/tmp/raft";
  f.shards = 16;
  f.bind_pane = "0.0.0.0:6010";
  f.hostname = hostname;
  f.peers_template = kTemplate;
  f.replicas = 3;
  f.cluster_key = "the key from the pods' Secret";  // the pod network is not loopback
  return f;
}

TEST(PodFlagsTest, ValidateFlagsDerivesNodeIdBootstrapAndJoin) {
  absl::StatusOr<NodeConfig> c = ValidateFlags(PodFlags("marmot-1"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->node_id, 2u);
  ASSERT_EQ(c->bootstrap.size(), 3u);
  EXPECT_EQ(c->bootstrap[1].id, 2u);
  EXPECT_EQ(c->bootstrap[1].address.ToString(), "marmot-1.marmot-peers.prod.svc:8610");
  EXPECT_FALSE(c->join);

  c = ValidateFlags(PodFlags("marmot-5"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->node_id, 6u);
  EXPECT_TRUE(c->join);
  EXPECT_EQ(c->bootstrap.size(), 3u);
}

std::string ErrorOf(const FlagValues& f) {
  absl::StatusOr<NodeConfig> c = ValidateFlags(f);
  EXPECT_FALSE(c.ok());
  return c.ok() ? "" : std::string(c.status().message());
}

TEST(PodFlagsTest, DerivedAndExplicitIdentityDoNotMix) {
  FlagValues f = PodFlags("marmot-0");
  f.node_id = 1;
  EXPECT_THAT(ErrorOf(f), StartsWith("-node-id: must not be given with -peers-template"));
  f = PodFlags("marmot-0");
  f.bootstrap = "1@marmot-0.marmot-peers.prod.svc:8610";
  EXPECT_THAT(ErrorOf(f), StartsWith("-bootstrap: must not be given with -peers-template"));
  f = PodFlags("marmot-0");
  f.peers_template = "";
  EXPECT_THAT(ErrorOf(f), StartsWith("-replicas: only means something with -peers-template"));
  f = PodFlags("marmot-0");
  f.hostname = "web";
  EXPECT_THAT(ErrorOf(f), StartsWith("-hostname: 'web' is not a StatefulSet pod name"));
}

TEST(PodFlagsTest, TheTemplatePortMustBeTheBindPortAndAddressesMustParse) {
  FlagValues f = PodFlags("marmot-0");
  f.peers_template = "marmot-{ordinal}.marmot-peers.prod.svc:9999";
  EXPECT_THAT(ErrorOf(f), StartsWith("-bootstrap: entry '1@marmot-0.marmot-peers.prod.svc:9999' "
                                     "gives this node (1) another address than -bind"));
  f.peers_template = "marmot-{ordinal}.marmot peers:8610";
  EXPECT_THAT(ErrorOf(f), StartsWith("-bootstrap: entry"));
}

TEST(PodFlagsTest, CleanupIgnoresThePodFlags) {
  FlagValues f = PodFlags("not a pod");
  f.cleanup = true;
  EXPECT_TRUE(ValidateFlags(f).ok());
}

}  // namespace
}  // namespace marmot::replicator
