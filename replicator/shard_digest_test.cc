// Digests and key listings of a shard's rows: the same rows give the same digest whatever order
// they were written in; a value in another storage class, another value, a row more or a column
// more give another; keys are listed in key order, by pages, with the hash of their row.
#include "replicator/shard_digest.h"

#include <glog/logging.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using sqlite::Value;

constexpr char kSchema[] =
    "CREATE TABLE t (id INTEGER PRIMARY KEY, v);"
    "CREATE TABLE pair (a TEXT COLLATE NOCASE, b INTEGER, w, PRIMARY KEY (a, b)) WITHOUT ROWID;"
    "CREATE TABLE loose (x, y);";

sqlite::Database Open(const std::string& label, const std::string& sql) {
  auto db = sqlite::Database::Open(sqlite::testing::NewDatabase(label, absl::StrCat(kSchema, sql)));
  CHECK(db.ok()) << db.status();
  return *std::move(db);
}

// Every table's digest in every shard of `shards`.
std::vector<std::vector<TableDigest>> Digests(sqlite::Database& db, int shards) {
  ShardRouter router(shards);
  std::vector<std::vector<TableDigest>> out;
  for (int shard = 0; shard < shards; ++shard) {
    auto d = DigestShard(db, router, shard);
    CHECK(d.ok()) << d.status();
    out.push_back(*d);
  }
  return out;
}

bool Same(const std::vector<std::vector<TableDigest>>& a,
          const std::vector<std::vector<TableDigest>>& b) {
  if (a.size() != b.size()) return false;
  for (size_t s = 0; s < a.size(); ++s) {
    if (a[s].size() != b[s].size()) return false;
    for (size_t t = 0; t < a[s].size(); ++t) {
      if (a[s][t].table != b[s][t].table || a[s][t].rows != b[s][t].rows ||
          a[s][t].digest != b[s][t].digest) {
        return false;
      }
    }
  }
  return true;
}

constexpr char kRowsForward[] =
    "INSERT INTO t VALUES (1, 'one'), (2, 2.5), (3, X'00ff'), (4, NULL), (5, 5);"
    "INSERT INTO pair VALUES ('a', 1, 'x'), ('B', 2, 'y'), ('c', 3, 'z');";
constexpr char kRowsBackward[] =
    "INSERT INTO pair VALUES ('c', 3, 'z'), ('B', 2, 'y'), ('a', 1, 'x');"
    "INSERT INTO t VALUES (5, 5), (4, NULL), (3, X'00ff'), (2, 2.5), (1, 'one');";

TEST(ShardDigestTest, TheSameRowsWrittenInAnotherOrderGiveTheSameDigests) {
  sqlite::Database a = Open("digest-forward", kRowsForward);
  sqlite::Database b = Open("digest-backward", kRowsBackward);
  // Rows that came and went leave nothing behind.
  ASSERT_TRUE(b.Exec("INSERT INTO t VALUES (9, 'gone'); DELETE FROM t WHERE id = 9;").ok());
  const auto da = Digests(a, 4), db = Digests(b, 4);
  EXPECT_TRUE(Same(da, db));
  int64_t rows = 0;
  for (const auto& shard : da) {
    ASSERT_EQ(shard.size(), 3u);
    EXPECT_EQ(shard[0].table, "loose");
    EXPECT_EQ(shard[1].table, "pair");
    EXPECT_EQ(shard[2].table, "t");
    for (const TableDigest& t : shard) rows += t.rows;
  }
  EXPECT_EQ(rows, 8);  // Each row counts in exactly one shard.
}

TEST(ShardDigestTest, AValueInAnotherStorageClassGivesAnotherDigest) {
  sqlite::Database a = Open("digest-class-a", kRowsForward);
  sqlite::Database b = Open("digest-class-b", kRowsForward);
  // Given the same rows but one value stored as TEXT instead of INTEGER (equal to SQLite's
  // eye in many comparisons),
  ASSERT_TRUE(b.Exec("UPDATE t SET v = '5' WHERE id = 5").ok());
  ASSERT_EQ(*b.QueryValue("SELECT typeof(v) FROM t WHERE id = 5"), Value::Text("text"));
  // then exactly the shard of that row differs, in that table only, with as many rows.
  const auto da = Digests(a, 4), db = Digests(b, 4);
  const int shard = ShardRouter(4).ShardOf("t", {Value::Integer(5)});
  for (int s = 0; s < 4; ++s) {
    for (size_t t = 0; t < da[s].size(); ++t) {
      const bool changed = s == shard && da[s][t].table == "t";
      EXPECT_EQ(da[s][t].digest != db[s][t].digest, changed)
          << "shard " << s << " table " << da[s][t].table;
      EXPECT_EQ(da[s][t].rows, db[s][t].rows);
    }
  }
}

TEST(ShardDigestTest, AnotherValueARowMoreOrAColumnMoreGiveAnotherDigest) {
  sqlite::Database a = Open("digest-other-a", kRowsForward);
  const auto before = Digests(a, 1);
  ASSERT_TRUE(a.Exec("UPDATE t SET v = 'ONE' WHERE id = 1").ok());
  const auto changed = Digests(a, 1);
  EXPECT_NE(before[0][2].digest, changed[0][2].digest);
  ASSERT_TRUE(a.Exec("INSERT INTO loose VALUES (1, 2)").ok());
  const auto more = Digests(a, 1);
  EXPECT_NE(changed[0][0].digest, more[0][0].digest);
  EXPECT_EQ(more[0][0].rows, 1);
  ASSERT_TRUE(a.Exec("ALTER TABLE pair ADD COLUMN extra").ok());
  const auto wider = Digests(a, 1);
  EXPECT_NE(more[0][1].digest, wider[0][1].digest);
}

TEST(ShardDigestTest, ColumnsSpelledInAnotherCaseGiveTheSameFoldedDigest) {
  // One column to SQLite, made on two nodes at once as `Extra` and `extra`: Verify compares
  // the digests over folded names and finds the same rows alike. The digest over names as
  // written, which nodes of older versions compare, stays as it was.
  sqlite::Database a = Open("digest-case-a", "ALTER TABLE t ADD COLUMN Extra;");
  sqlite::Database b = Open("digest-case-b", "ALTER TABLE t ADD COLUMN extra;");
  for (sqlite::Database* db : {&a, &b}) {
    ASSERT_TRUE(db->Exec("INSERT INTO t VALUES (1, 'one', 'x'), (2, 2, NULL)").ok());
  }
  const auto da = Digests(a, 2), db = Digests(b, 2);
  for (int s = 0; s < 2; ++s) {
    ASSERT_EQ(da[s][2].table, "t");
    EXPECT_EQ(da[s][2].digest_folded, db[s][2].digest_folded) << "shard " << s;
    EXPECT_NE(da[s][2].digest, db[s][2].digest) << "shard " << s;
    // Names in lower case: one digest of both kinds.
    EXPECT_EQ(db[s][2].digest_folded, db[s][2].digest) << "shard " << s;
  }
  // Another value still differs.
  ASSERT_TRUE(b.Exec("UPDATE t SET extra = 'y'").ok());
  const auto changed = Digests(b, 1), da1 = Digests(a, 1);
  EXPECT_NE(da1[0][2].digest_folded, changed[0][2].digest_folded);
}

TEST(ShardDigestTest, KeysAreListedInKeyOrderByPagesWithTheirRowHash) {
  // Keys in a NOCASE column are listed byte by byte ('B' before 'a'), as every node lists them.
  sqlite::Database a = Open("keys-a", kRowsForward);
  ShardRouter one(1);
  auto first = ListShardKeys(a, one, 0, "pair", {}, 2);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->keys.size(), 2u);
  EXPECT_TRUE(first->more);
  EXPECT_EQ(first->keys[0].key, (std::vector<Value>{Value::Text("B"), Value::Integer(2)}));
  EXPECT_EQ(first->keys[1].key, (std::vector<Value>{Value::Text("a"), Value::Integer(1)}));
  auto rest = ListShardKeys(a, one, 0, "pair", first->keys[1].key, 2);
  ASSERT_TRUE(rest.ok()) << rest.status();
  ASSERT_EQ(rest->keys.size(), 1u);
  EXPECT_FALSE(rest->more);
  EXPECT_EQ(rest->keys[0].key, (std::vector<Value>{Value::Text("c"), Value::Integer(3)}));
  EXPECT_LT(CompareKeys(first->keys[0].key, first->keys[1].key), 0);
  EXPECT_LT(CompareKeys(first->keys[1].key, rest->keys[0].key), 0);

  // A changed row keeps its key and changes its hash; the other rows' hashes stay.
  auto t_before = ListShardKeys(a, one, 0, "t", {}, 10);
  ASSERT_TRUE(a.Exec("UPDATE t SET v = 'uno' WHERE id = 1").ok());
  auto t_after = ListShardKeys(a, one, 0, "t", {}, 10);
  ASSERT_TRUE(t_before.ok() && t_after.ok());
  ASSERT_EQ(t_before->keys.size(), 5u);
  ASSERT_EQ(t_after->keys.size(), 5u);
  EXPECT_NE(t_before->keys[0].row_hash, t_after->keys[0].row_hash);
  for (int i = 1; i < 5; ++i) EXPECT_EQ(t_before->keys[i].row_hash, t_after->keys[i].row_hash);

  // Named in another case (as another node may spell it): the same table.
  auto t_spelled = ListShardKeys(a, one, 0, "T", {}, 10);
  ASSERT_TRUE(t_spelled.ok()) << t_spelled.status();
  EXPECT_EQ(t_spelled->keys.size(), 5u);

  // Only the shard's rows are listed.
  ShardRouter four(4);
  size_t listed = 0;
  for (int shard = 0; shard < 4; ++shard) {
    auto page = ListShardKeys(a, four, shard, "t", {}, 10);
    ASSERT_TRUE(page.ok());
    for (const KeyHash& k : page->keys) EXPECT_EQ(four.ShardOf("t", k.key), shard);
    listed += page->keys.size();
  }
  EXPECT_EQ(listed, 5u);
}

TEST(ShardDigestTest, BadListingArgumentsAreRefused) {
  sqlite::Database a = Open("keys-bad", kRowsForward);
  ShardRouter one(1);
  EXPECT_TRUE(absl::IsNotFound(ListShardKeys(a, one, 0, "missing", {}, 5).status()));
  EXPECT_TRUE(absl::IsNotFound(ListShardKeys(a, one, 0, "sqlite_master", {}, 5).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      ListShardKeys(a, one, 0, "t", {Value::Integer(1), Value::Integer(2)}, 5).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ListShardKeys(a, one, 0, "t", {}, 0).status()));
}

TEST(ShardDigestTest, CompareKeysOrdersByStorageClassThenValue) {
  EXPECT_LT(CompareKeys({Value::Null()}, {Value::Integer(-5)}), 0);
  EXPECT_LT(CompareKeys({Value::Integer(1)}, {Value::Real(1.5)}), 0);
  EXPECT_LT(CompareKeys({Value::Real(1e300)}, {Value::Text("")}), 0);
  EXPECT_LT(CompareKeys({Value::Text("z")}, {Value::Blob("")}), 0);
  EXPECT_GT(CompareKeys({Value::Text("b")}, {Value::Text("a")}), 0);
  EXPECT_EQ(
      CompareKeys({Value::Integer(7), Value::Text("x")}, {Value::Integer(7), Value::Text("x")}), 0);
}

}  // namespace
}  // namespace marmot::replicator
