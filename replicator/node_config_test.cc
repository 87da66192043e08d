#include "replicator/node_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using raft::host::HostPort;
using raft::host::ParseHostPort;
using ::testing::HasSubstr;

FlagValues Good() {
  FlagValues f;
  f.db_path = sqlite::testing::NewTempDir("cfg") + "/n.db";
  f.node_id = 1;
  f.bind = "127.0.0.1:8161";
  f.raft_path = "/tmp/raft";
  f.shards = 16;
  f.bootstrap = "2@127.0.0.1:8162";
  f.bind_pane = "localhost:6001";
  return f;
}

std::string ErrorOf(const FlagValues& f) {
  absl::StatusOr<NodeConfig> c = ValidateFlags(f);
  EXPECT_FALSE(c.ok());
  return c.ok() ? "" : std::string(c.status().message());
}

TEST(BootstrapTest, OwnEntryMustMatchBind) {
  HostPort bind = *ParseHostPort("127.0.0.1:8161");
  EXPECT_THAT(ParseBootstrap("1@127.0.0.1:9999", 1, bind).status().message(),
              HasSubstr("another address than -bind"));
  EXPECT_THAT(ParseBootstrap("1@127.0.0.2:8161", 1, bind).status().message(),
              HasSubstr("another address than -bind"));
  // A wildcard bind listens everywhere: the advertised host may be any, the port must match.
  HostPort any = *ParseHostPort("0.0.0.0:8161");
  EXPECT_TRUE(ParseBootstrap("1@node-1.example:8161", 1, any).ok());
  EXPECT_FALSE(ParseBootstrap("1@node-1.example:8162", 1, any).ok());
}

TEST(ValidateFlagsTest, AcceptsTheReadmeFlags) {
  absl::StatusOr<NodeConfig> c = ValidateFlags(Good());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->node_id, 1u);
  EXPECT_EQ(c->shards, 16);
  EXPECT_EQ(c->snapshot_entries, 10000u);
  EXPECT_EQ(c->checkpoint_pages, 256);
  EXPECT_EQ(c->max_dead_letters, 100000);
  EXPECT_EQ(c->snapshot_piece_bytes, 1 << 20);
  EXPECT_EQ(c->verify_every, absl::ZeroDuration());  // Off.
  EXPECT_EQ(c->bootstrap.size(), 1u);
  EXPECT_TRUE(c->warnings.empty());
  EXPECT_FALSE(c->bind_rest.has_value());  // REST shares the pane's port.
}

TEST(ValidateFlagsTest, PaneTlsNeedsACertificateAndItsKey) {
  const std::string dir = sqlite::testing::NewTempDir("pane-tls");
  std::ofstream(dir + "/pane.pem") << "certificate";
  std::ofstream(dir + "/pane.key") << "key";
  FlagValues f = Good();
  f.pane_tls_cert_file = dir + "/pane.pem";
  EXPECT_THAT(ErrorOf(f),
              HasSubstr("-pane-tls-key-file: TLS on the pane needs -pane-tls-cert-file and "
                        "-pane-tls-key-file together"));
  f = Good();
  f.pane_tls_key_file = dir + "/pane.key";
  EXPECT_THAT(ErrorOf(f), HasSubstr("-pane-tls-cert-file: TLS on the pane needs"));
  f.pane_tls_cert_file = dir + "/missing.pem";
  EXPECT_THAT(ErrorOf(f),
              HasSubstr("-pane-tls-cert-file: " + dir + "/missing.pem is not a readable file"));
  f.pane_tls_cert_file = dir + "/pane.pem";
  f.pane_tls_key_file = dir;
  EXPECT_THAT(ErrorOf(f), HasSubstr("-pane-tls-key-file: " + dir + " is not a readable file"));
  f.pane_tls_key_file = dir + "/pane.key";
  absl::StatusOr<NodeConfig> c = ValidateFlags(f);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->pane_tls_cert_file, dir + "/pane.pem");
  EXPECT_EQ(c->pane_tls_key_file, dir + "/pane.key");
}

TEST(ValidateFlagsTest, BindRestMovesRestToAPortOfItsOwn) {
  FlagValues f = Good();
  f.bind_rest = "localhost:7001";
  absl::StatusOr<NodeConfig> c = ValidateFlags(f);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->bind_rest.has_value());
  EXPECT_EQ(c->bind_rest->ToString(), "localhost:7001");
  f.bind_rest = "localhost:6001";
  EXPECT_THAT(ErrorOf(f), HasSubstr("-bind-rest: must differ from -bind and -bind-pane"));
  f.bind_rest = "localhost";
  EXPECT_THAT(ErrorOf(f), HasSubstr("-bind-rest"));
}

TEST(ValidateFlagsTest, EachBadValueNamesItsFlag) {
  FlagValues f = Good();
  f.node_id = 0;
  EXPECT_THAT(ErrorOf(f), HasSubstr("-node-id"));
  f = Good();
  f.shards = 0;
  EXPECT_THAT(ErrorOf(f), HasSubstr("-shards"));
  f.shards = kMaxShards + 1;
  EXPECT_THAT(ErrorOf(f), HasSubstr("-shards"));
  f = Good();
  f.bind = "nonsense";
  EXPECT_THAT(ErrorOf(f), HasSubstr("-bind:"));
  f = Good();
  f.bind_pane = "localhost";
  EXPECT_THAT(ErrorOf(f), HasSubstr("-bind-pane"));
  f = Good();
  f.bind_pane = f.bind;
  EXPECT_THAT(ErrorOf(f), HasSubstr("must differ"));
  f = Good();
  f.bind_rest = "localhost:6001";
  EXPECT_THAT(ErrorOf(f), HasSubstr("-bind-rest"));
  f = Good();
  f.bootstrap = "2@";
  EXPECT_THAT(ErrorOf(f), HasSubstr("-bootstrap"));
  f = Good();
  f.join = true;
  f.bootstrap = "";
  EXPECT_THAT(ErrorOf(f), HasSubstr("-join"));
  f = Good();
  f.join = true;
  f.seed = true;
  EXPECT_THAT(ErrorOf(f), HasSubstr("-seed"));
  f = Good();
  f.seed = true;
  f.take_cluster_rows = true;
  EXPECT_THAT(ErrorOf(f), HasSubstr("-take-cluster-rows"));
  f = Good();
  f.raft_path = "";
  EXPECT_THAT(ErrorOf(f), HasSubstr("-raft-path"));
  f = Good();
  f.snapshot_entries = 0;
  EXPECT_THAT(ErrorOf(f), HasSubstr("-snapshot-entries"));
  f = Good();
  f.checkpoint_pages = -1;
  EXPECT_THAT(ErrorOf(f), HasSubstr("-checkpoint-pages"));
  f.checkpoint_pages = 1000001;
  EXPECT_THAT(ErrorOf(f), HasSubstr("-checkpoint-pages"));
  f.checkpoint_pages = 0;  // off
  EXPECT_TRUE(ValidateFlags(f).ok());
  f = Good();
  f.max_dead_letters = -1;
  EXPECT_THAT(ErrorOf(f), HasSubstr("-max-dead-letters"));
  f.max_dead_letters = 0;  // every shard that needs one halts
  EXPECT_TRUE(ValidateFlags(f).ok());
  f = Good();
  f.snapshot_piece_bytes = 4095;
  EXPECT_THAT(ErrorOf(f), HasSubstr("-snapshot-piece-bytes"));
  f.snapshot_piece_bytes = (64 << 20) + 1;
  EXPECT_THAT(ErrorOf(f), HasSubstr("-snapshot-piece-bytes"));
  f.snapshot_piece_bytes = 65536;
  EXPECT_TRUE(ValidateFlags(f).ok());
  f = Good();
  f.verify_every = -1;
  EXPECT_THAT(ErrorOf(f), HasSubstr("-verify-every"));
  f.verify_every = 604801;
  EXPECT_THAT(ErrorOf(f), HasSubstr("-verify-every"));
  f.verify_every = 3600;
  absl::StatusOr<NodeConfig> hourly = ValidateFlags(f);
  ASSERT_TRUE(hourly.ok());
  EXPECT_EQ(hourly->verify_every, absl::Hours(1));
}

TEST(ValidateFlagsTest, DbPathMustBeASqliteFileOrCreatable) {
  std::string dir = sqlite::testing::NewTempDir("dbpath");
  FlagValues f = Good();
  f.db_path = dir + "/text.db";
  std::ofstream(f.db_path) << "definitely not a database, but long enough for a header";
  EXPECT_THAT(ErrorOf(f), HasSubstr("not a SQLite database"));
  f.db_path = dir;
  EXPECT_THAT(ErrorOf(f), HasSubstr("is a directory"));
  f.db_path = dir + "/missing/x.db";
  EXPECT_THAT(ErrorOf(f), HasSubstr("does not exist"));
  f.db_path = dir + "/new.db";  // Absent: SQLite creates it.
  EXPECT_TRUE(ValidateFlags(f).ok());
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(dir + "/real.db", "CREATE TABLE t (x);").ok());
  f.db_path = dir + "/real.db";
  EXPECT_TRUE(ValidateFlags(f).ok());
}

TEST(ValidateFlagsTest, CleanupNeedsOnlyTheDatabase) {
  FlagValues f;
  f.cleanup = true;
  f.db_path = sqlite::testing::NewTempDir("cleanup") + "/c.db";
  EXPECT_TRUE(ValidateFlags(f).ok());
}

TEST(ValidateFlagsTest, ReplicateIsAcceptedWithAWarning) {
  FlagValues f = Good();
  f.replicate = "t1,t2";
  absl::StatusOr<NodeConfig> c = ValidateFlags(f);
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->warnings.size(), 1u);
  EXPECT_THAT(c->warnings[0], HasSubstr("deprecated"));
}

}  // namespace
}  // namespace marmot::replicator

namespace marmot::replicator {
namespace {

TEST(ValidateFlagsSecurityTest, LoopbackNeedsNoKey) {
  for (const char* bind : {"127.0.0.1:8161", "127.1.2.3:8161", "localhost:8161", "[::1]:8161"}) {
    FlagValues f = Good();
    f.bind = bind;
    f.bootstrap = "";
    absl::StatusOr<NodeConfig> c = ValidateFlags(f);
    EXPECT_TRUE(c.ok()) << bind << ": " << c.status();
  }
}

TEST(ValidateFlagsSecurityTest, ANonLoopbackBindNeedsAKeyTlsOrInsecure) {
  for (const char* bind : {"0.0.0.0:8161", "[::]:8161", "10.0.0.5:8161", "db-1.example:8161"}) {
    FlagValues f = Good();
    f.bind = bind;
    f.bootstrap = "";
    const std::string error = ErrorOf(f);
    EXPECT_THAT(error, HasSubstr("-bind: ")) << bind;
    EXPECT_THAT(error, HasSubstr("CLUSTER_KEY")) << bind;
    EXPECT_THAT(error, HasSubstr("-insecure")) << bind;
    f.insecure = true;
    EXPECT_TRUE(ValidateFlags(f).ok()) << bind;
    f.insecure = false;
    f.cluster_key = "sixteen bytes or more";
    absl::StatusOr<NodeConfig> c = ValidateFlags(f);
    ASSERT_TRUE(c.ok()) << bind << ": " << c.status();
    EXPECT_EQ(c->cluster_key, "sixteen bytes or more");
  }
}

TEST(ValidateFlagsSecurityTest, TheClusterKeyComesFromTheEnvironmentOrAFile) {
  const std::string dir = sqlite::testing::NewTempDir("key");
  std::ofstream(dir + "/key") << "a key read from a file\n";
  FlagValues f = Good();
  f.cluster_key_file = dir + "/key";
  absl::StatusOr<NodeConfig> c = ValidateFlags(f);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->cluster_key, "a key read from a file\n");  // the newline is dropped when used
  f.cluster_key = "and another one in the environment";
  EXPECT_THAT(ErrorOf(f), HasSubstr("not both"));
  f.cluster_key.reset();
  f.cluster_key_file = dir + "/missing";
  EXPECT_THAT(ErrorOf(f), HasSubstr("-cluster-key-file: cannot read"));
  f = Good();
  f.cluster_key = "short";
  EXPECT_THAT(ErrorOf(f), HasSubstr("at least 16 bytes"));
  f.cluster_key = "";  // set but empty is a mistake, not "no key"
  EXPECT_THAT(ErrorOf(f), HasSubstr("CLUSTER_KEY"));
}

TEST(ValidateFlagsSecurityTest, TlsNeedsAllThreeFiles) {
  const std::string dir = sqlite::testing::NewTempDir("tls");
  for (const char* name : {"/cert.pem", "/key.pem", "/ca.pem"}) std::ofstream(dir + name) << "pem";
  FlagValues f = Good();
  f.bind = "0.0.0.0:8161";
  f.bootstrap = "";
  f.tls_cert_file = dir + "/cert.pem";
  EXPECT_THAT(ErrorOf(f), HasSubstr("together"));
  f.tls_key_file = dir + "/key.pem";
  f.tls_ca_file = dir + "/missing.pem";
  EXPECT_THAT(ErrorOf(f), HasSubstr("missing.pem"));
  f.tls_ca_file = dir + "/ca.pem";
  absl::StatusOr<NodeConfig> c = ValidateFlags(f);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->tls_ca_file, dir + "/ca.pem");
}

}  // namespace
}  // namespace marmot::replicator
