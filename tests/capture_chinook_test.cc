// End to end: the real Chinook dataset, loaded by the sqlite3 shell into a database beside a
// running marmot, ends up in the change logs row for row with exact values.
#include <glog/logging.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sqlite/change_log.h"
#include "sqlite/schema.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/loopback_port.h"
#include "tests/testing/paths.h"
#include "tests/testing/subprocess.h"

namespace marmot {
namespace {

using namespace std::chrono_literals;
using sqlite::Value;

constexpr int kChinookTables = 11;

// The dataset in two parts: the DDL (drops, tables, indexes) and the INSERTs.
std::pair<std::string, std::string> SplitChinook() {
  std::string sql = testing::ReadTextFile(testing::DatasetPath("Chinook_Sqlite.sql"));
  size_t first_insert = sql.find("INSERT INTO");
  CHECK_NE(first_insert, std::string::npos);
  return {sql.substr(0, first_insert), sql.substr(first_insert)};
}

std::string KeyString(const std::vector<Value>& key) {
  std::vector<std::string> parts;
  for (const Value& v : key) parts.push_back(v.DebugString());
  return absl::StrJoin(parts, ",");
}

// Checks that the change log of every table holds exactly one insert per row of the table, with
// the row's exact values. Returns the number of rows checked.
int64_t ExpectEveryRowCaptured(const std::string& db_path) {
  auto db = sqlite::Database::Open(db_path);
  EXPECT_TRUE(db.ok()) << db.status();
  auto listing = sqlite::ListUserTables(*db);
  EXPECT_TRUE(listing.ok()) << listing.status();
  EXPECT_EQ(listing->tables.size(), static_cast<size_t>(kChinookTables));
  int64_t checked = 0;
  for (const sqlite::TableSchema& t : listing->tables) {
    auto changes = sqlite::ReadChanges(*db, t, 0, 1 << 30);
    EXPECT_TRUE(changes.ok()) << changes.status();
    std::map<std::string, std::vector<Value>> captured;
    for (const sqlite::ChangeRecord& c : *changes) {
      EXPECT_EQ(c.op, sqlite::ChangeOp::kInsert) << t.name;
      EXPECT_TRUE(captured.emplace(KeyString(c.key), c.row).second)
          << t.name << ": key " << KeyString(c.key) << " captured twice";
    }
    std::vector<std::string> columns;
    for (const sqlite::ColumnInfo& c : t.columns)
      columns.push_back(sqlite::QuoteIdentifier(c.name));
    auto rows = db->QueryRows(absl::StrCat("SELECT ", absl::StrJoin(columns, ", "), " FROM ",
                                           sqlite::QuoteIdentifier(t.name)));
    EXPECT_TRUE(rows.ok()) << rows.status();
    EXPECT_GT(rows->size(), 0u) << t.name;
    EXPECT_EQ(rows->size(), captured.size()) << t.name;
    for (const std::vector<Value>& row : *rows) {
      std::vector<Value> key;
      for (const std::string& k : t.primary_key) {
        for (size_t i = 0; i < t.columns.size(); ++i) {
          if (t.columns[i].name == k) key.push_back(row[i]);
        }
      }
      auto it = captured.find(KeyString(key));
      if (it == captured.end()) {
        ADD_FAILURE() << t.name << ": row " << KeyString(key) << " is not in the change log";
        continue;
      }
      EXPECT_EQ(it->second, row) << t.name << " row " << KeyString(key);
      ++checked;
    }
  }
  return checked;
}

class CaptureChinookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::NewTestDir("chinook");
    db_ = dir_ + "/chinook.db";
  }
  std::unique_ptr<testing::Subprocess> StartMarmot() {
    auto p = std::make_unique<testing::Subprocess>(
        std::vector<std::string>{testing::MarmotBinary(), "-node-id=1", "-db-path=" + db_,
                                 absl::StrCat("-bind=127.0.0.1:", testing::FreeLoopbackPort()),
                                 absl::StrCat("-bind-pane=127.0.0.1:", testing::FreeLoopbackPort()),
                                 "-raft-path=" + dir_ + "/raft"},
        dir_);
    return p;
  }
  // Waits until marmot has put capture on all Chinook tables.
  bool WaitForCapture(testing::Subprocess& marmot) {
    return testing::WaitFor(
        [&] {
          auto n = sqlite::testing::RunSqliteCli(
              db_,
              "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE "
              "'\\_\\_marmot\\_\\_%' ESCAPE '\\';");
          return n.ok() && *n == absl::StrCat(6 * kChinookTables, "\n");  // 4 capture + 2 guards
        },
        20s);
  }
  std::string dir_, db_;
};

TEST_F(CaptureChinookTest, DataLoadedIntoAPreparedDatabaseIsCapturedRowForRow) {
  // Given the Chinook schema in a database that marmot prepared (and then stopped, so that it
  // does not ship the changes away while we look at them)
  auto [schema, data] = SplitChinook();
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(db_, schema).ok());
  auto marmot = StartMarmot();
  ASSERT_TRUE(WaitForCapture(*marmot)) << marmot->Stderr();
  marmot->Signal(SIGTERM);
  ASSERT_EQ(marmot->Wait(20s), std::optional<int>(0)) << marmot->Stderr();

  // When the sqlite3 shell loads every row
  auto loaded = sqlite::testing::RunSqliteCli(db_, data);
  ASSERT_TRUE(loaded.ok()) << loaded.status();

  // Then every row of every table is in its change log, once, with exact values
  int64_t checked = ExpectEveryRowCaptured(db_);
  EXPECT_EQ(checked, 15607);  // Every row of Chinook.
}

}  // namespace
}  // namespace marmot
