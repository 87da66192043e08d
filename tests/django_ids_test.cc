// A Django site (Debian's python3-django, its auth app) on three marmot nodes, every node signing
// up users at once: create the user, add it to a group, edit it. With the ids SQLite assigns,
// nodes give different users the same ids: one user per id stays and the other sign-ups are kept
// as conflicts on every node (written = present + kept); with marmot_ids_django (ids from
// marmot_id()) every node ends with every user, membership and edit, and nothing conflicts.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/paths.h"
#include "tests/testing/subprocess.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;

constexpr int kNodes = 3;
constexpr int kUsersPerNode = 40;
constexpr char kPython[] = "/usr/bin/python3";  // Debian's, whose sqlite3 loads extensions.

std::string Runfile(const std::string& path) {
  return absl::StrCat(std::getenv("TEST_SRCDIR"), "/marmot/", path);
}

// Runs tests/django_signups.py with `args`; stops the test when it fails.
void Django(const std::vector<std::string>& args, int node = 0) {
  std::vector<std::string> argv = {"/usr/bin/env",
                                   absl::StrCat("MARMOT_NODE_ID=", node),
                                   "PYTHONPATH=" + Runfile("sqlite"),
                                   "PYTHONDONTWRITEBYTECODE=1",
                                   kPython,
                                   Runfile("tests/django_signups.py")};
  argv.insert(argv.end(), args.begin(), args.end());
  const testing::RunResult run = testing::Run(argv, 120s);
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
}

// Django's schema and rows after `migrate` (and a group), as SQL for every node.
std::string MigratedSchema() {
  const std::string db = testing::NewTestDir("django-template") + "/site.db";
  Django({"migrate", db});
  auto dump = sqlite::testing::RunSqliteCli(db, ".dump");
  EXPECT_TRUE(dump.ok()) << dump.status();
  return dump.ok() ? *dump : "";
}

struct Figures {
  int users = 0, memberships = 0, edits = 0;
  int kept_users = 0;  // Sign-ups (user inserts) kept as conflicts.
};

// Users, memberships and users holding their own node's edit on node `id`.
Figures On(const testing::LocalCluster& cluster, int id) {
  const std::string counts = cluster.Sql(
      id,
      "SELECT (SELECT count(*) FROM auth_user), (SELECT count(*) FROM auth_user_groups), "
      "(SELECT count(*) FROM auth_user WHERE first_name = 'edited on ' || "
      "substr(username, 6, 1)), (SELECT count(*) FROM \"__marmot__conflicts\" WHERE "
      "tbl = 'auth_user' AND op = 'I');");
  Figures f;
  EXPECT_EQ(
      std::sscanf(counts.c_str(), "%d|%d|%d|%d", &f.users, &f.memberships, &f.edits, &f.kept_users),
      4);
  return f;
}

struct Outcome {
  // Whether every node ended with the same users and conflicts, and the same memberships.
  bool agreed = false, memberships_agreed = false;
  std::vector<Figures> per_node;  // What each node holds then (index 0: node 1).
};

// Every node's site signs up kUsersPerNode users at once; waits until the nodes agree (up to 60 s
// with marmot ids, 15 s without: they may never agree), and says what each holds.
Outcome SignUpOnEveryNode(bool marmot_ids) {
  // Every node's file is the migrated template: node 1 founds the cluster with its rows, the
  // others take them (a first start on tables that hold rows is refused otherwise).
  testing::LocalCluster cluster({.nodes = kNodes, .shards = 4, .schema = MigratedSchema()});
  cluster.SetNodeFlags(1, {"-seed"});
  for (int node = 2; node <= kNodes; ++node) cluster.SetNodeFlags(node, {"-take-cluster-rows"});
  cluster.Start();
  EXPECT_TRUE(cluster.WaitForSame(
      "SELECT * FROM django_migrations ORDER BY id; SELECT * FROM auth_group ORDER BY id;"
      "SELECT count(*) FROM auth_permission; SELECT count(*) FROM django_content_type;",
      60s));
  const std::string barrier = testing::NewTestDir("barrier");
  std::vector<std::thread> sites;
  for (int node = 1; node <= kNodes; ++node) {
    sites.emplace_back([&, node] {
      std::vector<std::string> args = {"signups", cluster.db_path(node), absl::StrCat(node),
                                       absl::StrCat(kUsersPerNode), barrier};
      if (marmot_ids) args.push_back(Runfile("sqlite/libmarmot_ids"));
      Django(args, node);
    });
  }
  for (std::thread& site : sites) site.join();
  Outcome outcome;
  // Every sign-up arrives everywhere, present or kept, before the nodes are compared (nodes that
  // agree may still await a shard's batch).
  const std::string accounted =
      "SELECT (SELECT count(*) FROM auth_user) + (SELECT count(*) FROM \"__marmot__conflicts\" "
      "WHERE tbl = 'auth_user' AND op = 'I');";
  EXPECT_TRUE(cluster.WaitForEverywhere(accounted, absl::StrCat(kNodes * kUsersPerNode, "\n"), 60s))
      << cluster.OnEveryNode(accounted);
  outcome.agreed = cluster.WaitForSame(
      "SELECT id, username, first_name FROM auth_user ORDER BY id;"
      "SELECT tbl, key, origin, change_id, op, winner_origin, winner_change_id, hex(change) "
      "FROM \"__marmot__conflicts\" WHERE tbl = 'auth_user' ORDER BY origin, change_id;",
      60s);
  // Memberships of users whose ids collided also collide on UNIQUE (user_id, group_id) under
  // different keys, in different shards: a limitation (README) that ends them differently (the
  // one replaced is kept as a conflict on its node, so their conflicts differ too).
  outcome.memberships_agreed = cluster.WaitForSame(
      "SELECT id, user_id, group_id FROM auth_user_groups ORDER BY id;", marmot_ids ? 30s : 5s);
  for (int id = 1; id <= kNodes; ++id) {
    const Figures f = On(cluster, id);
    std::printf(
        "%s marmot_id(), node %d: written %d users, present %d, kept as conflicts %d, "
        "memberships %d, edits %d; users and conflicts %s, memberships %s\n",
        marmot_ids ? "with" : "without", id, kNodes * kUsersPerNode, f.users, f.kept_users,
        f.memberships, f.edits, outcome.agreed ? "agree" : "DIFFER",
        outcome.memberships_agreed ? "agree" : "DIFFER");
    outcome.per_node.push_back(f);
  }
  return outcome;
}

TEST(DjangoIdsTest, SqliteAssignedIdsKeepTheSignUpsThatLostAsConflicts) {
  const Outcome outcome = SignUpOnEveryNode(false);
  // Nodes gave different users the same ids: one user per id stays, every other sign-up is kept,
  // the same on every node.
  EXPECT_TRUE(outcome.agreed);
  for (const Figures& f : outcome.per_node) {
    EXPECT_LT(f.users, kNodes * kUsersPerNode);
    EXPECT_EQ(f.users + f.kept_users, kNodes * kUsersPerNode);
  }
}

TEST(DjangoIdsTest, MarmotIdsKeepEverySignUpOnEveryNode) {
  const Outcome outcome = SignUpOnEveryNode(true);
  EXPECT_TRUE(outcome.agreed);
  EXPECT_TRUE(outcome.memberships_agreed);
  for (const Figures& f : outcome.per_node) {
    EXPECT_EQ(f.users, kNodes * kUsersPerNode);
    EXPECT_EQ(f.memberships, kNodes * kUsersPerNode);
    EXPECT_EQ(f.edits, kNodes * kUsersPerNode);
    EXPECT_EQ(f.kept_users, 0);
  }
}

}  // namespace
}  // namespace marmot
