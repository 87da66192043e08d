// The id layout (marmot_ids.h) and the loadable extension libmarmot_ids.so in a real SQLite
// connection.
#include "sqlite/marmot_ids.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

namespace marmot::ids {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kSomeDay = 1765000000000;  // 2025-12-06, ms since 1970.

int64_t TickAt(int64_t last, int64_t unix_millis) {
  int64_t tick = 0;
  std::string error;
  EXPECT_TRUE(NextTick(last, unix_millis, &tick, &error)) << error;
  return tick;
}

TEST(IdLayoutTest, PartsGoWhereTheHeaderSays) {
  const int64_t tick = TickAt(0, kEpochUnixMillis + 1);  // 1 ms after the epoch, sequence 0.
  EXPECT_EQ(tick, 4096);
  const int64_t id = ComposeId(tick + 5, 3);
  EXPECT_EQ(id, (int64_t{1} << 22) | (3 << 12) | 5);
  const IdParts parts = SplitId(id);
  EXPECT_EQ(parts.unix_millis, kEpochUnixMillis + 1);
  EXPECT_EQ(parts.node, 3);
  EXPECT_EQ(parts.sequence, 5);
  // The last tick of 2094 on the highest node is still a positive int64.
  EXPECT_GT(ComposeId(kTickLimit - 1, kMaxNodeId), 0);
  EXPECT_EQ(SplitId(ComposeId(kTickLimit - 1, kMaxNodeId)).node, kMaxNodeId);
}

TEST(IdLayoutTest, EveryNodeGetsOtherIdsForTheSameTicks) {
  // Every node issuing 4,200 ids (more than one millisecond holds) at the same clock reading.
  std::set<int64_t> seen;
  for (int64_t node = 1; node <= kMaxNodeId; node += 1) {
    int64_t tick = 0;
    for (int i = 0; i < 4200; ++i) {
      tick = TickAt(tick, kSomeDay);
      ASSERT_TRUE(seen.insert(ComposeId(tick, node)).second) << "node " << node << " id " << i;
    }
  }
  EXPECT_EQ(seen.size(), 4200u * kMaxNodeId);
}

TEST(IdLayoutTest, ABurstWithinOneMillisecondRunsAheadAndStaysOrdered) {
  int64_t last = 0, last_id = 0;
  for (int i = 0; i < 10000; ++i) {
    last = TickAt(last, kSomeDay);
    const int64_t id = ComposeId(last, 9);
    ASSERT_GT(id, last_id);
    last_id = id;
  }
  // 10,000 ids need three milliseconds of 4,096: the last is two ms ahead of the clock.
  EXPECT_EQ(SplitId(last_id).unix_millis, kSomeDay + 2);
  EXPECT_EQ(SplitId(last_id).sequence, 10000 - 2 * 4096 - 1);
  // Once the clock passes it, ids follow the clock again.
  EXPECT_EQ(SplitId(ComposeId(TickAt(last, kSomeDay + 50), 9)).unix_millis, kSomeDay + 50);
}

TEST(IdLayoutTest, AClockGoingBackDoesNotTakeIdsBack) {
  const int64_t late = TickAt(0, kSomeDay + 60000);
  const int64_t after_jump_back = TickAt(late, kSomeDay);
  EXPECT_EQ(after_jump_back, late + 1);
  EXPECT_GT(ComposeId(after_jump_back, 1), ComposeId(late, 1));
}

TEST(IdLayoutTest, RefusesBadNodeIdsClockAndState) {
  for (int64_t bad : {int64_t{0}, int64_t{-1}, int64_t{1024}, int64_t{1} << 40}) {
    EXPECT_THAT(CheckNodeId(bad), HasSubstr("node id " + std::to_string(bad) + " is out of range"));
    EXPECT_THAT(CheckNodeId(bad), HasSubstr("1 to 1023"));
  }
  EXPECT_EQ(CheckNodeId(1), "");
  EXPECT_EQ(CheckNodeId(1023), "");
  int64_t tick = 0;
  std::string error;
  EXPECT_FALSE(NextTick(0, kEpochUnixMillis - 1, &tick, &error));
  EXPECT_THAT(error, HasSubstr("before 2025"));
  EXPECT_FALSE(NextTick(kTickLimit - 1, kSomeDay, &tick, &error));
  EXPECT_THAT(error, HasSubstr("ran out"));
  EXPECT_FALSE(NextTick(-5, kSomeDay, &tick, &error));
  EXPECT_THAT(error, HasSubstr("not a tick"));
  EXPECT_FALSE(NextTick(0, int64_t{1} << 62, &tick, &error));  // The year 146 million.
  EXPECT_THAT(error, HasSubstr("ran out"));
}

std::string TempPath(const std::string& name) {
  const char* dir = getenv("TEST_TMPDIR");
  const std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
  std::filesystem::remove(path);
  return path;
}

TEST(TickFileTest, TwoHoldersOfOneFileShareItsTicks) {
  const std::string path = TempPath("shared-ticks");
  TickFile a(path, 0600), b(path, 0600);
  std::set<int64_t> ticks;
  std::string error;
  int64_t tick = 0, last = 0;
  for (int i = 0; i < 3000; ++i) {
    ASSERT_TRUE((i % 2 == 0 ? a : b).Take(kSomeDay, &tick, &error)) << error;
    ASSERT_GT(tick, last);
    last = tick;
  }
  // A holder made later (a new process) goes on from there, even with an earlier clock.
  TickFile c(path, 0600);
  ASSERT_TRUE(c.Take(kSomeDay - 1000, &tick, &error)) << error;
  EXPECT_EQ(tick, last + 1);
}

TEST(TickFileTest, ProcessesTakingTicksAtOnceNeverShareOne) {
  const std::string path = TempPath("process-ticks");
  constexpr int kProcesses = 4, kEach = 3000;
  std::vector<std::string> outputs;
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    outputs.push_back(TempPath("ticks-of-" + std::to_string(p)));
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      TickFile ticks(path, 0600);
      FILE* out = std::fopen(outputs.back().c_str(), "w");
      std::string error;
      int64_t tick = 0;
      for (int i = 0; i < kEach; ++i) {
        if (!ticks.Take(kSomeDay, &tick, &error)) _exit(1);  // One clock reading for all.
        std::fprintf(out, "%lld\n", static_cast<long long>(tick));
      }
      std::fclose(out);
      _exit(0);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  std::set<int64_t> all;
  for (const std::string& output : outputs) {
    std::ifstream in(output);
    int64_t tick = 0, last = 0;
    while (in >> tick) {
      EXPECT_GT(tick, last) << output;  // Each process sees its own ticks grow.
      last = tick;
      all.insert(tick);
    }
  }
  EXPECT_EQ(all.size(), size_t{kProcesses * kEach});
}

TEST(TickFileTest, ADamagedFileIsRefusedWithItsName) {
  const std::string path = TempPath("damaged-ticks");
  std::ofstream(path) << "abc";
  TickFile ticks(path, 0600);
  int64_t tick = 0;
  std::string error;
  EXPECT_FALSE(ticks.Take(kSomeDay, &tick, &error));
  EXPECT_THAT(error, HasSubstr(path + " holds 3 bytes, not 8"));
  std::ofstream(path, std::ios::trunc) << "\xff\xff\xff\xff\xff\xff\xff\xff";  // -1.
  EXPECT_FALSE(ticks.Take(kSomeDay, &tick, &error));
  EXPECT_THAT(error, HasSubstr("remove " + path));
}

// A SQLite connection with libmarmot_ids.so loaded, as an application opens one.
class ExtensionTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (sqlite3* db : open_) sqlite3_close(db);
    unsetenv("MARMOT_NODE_ID");
  }

  sqlite3* Open(const std::string& path) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    open_.push_back(db);
    sqlite3_enable_load_extension(db, 1);
    const std::string so = std::string(getenv("TEST_SRCDIR")) + "/marmot/sqlite/libmarmot_ids";
    char* error = nullptr;
    EXPECT_EQ(sqlite3_load_extension(db, so.c_str(), nullptr, &error), SQLITE_OK)
        << (error ? error : "");
    sqlite3_free(error);
    return db;
  }

  // The one value `sql` returns, as text, or "error: <message>".
  static std::string Query(sqlite3* db, const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      return std::string("error: ") + sqlite3_errmsg(db);
    }
    std::string out;
    const int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      out = text ? reinterpret_cast<const char*>(text) : "NULL";
    } else if (rc != SQLITE_DONE) {
      out = std::string("error: ") + sqlite3_errmsg(db);
    }
    sqlite3_finalize(stmt);
    return out;
  }

  std::vector<sqlite3*> open_;
};

TEST_F(ExtensionTest, MarmotIdTakesTheNodeFromTheEnvironmentOrItsArgument) {
  setenv("MARMOT_NODE_ID", "7", 1);
  sqlite3* db = Open(":memory:");
  EXPECT_EQ(Query(db, "SELECT marmot_id_node(marmot_id());"), "7");
  EXPECT_EQ(Query(db, "SELECT marmot_id_node(marmot_id(1023));"), "1023");
  EXPECT_EQ(Query(db, "SELECT marmot_id() < marmot_id();"), "1");
  EXPECT_EQ(Query(db, "SELECT typeof(marmot_id());"), "integer");
  EXPECT_EQ(Query(db, "SELECT marmot_id_node(NULL);"), "NULL");
}

TEST_F(ExtensionTest, BadNodeIdsAreRefusedWithTheValidRange) {
  sqlite3* without = Open(":memory:");  // MARMOT_NODE_ID unset.
  EXPECT_THAT(Query(without, "SELECT marmot_id();"), HasSubstr("set MARMOT_NODE_ID"));
  EXPECT_THAT(Query(without, "SELECT marmot_id(0);"), HasSubstr("node id 0 is out of range"));
  EXPECT_THAT(Query(without, "SELECT marmot_id(1024);"), HasSubstr("1 to 1023"));
  EXPECT_THAT(Query(without, "SELECT marmot_id('two');"), HasSubstr("must be an integer"));
  EXPECT_THAT(Query(without, "SELECT marmot_id(NULL);"), HasSubstr("must be an integer"));
  EXPECT_THAT(Query(without, "SELECT marmot_id(1, 2);"), HasSubstr("no argument or one"));
  setenv("MARMOT_NODE_ID", "1024", 1);
  EXPECT_THAT(Query(Open(":memory:"), "SELECT marmot_id();"), HasSubstr("1 to 1023"));
  setenv("MARMOT_NODE_ID", "3x", 1);
  EXPECT_THAT(Query(Open(":memory:"), "SELECT marmot_id();"),
              HasSubstr("MARMOT_NODE_ID='3x' is not a node id"));
}

TEST_F(ExtensionTest, AnInsertedIdIsTheRowidApplicationsRead) {
  sqlite3* db = Open(":memory:");
  Query(db, "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);");
  Query(db, "INSERT INTO t (id, v) VALUES (marmot_id(2), 'x');");
  EXPECT_EQ(Query(db, "SELECT id = last_insert_rowid() FROM t;"), "1");
  EXPECT_EQ(Query(db, "SELECT marmot_id_node(id) FROM t;"), "2");
}

TEST_F(ExtensionTest, ADefaultCallsItExceptOnAnIntegerPrimaryKey) {
  sqlite3* db = Open(":memory:");
  // A key that is not the rowid (WITHOUT ROWID, or a type other than INTEGER) takes it.
  Query(db, "CREATE TABLE w (id INTEGER PRIMARY KEY DEFAULT (marmot_id(4)), v) WITHOUT ROWID;");
  Query(db, "INSERT INTO w (v) VALUES ('x');");
  EXPECT_EQ(Query(db, "SELECT marmot_id_node(id) FROM w;"), "4");
  // SQLite never uses the DEFAULT of an INTEGER PRIMARY KEY: an omitted id is its rowid.
  Query(db, "CREATE TABLE r (id INTEGER PRIMARY KEY DEFAULT (marmot_id(4)), v);");
  Query(db, "INSERT INTO r (v) VALUES ('x');");
  EXPECT_EQ(Query(db, "SELECT id FROM r;"), "1");
}

TEST_F(ExtensionTest, ConnectionsToOneDatabaseShareTheTickFileBesideIt) {
  const std::string path = TempPath("shared.db");
  std::filesystem::remove(path + "-marmot-id");
  sqlite3* a = Open(path);
  sqlite3* b = Open(path);
  std::set<std::string> ids;
  for (int i = 0; i < 2000; ++i) {
    ids.insert(Query(i % 2 == 0 ? a : b, "SELECT marmot_id(5);"));
  }
  EXPECT_EQ(ids.size(), 2000u);
  EXPECT_EQ(std::filesystem::file_size(path + "-marmot-id"), 8u);
}

}  // namespace
}  // namespace marmot::ids
