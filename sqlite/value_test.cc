// Values round-trip through SQLite with their storage class kept exactly.
#include "sqlite/value.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "sqlite/database.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::sqlite {
namespace {

std::vector<Value> Samples() {
  return {
      Value::Null(),
      Value::Integer(0),
      Value::Integer(std::numeric_limits<int64_t>::min()),
      Value::Integer(std::numeric_limits<int64_t>::max()),
      Value::Real(2.0),  // A whole number that must stay REAL.
      Value::Real(-0.0),
      Value::Real(1e300),
      Value::Real(std::numeric_limits<double>::denorm_min()),
      Value::Text("2024-01-01"),  // A date stays TEXT.
      Value::Text("42"),          // Digits stay TEXT.
      Value::Text(""),
      Value::Text("Ünïcødé ✓ 日本"),
      Value::Blob(std::string("\0a\0", 3)),  // Zero bytes inside a BLOB.
      Value::Blob(""),                       // An empty BLOB is not NULL.
  };
}

TEST(ValueTest, RoundTripsThroughAnUntypedColumnExactly) {
  // Given a column without a declared type (no affinity, like marmot's change logs)
  auto db = Database::Open(testing::NewTempDir("value") + "/v.db");
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_TRUE(db->Exec("CREATE TABLE t (i INTEGER PRIMARY KEY, v)").ok());
  auto insert = db->Prepare("INSERT INTO t (i, v) VALUES (?1, ?2)");
  ASSERT_TRUE(insert.ok()) << insert.status();
  const std::vector<Value> samples = Samples();
  // When every sample is written and read back
  for (size_t i = 0; i < samples.size(); ++i) {
    ASSERT_TRUE(insert->BindAll({Value::Integer(i), samples[i]}).ok());
    ASSERT_TRUE(insert->Run().ok());
    insert->Reset();
  }
  auto rows = db->QueryRows("SELECT v, typeof(v) FROM t ORDER BY i");
  ASSERT_TRUE(rows.ok()) << rows.status();
  // Then each comes back identical, and SQLite agrees on its storage class
  ASSERT_EQ(rows->size(), samples.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    EXPECT_EQ((*rows)[i][0], samples[i]) << "sample " << i << ": " << samples[i].DebugString()
                                         << " came back as " << (*rows)[i][0].DebugString();
    std::string expected_type(StorageClassName(samples[i].storage_class()));
    for (char& c : expected_type) c = static_cast<char>(std::tolower(c));
    EXPECT_EQ((*rows)[i][1].bytes(), expected_type) << samples[i].DebugString();
  }
}

TEST(ValueTest, EqualityNeedsTheSameStorageClass) {
  EXPECT_NE(Value::Integer(2), Value::Real(2.0));
  EXPECT_NE(Value::Text("2"), Value::Integer(2));
  EXPECT_NE(Value::Text("ab"), Value::Blob("ab"));
  EXPECT_NE(Value::Blob(""), Value::Null());
  EXPECT_NE(Value::Real(0.0), Value::Real(-0.0));
  EXPECT_EQ(Value::Real(std::nan("")), Value::Real(std::nan("")));
  EXPECT_EQ(Value::Text("x"), Value::Text("x"));
}

TEST(ValueTest, DebugStringLooksLikeSql) {
  EXPECT_EQ(Value::Null().DebugString(), "NULL");
  EXPECT_EQ(Value::Integer(-7).DebugString(), "-7");
  EXPECT_EQ(Value::Real(2.0).DebugString(), "2.0");
  EXPECT_EQ(Value::Real(1e20).DebugString(), "1e+20");
  EXPECT_EQ(Value::Text("it's").DebugString(), "'it''s'");
  EXPECT_EQ(Value::Blob(std::string("\0\xff", 2)).DebugString(), "X'00ff'");
}

TEST(ValueTest, ValuesWrittenByTheSqliteShellKeepTheirClass) {
  // Given values written by another process
  std::string path = testing::NewTempDir("value-cli") + "/v.db";
  auto out =
      testing::RunSqliteCli(path,
                            "CREATE TABLE t (i INTEGER PRIMARY KEY, v);"
                            "INSERT INTO t VALUES (1, 2.0), (2, '2024-01-01'), (3, x'000100'),"
                            " (4, NULL), (5, 9007199254740993);");
  ASSERT_TRUE(out.ok()) << out.status();
  // When read through Statement
  auto db = Database::Open(path);
  ASSERT_TRUE(db.ok()) << db.status();
  auto rows = db->QueryRows("SELECT v FROM t ORDER BY i");
  ASSERT_TRUE(rows.ok()) << rows.status();
  // Then they are exactly what the shell wrote
  ASSERT_EQ(rows->size(), 5u);
  EXPECT_EQ((*rows)[0][0], Value::Real(2.0));
  EXPECT_EQ((*rows)[1][0], Value::Text("2024-01-01"));
  EXPECT_EQ((*rows)[2][0], Value::Blob(std::string("\0\x01\0", 3)));
  EXPECT_EQ((*rows)[3][0], Value::Null());
  EXPECT_EQ((*rows)[4][0], Value::Integer(9007199254740993));
}

}  // namespace
}  // namespace marmot::sqlite
