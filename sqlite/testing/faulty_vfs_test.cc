// FaultyVfs: while a fault covers a database, its commits fail as on a full (or failing) disk,
// SQLite rolls the transaction back, the status says which it was, other files are untouched,
// and once healed the same connection writes again.
#include "sqlite/testing/faulty_vfs.h"

#include <glog/logging.h>
#include <gtest/gtest.h>

#include "sqlite/database.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::sqlite::testing {
namespace {

class FaultyVfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    vfs_ = FaultyVfs::Install("faulty-vfs-test", /*make_default=*/true);
    vfs_->Heal();
  }
  void TearDown() override { vfs_->Heal(); }

  static Database OpenWal(const std::string& path) {
    absl::StatusOr<Database> db = Database::Open(path);
    CHECK(db.ok()) << db.status();
    CHECK(db->EnsureWal().ok());
    return *std::move(db);
  }
  static std::string Rows(const std::string& path) {
    absl::StatusOr<std::string> out = RunSqliteCli(path, "SELECT group_concat(v) FROM t;");
    CHECK(out.ok()) << out.status();
    return *out;
  }

  FaultyVfs* vfs_ = nullptr;
};

TEST_F(FaultyVfsTest, AFullDiskRollsTheCommitBackAndHealingLetsTheConnectionWriteAgain) {
  const std::string path = NewDatabase("faulty-vfs", "CREATE TABLE t (v)");
  const std::string other = NewDatabase("faulty-vfs-other", "CREATE TABLE t (v)");
  Database db = OpenWal(path);
  Database other_db = OpenWal(other);
  ASSERT_TRUE(db.Exec("INSERT INTO t VALUES ('before')").ok());
  // Given a full disk under `path`,
  vfs_->FailWrites(path, SQLITE_FULL);
  const int64_t refused = vfs_->refused();
  // when a transaction commits there,
  ASSERT_TRUE(db.Exec("BEGIN IMMEDIATE; INSERT INTO t VALUES ('lost')").ok());
  absl::Status s = db.Exec("COMMIT");
  // the commit fails with SQLITE_FULL and SQLite rolled the whole transaction back,
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(ResultCode(s) & 0xff, SQLITE_FULL) << s;
  EXPECT_TRUE(IsStorageFailure(s));
  EXPECT_NE(sqlite3_get_autocommit(db.raw()), 0) << "the transaction is still open";
  EXPECT_GT(vfs_->refused(), refused);
  // while another database writes on,
  EXPECT_TRUE(other_db.Exec("INSERT INTO t VALUES ('other')").ok());
  // and once space returns the same connection commits again; nothing of the failed one stayed.
  vfs_->Heal();
  ASSERT_TRUE(db.Exec("INSERT INTO t VALUES ('after')").ok());
  EXPECT_EQ(Rows(path), "before,after\n");
  EXPECT_EQ(Rows(other), "other\n");
}

TEST_F(FaultyVfsTest, AnIoErrorIsReportedAsOne) {
  const std::string path = NewDatabase("faulty-vfs-io", "CREATE TABLE t (v)");
  Database db = OpenWal(path);
  vfs_->FailWrites(path, SQLITE_IOERR_WRITE);
  absl::Status s = db.Exec("INSERT INTO t VALUES ('lost')");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(ResultCode(s), SQLITE_IOERR_WRITE) << s;
  EXPECT_TRUE(IsStorageFailure(s));
  vfs_->Heal();
  ASSERT_TRUE(db.Exec("INSERT INTO t VALUES ('after')").ok());
  EXPECT_EQ(Rows(path), "after\n");
}

TEST_F(FaultyVfsTest, OtherErrorsCarryTheirCodeAndAreNoStorageFailure) {
  const std::string path = NewDatabase("faulty-vfs-other-errors", "CREATE TABLE t (v UNIQUE)");
  Database db = OpenWal(path);
  ASSERT_TRUE(db.Exec("INSERT INTO t VALUES (1)").ok());
  absl::Status s = db.Exec("INSERT INTO t VALUES (1)");
  EXPECT_EQ(ResultCode(s) & 0xff, SQLITE_CONSTRAINT) << s;
  EXPECT_FALSE(IsStorageFailure(s));
  EXPECT_EQ(ResultCode(absl::InternalError("made elsewhere")), SQLITE_OK);
}

}  // namespace
}  // namespace marmot::sqlite::testing
