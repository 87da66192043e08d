// RowVersions::KeyOf computes a row's version key without SQLite for every storage class but
// REAL: it must be exactly what the capture triggers compute with SQLite's quote() (the
// trigger's key and the applier's must meet), for every value a key can hold.
#include "replicator/row_versions.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sqlite/change_log.h"
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

namespace marmot::replicator {
namespace {

class RowVersionsBatchTest : public RowVersionsTest {
 protected:
  void SetUp() override {
    RowVersionsTest::SetUp();
    ASSERT_TRUE(db_->Exec(sqlite::kCreateRowVersions).ok());
  }
  static RowVersion At(uint64_t index, int64_t change_id) {
    return {.shard = 0, .raft_index = index, .origin = 1, .change_id = change_id, .columns = 2};
  }
  // What the table holds for `key` (as stored) of `table`: "index/change_id", or "none".
  std::string Stored(const std::string& table, const Value& key) {
    absl::StatusOr<std::vector<std::vector<Value>>> rows = db_->QueryRows(
        absl::StrCat("SELECT raft_index, change_id FROM \"__marmot__versions\" WHERE tbl = ",
                     Value::Text(table).DebugString(), " AND key = ", key.DebugString()));
    if (!rows.ok()) return std::string(rows.status().message());
    if (rows->empty()) return "none";
    return absl::StrCat((*rows)[0][0].integer(), "/", (*rows)[0][1].integer());
  }
  std::string Read(const std::string& table, const std::string& key) {
    absl::StatusOr<std::optional<RowVersion>> v = versions_->Get(table, key);
    if (!v.ok()) return std::string(v.status().message());
    if (!v->has_value()) return "none";
    return absl::StrCat((*v)->raft_index, "/", (*v)->change_id);
  }
};

TEST_F(RowVersionsBatchTest, ABatchReadsAndWritesWhatSingleCallsWould) {
  ASSERT_TRUE(versions_->Set("t", "1", At(5, 10)).ok());
  ASSERT_TRUE(versions_->Set("t", "2", At(5, 20)).ok());
  auto batch = versions_->BeginBatch("t", {"1", "2", "3", "1"});
  ASSERT_TRUE(batch.ok()) << batch.status();
  // One batch at a time: a second is a programming error.
  EXPECT_DEATH((void)versions_->BeginBatch("t", {}), "open already");
  EXPECT_EQ(Read("t", "1"), "5/10");
  EXPECT_EQ(Read("t", "3"), "none");
  EXPECT_EQ(Read("t", "4"), "none");  // Not named at the start: read when asked.
  // Set's rule: never over a version of a later index.
  ASSERT_TRUE(versions_->Set("t", "1", At(4, 9)).ok());
  EXPECT_EQ(Read("t", "1"), "5/10");
  ASSERT_TRUE(versions_->Set("t", "1", At(7, 11)).ok());
  ASSERT_TRUE(versions_->Set("t", "3", At(7, 30)).ok());
  ASSERT_TRUE(versions_->Set("t", "4", At(7, 40)).ok());
  EXPECT_EQ(Read("t", "1"), "7/11");
  // Held until the end; another table is written at once.
  EXPECT_EQ(Stored("t", Value::Integer(1)), "5/10");
  EXPECT_EQ(Stored("t", Value::Integer(3)), "none");
  ASSERT_TRUE(versions_->Set("u", "1", At(7, 50)).ok());
  EXPECT_EQ(Stored("u", Value::Integer(1)), "7/50");
  ASSERT_TRUE((*batch)->End().ok());
  EXPECT_EQ(Stored("t", Value::Integer(1)), "7/11");
  EXPECT_EQ(Stored("t", Value::Integer(2)), "5/20");
  EXPECT_EQ(Stored("t", Value::Integer(3)), "7/30");
  EXPECT_EQ(Stored("t", Value::Integer(4)), "7/40");
  batch->reset();
  // The table's rule holds for what a batch writes too: a later index stored stays.
  ASSERT_TRUE(versions_->Set("t", "5", At(9, 90)).ok());
  auto again = versions_->BeginBatch("t", {});
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE(versions_->Set("t", "5", At(8, 80)).ok());
  ASSERT_TRUE((*again)->End().ok());
  EXPECT_EQ(Stored("t", Value::Integer(5)), "9/90");
}

TEST_F(RowVersionsBatchTest, HeldListsTheHeldVersionsOfATableAsGetReadsThem) {
  auto held_at = [](uint64_t index, int64_t change_id) {
    RowVersion v = At(index, change_id);
    v.held = absl::StrCat("held ", change_id);
    return v;
  };
  auto listed = [&](const std::string& table) {
    absl::StatusOr<std::vector<std::pair<std::string, RowVersion>>> held = versions_->Held(table);
    if (!held.ok()) return std::string(held.status().message());
    std::string out;
    for (const auto& [key, v] : *held) absl::StrAppend(&out, key, ":", v.held, " ");
    return out;
  };
  ASSERT_TRUE(versions_->Set("t", "1", held_at(5, 10)).ok());
  ASSERT_TRUE(versions_->Set("t", "2", At(5, 20)).ok());
  ASSERT_TRUE(versions_->Set("t", "3", held_at(5, 30)).ok());
  ASSERT_TRUE(versions_->Set("u", "1", held_at(5, 40)).ok());
  EXPECT_EQ(listed("t"), "1:held 10 3:held 30 ");
  EXPECT_EQ(listed("u"), "1:held 40 ");
  EXPECT_EQ(listed("v"), "");
  // An open batch's versions count: one held since, one written since.
  {
    auto batch = versions_->BeginBatch("t", {"1"});
    ASSERT_TRUE(batch.ok()) << batch.status();
    ASSERT_TRUE(versions_->Set("t", "1", At(6, 11)).ok());
    ASSERT_TRUE(versions_->Set("t", "2", held_at(6, 21)).ok());
    EXPECT_EQ(listed("t"), "2:held 21 3:held 30 ");
  }
  // A newer deferred version (this node's own) is not held.
  versions_->Defer("t", "3", At(7, 31));
  EXPECT_EQ(listed("t"), "1:held 10 ");
}

TEST_F(RowVersionsBatchTest, ManyRowsAreWrittenAndADroppedBatchWritesNothing) {
  std::vector<std::string> keys;
  for (int i = 0; i < 150; ++i) keys.push_back(absl::StrCat(i));
  for (int i = 0; i < 150; i += 3) ASSERT_TRUE(versions_->Set("t", keys[i], At(1, i)).ok());
  {
    auto batch = versions_->BeginBatch("t", keys);
    ASSERT_TRUE(batch.ok()) << batch.status();
    for (int i = 0; i < 150; ++i) {
      EXPECT_EQ(Read("t", keys[i]), i % 3 == 0 ? absl::StrCat("1/", i) : "none") << i;
      ASSERT_TRUE(versions_->Set("t", keys[i], At(2, 1000 + i)).ok());
    }
    ASSERT_TRUE((*batch)->End().ok());
  }
  for (int i = 0; i < 150; ++i)
    EXPECT_EQ(Stored("t", Value::Integer(i)), absl::StrCat("2/", 1000 + i));
  {
    auto dropped = versions_->BeginBatch("t", {"x"});
    ASSERT_TRUE(dropped.ok());
    ASSERT_TRUE(versions_->Set("t", "x", At(3, 1)).ok());
  }
  EXPECT_EQ(Stored("t", Value::Text("x")), "none");
  EXPECT_EQ(Read("t", "x"), "none");
  EXPECT_TRUE(versions_->BeginBatch("t", {}).ok());
}

// The triggers look a row's version up with RowVersionKeySql, the applier writes and reads it
// by KeyOf's text: they must meet on one row for every key, and keys that differ only by
// storage class (1, '1', 1.0) must stay apart.
TEST_F(RowVersionsBatchTest, EveryKeyMeetsTheTriggersAndAKeyOfOneIntegerIsStoredAsThatInteger) {
  const std::vector<std::vector<Value>> keys = {
      {Value::Integer(1)},
      {Value::Text("1")},
      {Value::Real(1.0)},
      {Value::Blob("1")},
      {Value::Integer(0)},
      {Value::Integer(-1)},
      {Value::Text("-1")},
      {Value::Text("01")},
      {Value::Integer(12)},
      {Value::Integer(std::numeric_limits<int64_t>::min())},
      {Value::Integer(std::numeric_limits<int64_t>::max())},
      {Value::Real(1.5)},
      {Value::Real(-0.0)},
      {Value::Null()},
      {Value::Text("")},
      {Value::Text(std::string("a\0b", 3))},
      {Value::Integer(1), Value::Integer(2)},
      {Value::Integer(1), Value::Text("2")},
      {Value::Text("1,2")},
  };
  std::vector<std::string> texts;
  for (const std::vector<Value>& key : keys) {
    absl::StatusOr<std::string> text = versions_->KeyOf(key);
    ASSERT_TRUE(text.ok()) << text.status();
    texts.push_back(*text);
  }
  // Half written one by one, half through a batch.
  const size_t half = keys.size() / 2;
  for (size_t i = 0; i < half; ++i) ASSERT_TRUE(versions_->Set("t", texts[i], At(1, i)).ok());
  {
    auto batch = versions_->BeginBatch("t", texts);
    ASSERT_TRUE(batch.ok()) << batch.status();
    for (size_t i = half; i < keys.size(); ++i) {
      ASSERT_TRUE(versions_->Set("t", texts[i], At(1, i)).ok());
    }
    ASSERT_TRUE((*batch)->End().ok());
  }
  EXPECT_EQ(*db_->QueryValue("SELECT count(*) FROM \"__marmot__versions\""),
            Value::Integer(static_cast<int64_t>(keys.size())));
  for (size_t i = 0; i < keys.size(); ++i) {
    SCOPED_TRACE(texts[i]);
    std::vector<std::string> params;
    for (size_t p = 0; p < keys[i].size(); ++p) params.push_back(absl::StrCat("?", p + 1));
    absl::StatusOr<sqlite::Statement> stmt = db_->Prepare(
        absl::StrCat("SELECT change_id, typeof(key) FROM \"__marmot__versions\" WHERE tbl = 't' "
                     "AND key = ",
                     sqlite::RowVersionKeySql(params)));
    ASSERT_TRUE(stmt.ok()) << stmt.status();
    ASSERT_TRUE(stmt->BindAll(keys[i]).ok());
    absl::StatusOr<bool> found = stmt->Step();
    ASSERT_TRUE(found.ok() && *found);
    EXPECT_EQ(stmt->Column(0).integer(), static_cast<int64_t>(i));
    const bool one_integer =
        keys[i].size() == 1 && keys[i][0].storage_class() == sqlite::StorageClass::kInteger;
    EXPECT_EQ(stmt->Column(1).bytes(), one_integer ? "integer" : "text");
    EXPECT_EQ(Read("t", texts[i]), absl::StrCat("1/", i));
  }
  // Read back in a batch and for a snapshot, by the same texts.
  auto batch = versions_->BeginBatch("t", texts);
  ASSERT_TRUE(batch.ok()) << batch.status();
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(Read("t", texts[i]), absl::StrCat("1/", i));
  ASSERT_TRUE((*batch)->End().ok());
  std::map<std::string, int64_t> of_shard;
  ASSERT_TRUE(versions_
                  ->ForEachOfShard(
                      0,
                      [&](const std::string& table, const std::string& key, const RowVersion& v) {
                        of_shard[key] = v.change_id;
                        return absl::OkStatus();
                      })
                  .ok());
  std::map<std::string, int64_t> expected;
  for (size_t i = 0; i < keys.size(); ++i) expected[texts[i]] = static_cast<int64_t>(i);
  EXPECT_EQ(of_shard, expected);
}

}  // namespace
}  // namespace marmot::replicator
