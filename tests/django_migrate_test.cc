// Django's `migrate` (Debian's python3-django 3.2: contenttypes and auth) on a running three-node
// cluster whose files start empty, run on one node as a deployment does, or on every node at once
// as every pod of a deployment that migrates at its start does. Django makes most of its auth
// schema by rebuilding tables (create new__t, copy the rows, drop t, rename new__t to t, in one
// transaction): every node must end with one schema and one migration history, without an error
// in any migrate, and the site's writes must then reach every node.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/pane_client.h"
#include "tests/testing/paths.h"
#include "tests/testing/subprocess.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;
constexpr int kNodes = 3;
constexpr int kUsersPerNode = 20;
constexpr char kPython[] = "/usr/bin/python3";  // Debian's, whose sqlite3 loads extensions.
// The pane key the nodes read from AUTH_KEY at start.
constexpr char kAuth[] = "Basic ZGphbmdvOm1pZ3JhdGU=";

// The user's objects (Django's), as every node's sqlite_master lists them.
constexpr char kSchema[] =
    "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE substr(name, 1, 10) != "
    "'__marmot__' ORDER BY type, name;";
constexpr char kTables[] =
    "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND substr(name, 1, 10) != "
    "'__marmot__' ORDER BY name;";
// Django's record of the migrations applied, whichever ids its rows took.
constexpr char kHistory[] = "SELECT app, name FROM django_migrations ORDER BY app, name;";
constexpr char kSignUps[] =
    "SELECT id, username, first_name FROM auth_user ORDER BY id;"
    "SELECT id, user_id, group_id FROM auth_user_groups ORDER BY id;";

std::string Runfile(const std::string& path) {
  return absl::StrCat(std::getenv("TEST_SRCDIR"), "/marmot/", path);
}

// Runs tests/django_signups.py with `args` as node `node`'s site.
testing::RunResult Django(const std::vector<std::string>& args, int node) {
  std::vector<std::string> argv = {"/usr/bin/env",
                                   absl::StrCat("MARMOT_NODE_ID=", node),
                                   "PYTHONPATH=" + Runfile("sqlite"),
                                   "PYTHONDONTWRITEBYTECODE=1",
                                   kPython,
                                   Runfile("tests/django_signups.py")};
  argv.insert(argv.end(), args.begin(), args.end());
  return testing::Run(argv, 120s);
}

// Every node's site signs up kUsersPerNode users at once (ids from marmot_id()).
void SignUpOnEveryNode(const testing::LocalCluster& cluster) {
  const std::string barrier = testing::NewTestDir("barrier");
  std::vector<std::thread> sites;
  for (int node = 1; node <= kNodes; ++node) {
    sites.emplace_back([&, node] {
      const testing::RunResult run =
          Django({"signups", cluster.db_path(node), absl::StrCat(node), absl::StrCat(kUsersPerNode),
                  barrier, Runfile("sqlite/libmarmot_ids")},
                 node);
      EXPECT_EQ(run.exit_code, 0) << "node " << node << ": " << run.out << run.err;
    });
  }
  for (std::thread& site : sites) site.join();
}

// The lines of node `id`'s log that hold `text`.
std::string LogLinesWith(const testing::LocalCluster& cluster, int id, const std::string& text) {
  std::string lines;
  for (absl::string_view line : absl::StrSplit(cluster.log(id), '\n')) {
    if (absl::StrContains(line, text)) absl::StrAppend(&lines, line, "\n");
  }
  return lines;
}

// Nothing went wrong on any node: no dead letter, no schema conflict or refusal, no schema
// change left to make on each node by hand.
void ExpectNoTrouble(const testing::LocalCluster& cluster) {
  for (int id = 1; id <= kNodes; ++id) {
    const admin::v1::GetStatusResponse status = testing::PaneStatus(cluster, id, kAuth);
    EXPECT_EQ(status.node_id(), id);
    EXPECT_EQ(status.dead_letters(), 0) << "node " << id;
    EXPECT_EQ(status.schema_conflicts(), 0) << "node " << id << ":\n"
                                            << LogLinesWith(cluster, id, "schema change conflicts");
    EXPECT_EQ(status.schema_changes_refused(), 0) << "node " << id;
    EXPECT_EQ(LogLinesWith(cluster, id, "schema changes that do not replicate yet"), "")
        << "node " << id;
  }
}

class DjangoMigrateTest : public ::testing::Test {
 protected:
  void SetUp() override { setenv("AUTH_KEY", kAuth, 1); }
};

// Every node ends with node 1's schema, migration history, content types, permissions and
// groups; then every node's site signs up its users, and every node ends with all of them.
void ExpectOneSiteEverywhere(const testing::LocalCluster& cluster) {
  EXPECT_TRUE(cluster.WaitForSame(kSchema, 60s)) << cluster.OnEveryNode(kTables);
  EXPECT_TRUE(cluster.WaitForSame(kHistory, 60s)) << cluster.OnEveryNode(kHistory);
  EXPECT_EQ(cluster.Sql(3, "SELECT count(*) FROM django_migrations;"),
            cluster.Sql(1, "SELECT count(*) FROM django_migrations;"));
  const std::string rows =
      ".mode quote\nSELECT * FROM django_content_type ORDER BY id;"
      "SELECT * FROM auth_permission ORDER BY id; SELECT * FROM auth_group ORDER BY id;";
  EXPECT_TRUE(cluster.WaitForSame(rows, 60s)) << cluster.OnEveryNode(rows);

  // The site then runs on every node.
  SignUpOnEveryNode(cluster);
  EXPECT_TRUE(cluster.WaitForSame(kSignUps, 60s))
      << cluster.OnEveryNode("SELECT count(*) FROM auth_user;");
  for (int id = 1; id <= kNodes; ++id) {
    EXPECT_EQ(cluster.Sql(id,
                          "SELECT count(*) FROM auth_user WHERE first_name = 'edited on ' || "
                          "substr(username, 6, 1);"
                          "SELECT count(*) FROM auth_user_groups;"),
              absl::StrCat(kNodes * kUsersPerNode, "\n", kNodes * kUsersPerNode, "\n"))
        << "node " << id;
  }
  ExpectNoTrouble(cluster);
}

TEST_F(DjangoMigrateTest, MigrateOnOneNodeGivesEveryNodeItsSchemaAndHistory) {
  testing::LocalCluster cluster({.nodes = kNodes, .shards = 4});
  cluster.Start();
  // The deployment migrates on node 1 only (and makes the group its sign-ups join).
  const testing::RunResult migrate = Django({"migrate", cluster.db_path(1)}, 1);
  ASSERT_EQ(migrate.exit_code, 0) << migrate.out << migrate.err;
  ExpectOneSiteEverywhere(cluster);
}

TEST_F(DjangoMigrateTest, MigrateOnEveryNodeAtOnceEndsWithOneSchemaAndHistory) {
  testing::LocalCluster cluster({.nodes = kNodes, .shards = 4});
  cluster.Start();
  // Every pod runs the deployment's migrate as it starts, all at once.
  const std::string barrier = testing::NewTestDir("migrate-barrier");
  std::vector<std::thread> pods;
  std::vector<std::string> said(kNodes + 1);
  for (int node = 1; node <= kNodes; ++node) {
    pods.emplace_back([&, node] {
      const testing::RunResult run =
          Django({"schema-together", cluster.db_path(node), absl::StrCat(node), barrier}, node);
      EXPECT_EQ(run.exit_code, 0) << "node " << node << ": " << run.out << run.err;
      said[node] = run.out + run.err;
    });
  }
  for (std::thread& pod : pods) pod.join();
  // Node 1's migrate, run again, finds nothing left to do and makes the group.
  const testing::RunResult migrate = Django({"migrate", cluster.db_path(1)}, 1);
  ASSERT_EQ(migrate.exit_code, 0) << migrate.out << migrate.err;
  ExpectOneSiteEverywhere(cluster);
  if (HasFailure()) {
    for (int node = 1; node <= kNodes; ++node) {
      ADD_FAILURE() << "node " << node << "'s migrate said:\n" << said[node];
    }
  }
}

}  // namespace
}  // namespace marmot
