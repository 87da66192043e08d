// The `marmot` binary as users run it: flag errors, help, capture until a signal, cleanup.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sqlite/database.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/loopback_port.h"
#include "tests/testing/paths.h"
#include "tests/testing/subprocess.h"

namespace marmot {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

struct BadFlags {
  std::vector<std::string> args;
  std::string mentions;
};

TEST(MarmotCliTest, BadFlagValuesFailFastWithOneLineAndExitCode2) {
  std::string dir = testing::NewTestDir("cli-flags");
  std::string text_file = dir + "/text.db";
  FILE* f = std::fopen(text_file.c_str(), "w");
  std::fputs("plain text, not a database, but longer than a SQLite header", f);
  std::fclose(f);
  const std::string db = "-db-path=" + dir + "/ok.db";
  const std::vector<BadFlags> cases = {
      {{db}, "-node-id"},
      {{db, "-node-id=0"}, "-node-id"},
      {{db, "-node-id=1", "-bootstrap=2@"}, "-bootstrap"},
      {{db, "-node-id=1", "-bootstrap=x@host:1"}, "-bootstrap"},
      {{db, "-node-id=1", "-bootstrap=2@h:1,2@h:2"}, "appears twice"},
      {{db, "-node-id=1", "-bind=127.0.0.1:8161", "-bootstrap=1@127.0.0.1:9000"}, "-bind"},
      {{db, "-node-id=1", "-shards=0"}, "-shards"},
      {{db, "-node-id=1", "-bind=not-an-address"}, "-bind"},
      {{db, "-node-id=1", "-bind-pane=:"}, "-bind-pane"},
      {{"-db-path=" + text_file, "-node-id=1"}, "not a SQLite database"},
      {{"-node-id", "1", "-db-path", dir}, "is a directory"},
      // The node port on every interface without a cluster key or TLS: refused before it binds.
      {{db, "-node-id=1", absl::StrCat("-bind=0.0.0.0:", testing::FreeLoopbackPort())},
       "not a loopback address and node-to-node traffic would be unauthenticated: set CLUSTER_KEY"},
      {{db, "-node-id=1", "-bind=127.0.0.1:8161", "-tls-cert-file=" + dir + "/none.pem"},
       "-tls-cert-file"},
      {{db, "-node-id=1", "-bind=127.0.0.1:8161", "-cluster-key-file=" + dir + "/none"},
       "-cluster-key-file: cannot read"},
      {{db, "-node-id=1", "-bind=127.0.0.1:8161", "-pane-tls-cert-file=" + text_file},
       "-pane-tls-key-file: TLS on the pane needs -pane-tls-cert-file and -pane-tls-key-file "
       "together"},
      {{db, "-node-id=1", "-bind=127.0.0.1:8161", "-pane-tls-cert-file=" + dir + "/none.pem",
        "-pane-tls-key-file=" + text_file},
       "-pane-tls-cert-file: " + dir + "/none.pem is not a readable file"},
      {{db, "-node-id=1", "-bind-pane=localhost:6001", "-bind-rest=localhost:6001"},
       "-bind-rest: must differ from -bind and -bind-pane"},
  };
  for (const BadFlags& c : cases) {
    std::vector<std::string> argv = {testing::MarmotBinary()};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    testing::RunResult r = testing::Run(argv, 10s);
    std::string joined = absl::StrJoin(c.args, " ");
    EXPECT_EQ(r.exit_code, 2) << joined << "\n" << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.mentions)) << joined;
    // One line, and nothing else on stderr.
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << joined << "\n" << r.err;
  }
}

TEST(MarmotCliTest, AShortClusterKeyInTheEnvironmentFailsFast) {
  std::string dir = testing::NewTestDir("cli-key");
  ::setenv("CLUSTER_KEY", "too short", 1);
  testing::RunResult r =
      testing::Run({testing::MarmotBinary(), "-node-id=1", "-db-path=" + dir + "/ok.db",
                    absl::StrCat("-bind=127.0.0.1:", testing::FreeLoopbackPort())},
                   10s);
  ::unsetenv("CLUSTER_KEY");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("CLUSTER_KEY"));
  EXPECT_THAT(r.err, HasSubstr("at least 16 bytes"));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(MarmotCliTest, HelpListsEveryFlag) {
  testing::RunResult r = testing::Run({testing::MarmotBinary(), "--help"}, 10s);
  std::string all = r.out + r.err;
  for (const char* flag : {"-cleanup",
                           "-db-path",
                           "-replicate",
                           "-node-id",
                           "-bind ",
                           "-raft-path",
                           "-shards",
                           "-snapshot-entries",
                           "-checkpoint-pages",
                           "-bootstrap",
                           "-bind-pane",
                           "-verbose",
                           "-cluster-key-file",
                           "-tls-cert-file",
                           "-tls-key-file",
                           "-tls-ca-file",
                           "-insecure",
                           "-bind-rest",
                           "-pane-tls-cert-file",
                           "-pane-tls-key-file"}) {
    EXPECT_THAT(all, HasSubstr(flag));
  }
}

// gflags' --helpshort lists the flags of the file named after the binary: a copy named
// marmot-1.2 printed "No modules matched" and none of marmot's flags.
TEST(MarmotCliTest, HelpListsEveryFlagWhateverTheBinaryIsCalled) {
  const std::string dir = testing::NewTestDir("cli-help");
  const std::string renamed = dir + "/marmot-1.2";
  std::filesystem::copy_file(testing::MarmotBinary(), renamed);
  for (const char* help : {"--help", "-help", "-h", "--helpshort"}) {
    testing::RunResult r = testing::Run({renamed, help}, 10s);
    EXPECT_EQ(r.exit_code, 0) << help << "\n" << r.err;
    EXPECT_THAT(r.out, HasSubstr("marmot-1.2: replicates a SQLite database")) << help;
    for (const char* flag : {"-cleanup", "-db-path", "-replicate", "-node-id", "-bind ",
                             "-raft-path", "-shards", "-bootstrap", "-bind-pane", "-verbose"}) {
      EXPECT_THAT(r.out, HasSubstr(flag)) << help;
    }
    EXPECT_THAT(r.out + r.err, ::testing::Not(HasSubstr("No modules matched"))) << help;
    // Only marmot's flags: the libraries' are for --helpfull.
    EXPECT_THAT(r.out, ::testing::Not(HasSubstr("-logtostderr"))) << help;
  }
}

TEST(MarmotCliTest, ASingleNodeCommitsItsWritesAndStopsCleanlyOnSignals) {
  for (int sig : {SIGTERM, SIGINT}) {
    // Given marmot running alone beside a database with one table
    std::string dir = testing::NewTestDir("cli-run");
    std::string db = dir + "/app.db";
    ASSERT_TRUE(
        sqlite::testing::RunSqliteCli(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v);").ok());
    testing::Subprocess marmot({testing::MarmotBinary(), "-node-id=1", "-db-path=" + db,
                                absl::StrCat("-bind=127.0.0.1:", testing::FreeLoopbackPort()),
                                absl::StrCat("-bind-pane=127.0.0.1:", testing::FreeLoopbackPort()),
                                "-raft-path=" + dir + "/raft", "-shards=2"},
                               dir);
    auto query = [&](const std::string& sql) -> std::string {
      auto out = sqlite::testing::RunSqliteCli(db, sql);
      return out.ok() ? *out : "error";
    };
    // Rows in the log, pending ones, and the newest id. A new log holds one row, done: its ids
    // continue from there (the clock).
    const std::string log_state =
        "SELECT count(*), sum(\"__marmot__state\" = 0), max(\"__marmot__id\") FROM "
        "\"__marmot__t_change_log\";";
    std::string first_id;
    ASSERT_TRUE(testing::WaitFor(
        [&] {
          std::string state = query(log_state);
          if (state.rfind("1|0|", 0) != 0) return false;
          first_id = state.substr(4, state.size() - 5);
          return true;
        },
        10s))
        << marmot.Stderr();

    // When an application writes with the sqlite3 shell
    ASSERT_TRUE(sqlite::testing::RunSqliteCli(db, "INSERT INTO t VALUES (1, 'a'), (2, 'b');").ok());

    // Then marmot captures the changes, commits them through Raft and prunes its log down to
    // the newest row, marked done; the application's rows are as written
    // (the ids may move up once more meanwhile: capture is installed again whenever the schema
    // changes, and marmot's own tables change it at start).
    auto pruned = [&] {
      std::string state = query(log_state);
      return state.rfind("1|0|", 0) == 0 && std::stoll(state.substr(4)) >= std::stoll(first_id) + 2;
    };
    EXPECT_TRUE(testing::WaitFor(pruned, 20s)) << query(log_state) << marmot.Stderr();
    EXPECT_THAT(marmot.Stderr(), HasSubstr("captured 2 change(s) of t"));
    EXPECT_EQ(query("SELECT group_concat(v) FROM t;"), "a,b\n");
    // And a signal stops it with exit code 0
    marmot.Signal(sig);
    EXPECT_EQ(marmot.Wait(20s), std::optional<int>(0)) << strsignal(sig) << "\n" << marmot.Stderr();
  }
}

// Each node keeps its Raft store in <raft-path>/node-<id>; older versions kept it directly in
// -raft-path. Upgrading must keep that store: same log, no second bootstrap, nothing moved.
TEST(MarmotCliTest, ARaftStoreOfAnOlderVersionIsUsedWhereItLies) {
  const std::string dir = testing::NewTestDir("cli-older-raft");
  const std::string db = dir + "/app.db";
  const std::string raft = dir + "/raft";
  ASSERT_TRUE(
      sqlite::testing::RunSqliteCli(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, v);").ok());
  auto start = [&] {
    return std::make_unique<testing::Subprocess>(
        std::vector<std::string>{
            testing::MarmotBinary(), "-node-id=1", "-db-path=" + db, "-raft-path=" + raft,
            absl::StrCat("-bind=127.0.0.1:", testing::FreeLoopbackPort()),
            absl::StrCat("-bind-pane=127.0.0.1:", testing::FreeLoopbackPort()), "-shards=2"},
        dir);
  };
  // Pending rows in t's change log: 0 once every change committed.
  auto pending = [&] {
    auto out = sqlite::testing::RunSqliteCli(
        db, "SELECT count(*) FROM \"__marmot__t_change_log\" WHERE \"__marmot__state\" = 0;");
    return out.ok() ? *out : "error";
  };
  auto write_and_commit = [&](testing::Subprocess& marmot, int id) {
    ASSERT_TRUE(testing::WaitFor(
        [&] { return marmot.Stderr().find(" replicating ") != std::string::npos; }, 20s))
        << marmot.Stderr();
    ASSERT_TRUE(
        sqlite::testing::RunSqliteCli(db, absl::StrCat("INSERT INTO t VALUES (", id, ", 'x');"))
            .ok());
    ASSERT_TRUE(testing::WaitFor([&] { return pending() == "0\n"; }, 20s)) << marmot.Stderr();
  };

  // Given a node that founded its cluster, committed a write and stopped
  auto first = start();
  write_and_commit(*first, 1);
  EXPECT_THAT(first->Stderr(), HasSubstr("bootstrapped 2 shards"));
  first->Signal(SIGTERM);
  ASSERT_EQ(first->Wait(20s), std::optional<int>(0)) << first->Stderr();
  ASSERT_TRUE(std::filesystem::exists(raft + "/node-1/db/CURRENT"));
  // and its store laid out as older versions did, directly in -raft-path,
  for (const auto& entry : std::filesystem::directory_iterator(raft + "/node-1")) {
    std::filesystem::rename(entry.path(), raft + "/" + entry.path().filename().string());
  }
  std::filesystem::remove(raft + "/node-1");

  // when this version starts on it
  auto second = start();
  write_and_commit(*second, 2);
  // then it goes on with that store where it lies (no second bootstrap, no new folder)
  EXPECT_THAT(second->Stderr(), HasSubstr("node 1: using its raft store in " + raft +
                                          ", where an older version kept it"));
  EXPECT_THAT(second->Stderr(), ::testing::Not(HasSubstr("bootstrapped")));
  EXPECT_FALSE(std::filesystem::exists(raft + "/node-1"));
  second->Signal(SIGTERM);
  EXPECT_EQ(second->Wait(20s), std::optional<int>(0)) << second->Stderr();
  EXPECT_EQ(*sqlite::testing::RunSqliteCli(db, "SELECT group_concat(id) FROM t;"), "1,2\n");
}

TEST(MarmotCliTest, ABusyPanePortStopsMarmotBeforeItTouchesRaftState) {
  std::string dir = testing::NewTestDir("cli-busy");
  int pane_port = testing::FreeLoopbackPort();
  auto argv = [&](const std::string& raft) {
    return std::vector<std::string>{testing::MarmotBinary(),
                                    "-node-id=1",
                                    "-db-path=" + dir + "/app.db",
                                    "-raft-path=" + dir + "/" + raft,
                                    absl::StrCat("-bind=127.0.0.1:", testing::FreeLoopbackPort()),
                                    absl::StrCat("-bind-pane=127.0.0.1:", pane_port)};
  };
  testing::Subprocess first(argv("raft-1"), dir);
  ASSERT_TRUE(testing::WaitFor(
      [&] { return first.Stderr().find(" replicating ") != std::string::npos; }, 20s))
      << first.Stderr();
  // A second marmot on the same pane port fails fast, before creating its Raft folder.
  testing::RunResult second = testing::Run(argv("raft-2"), 20s);
  EXPECT_EQ(second.exit_code, 1) << second.err;
  EXPECT_THAT(second.err, HasSubstr("cannot listen"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/raft-2"));
  first.Signal(SIGTERM);
  EXPECT_EQ(first.Wait(20s), std::optional<int>(0));
}

TEST(MarmotCliTest, CleanupRefusesWhileANodeRunsAndThenRestoresSqliteMasterExactly) {
  std::string dir = testing::NewTestDir("cli-cleanup");
  std::string db = dir + "/app.db";
  ASSERT_TRUE(
      sqlite::testing::RunSqliteCli(db,
                                    "CREATE TABLE \"order\" (id INTEGER PRIMARY KEY, v);"
                                    "CREATE INDEX ov ON \"order\" (v); CREATE TABLE k (a, b);"
                                    "CREATE VIEW kv AS SELECT a FROM k;")
          .ok());
  const std::string dump =
      "SELECT type, name, tbl_name, rootpage, sql FROM sqlite_master ORDER BY 1, 2;";
  std::string before = *sqlite::testing::RunSqliteCli(db, dump);

  testing::Subprocess marmot({testing::MarmotBinary(), "-node-id=1", "-db-path=" + db,
                              absl::StrCat("-bind=127.0.0.1:", testing::FreeLoopbackPort()),
                              absl::StrCat("-bind-pane=127.0.0.1:", testing::FreeLoopbackPort()),
                              "-raft-path=" + dir + "/raft"},
                             dir);
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return sqlite::testing::RunSqliteCli(db, dump)->find("__marmot__") != std::string::npos;
      },
      10s));
  // Not while the node runs on the file (it would go on with tables that are gone), nor a
  // second node on the same file.
  testing::RunResult refused =
      testing::Run({testing::MarmotBinary(), "-cleanup", "-db-path=" + db}, 10s);
  EXPECT_EQ(refused.exit_code, 1) << refused.err;
  EXPECT_THAT(refused.err,
              HasSubstr(absl::StrCat("another marmot process (pid ", marmot.pid(), ") works on")));
  EXPECT_NE(*sqlite::testing::RunSqliteCli(db, dump), before);
  testing::RunResult second =
      testing::Run({testing::MarmotBinary(), "-node-id=2", "-db-path=" + db,
                    absl::StrCat("-bind=127.0.0.1:", testing::FreeLoopbackPort()),
                    absl::StrCat("-bind-pane=127.0.0.1:", testing::FreeLoopbackPort()),
                    "-raft-path=" + dir + "/raft-2"},
                   20s);
  EXPECT_NE(second.exit_code, 0) << second.err;
  EXPECT_THAT(second.err, HasSubstr("another marmot process"));
  marmot.Signal(SIGTERM);
  ASSERT_EQ(marmot.Wait(20s), std::optional<int>(0)) << marmot.Stderr();

  testing::RunResult r = testing::Run({testing::MarmotBinary(), "-cleanup", "-db-path=" + db}, 10s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(*sqlite::testing::RunSqliteCli(db, dump), before);
}

// SIGTERM must stop marmot whatever it is doing: here it is starting, and waits for the write
// lock an application holds (before, the signal waited until the application committed).
TEST(MarmotCliTest, ASignalWhileStartingStopsMarmotAtOnce) {
  // Given an application that holds the database's write lock for a minute
  std::string dir = testing::NewTestDir("cli-start-signal");
  std::string db = dir + "/app.db";
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(
                  db, "PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v);")
                  .ok());
  testing::Subprocess app(
      {"/bin/sh", "-c",
       "printf 'BEGIN IMMEDIATE;\\nINSERT INTO t VALUES (1, 1);\\nSELECT 42;\\n.shell sleep 60\\n"
       "COMMIT;\\n' | sqlite3 '" +
           db + "'"},
      dir);
  ASSERT_TRUE(testing::WaitFor([&] { return app.Stdout().find("42") != std::string::npos; }, 10s))
      << app.Stderr();
  // and marmot starting on that database, past its pane
  const int pane_port = testing::FreeLoopbackPort();
  testing::Subprocess marmot({testing::MarmotBinary(), "-node-id=1", "-db-path=" + db,
                              absl::StrCat("-bind=127.0.0.1:", testing::FreeLoopbackPort()),
                              absl::StrCat("-bind-pane=127.0.0.1:", pane_port),
                              "-raft-path=" + dir + "/raft", "-shards=2"},
                             dir);
  ASSERT_TRUE(testing::WaitFor(
      [&] { return marmot.Stderr().find("control pane listening") != std::string::npos; }, 20s))
      << marmot.Stderr();
  ASSERT_EQ(marmot.Wait(500ms), std::nullopt) << marmot.Stderr();

  // When SIGTERM arrives while it waits for the lock
  marmot.Signal(SIGTERM);

  // Then it exits with 0 within seconds (the application still holds the lock), saying why
  EXPECT_EQ(marmot.Wait(10s), std::optional<int>(0)) << marmot.Stderr();
  EXPECT_THAT(marmot.Stderr(), HasSubstr("while starting: exiting now"));
  EXPECT_EQ(app.Wait(0ms), std::nullopt);
}

}  // namespace
}  // namespace marmot
