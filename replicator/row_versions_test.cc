// RowVersions::KeyOf computes a row's version key without SQLite for every storage class but
// REAL: it must be exactly what the capture triggers compute with SQLite's quote() (the
// trigger's key and the applier's must meet), for every value a key can hold.
#include "replicator/row_versions.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using sqlite::Value;

class RowVersionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<sqlite::Database> opened =
        sqlite::Database::Open(sqlite::testing::NewDatabase("row-versions", ""));
    ASSERT_TRUE(opened.ok()) << opened.status();
    db_ = std::make_unique<sqlite::Database>(*std::move(opened));
    versions_ = std::make_unique<RowVersions>(*db_);
  }

  void ExpectSameAsSqlite(const std::vector<Value>& key) {
    absl::StatusOr<std::string> fast = versions_->KeyOf(key);
    absl::StatusOr<std::string> by_sqlite = versions_->KeyOfBySqlite(key);
    ASSERT_TRUE(fast.ok()) << fast.status();
    ASSERT_TRUE(by_sqlite.ok()) << by_sqlite.status();
    EXPECT_EQ(*fast, *by_sqlite);
  }

  std::unique_ptr<sqlite::Database> db_;
  std::unique_ptr<RowVersions> versions_;
};

TEST_F(RowVersionsTest, KeysAreWhatSqliteQuoteWritesForEveryStorageClass) {
  const std::vector<Value> values = {
      Value::Null(),
      Value::Integer(0),
      Value::Integer(-1),
      Value::Integer(42),
      Value::Integer(std::numeric_limits<int64_t>::min()),
      Value::Integer(std::numeric_limits<int64_t>::max()),
      Value::Real(1.5),
      Value::Real(0.1),
      Value::Real(-0.0),
      Value::Real(1e300),
      Value::Real(100.0),
      Value::Text(""),
      Value::Text("plain"),
      Value::Text("it's 'quoted'"),
      Value::Text("''"),
      Value::Text("comma,separated"),
      Value::Text("caf\xc3\xa9 \xe2\x82\xac"),
      Value::Text("\xff\xfe not UTF-8"),
      Value::Text(std::string("a\0b", 3)),
      Value::Text(std::string("\0", 1)),
      Value::Text("X'00'"),
      Value::Blob(""),
      Value::Blob(std::string("\0\x01\xab\xff", 4)),
      Value::Blob("text as a blob"),
  };
  for (const Value& v : values) {
    SCOPED_TRACE(v.DebugString());
    ExpectSameAsSqlite({v});
  }
  // Composite keys, in order, joined by commas.
  for (const Value& a : values) {
    for (const Value& b : values) ExpectSameAsSqlite({a, b});
  }
}

TEST_F(RowVersionsTest, RandomTextsAndBlobsAreWhatSqliteWrites) {
  std::mt19937_64 random(7);
  for (int i = 0; i < 2000; ++i) {
    std::string bytes(random() % 12, '\0');
    for (char& c : bytes) c = static_cast<char>(random() % 256);
    ExpectSameAsSqlite({Value::Text(bytes)});
    ExpectSameAsSqlite({Value::Blob(bytes), Value::Integer(static_cast<int64_t>(random()))});
  }
}

}  // namespace
}  // namespace marmot::replicator
