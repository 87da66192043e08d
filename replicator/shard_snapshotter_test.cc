// A shard's snapshot made and installed through ChangeApplier, which holds the install's
// transaction, applied index and dedupe state around ShardSnapshotter: exactly the shard's rows
// are replaced, a table that cannot be installed becomes a dead letter while the rest installs,
// an install that cannot keep what it must changes nothing, rows with later own changes stay.
#include "replicator/shard_snapshotter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "replicator/testing/applier_node.h"

namespace marmot::replicator {
namespace {

using sqlite::Value;
using testing::CreateSnapshot;
using testing::DeadLetterIds;
using testing::DeadLetters;
using ::testing::HasSubstr;
using testing::InstallSnapshot;
using testing::Node;
using testing::OnlyChange;

TEST(ShardSnapshotterTest, ASnapshotTableThatCannotInstallIsADeadLetterAndTheRestInstalls) {
  // Rows a constraint of this node refuses, and a table whose columns differ here, used to fail
  // the whole install, which was retried forever.
  Node a("uninstallable-a"), b("uninstallable-b");
  a.Exec(
      "INSERT INTO \"order\" (id, name, price) VALUES (1, 'cheap', 1), (2, 'dear', 500);"
      "INSERT INTO pair VALUES ('k', 1, 'v');");
  ASSERT_TRUE(a.applier->AdvanceAppliedIndex(0, 4).ok());
  auto snapshot = CreateSnapshot(*a.applier, 0);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  b.Exec(
      "DROP TABLE \"order\"; CREATE TABLE \"order\" (id INTEGER PRIMARY KEY, name TEXT UNIQUE, "
      "price REAL CHECK (price < 100), img BLOB);"
      "DROP TABLE pair; CREATE TABLE pair (a TEXT, b INTEGER, w, PRIMARY KEY (a, b)) WITHOUT "
      "ROWID;");
  auto install = InstallSnapshot(*b.applier, *snapshot, 4);
  ASSERT_TRUE(install.ok()) << install.status();
  EXPECT_EQ(install->rows_kept, 2);
  EXPECT_EQ(*b.applier->AppliedIndex(0), 4u);
  auto errors = b.db->QueryRows("SELECT tbl, error FROM \"__marmot__dead_letters\" ORDER BY tbl");
  ASSERT_TRUE(errors.ok());
  ASSERT_EQ(errors->size(), 2u) << b.Dump("__marmot__dead_letters");
  EXPECT_EQ((*errors)[0][0], Value::Text("order"));
  EXPECT_THAT((*errors)[0][1].bytes(), HasSubstr("CHECK constraint failed"));
  EXPECT_EQ((*errors)[1][0], Value::Text("pair"));
  EXPECT_THAT((*errors)[1][1].bytes(), HasSubstr("differs on this node"));
  EXPECT_EQ(*b.db->QueryValue("SELECT count(*) FROM \"order\""), Value::Integer(0));
  // The application can write meanwhile: nothing holds the database.
  b.Exec("INSERT INTO \"order\" (id, name, price) VALUES (9, 'local', 3)");
}

TEST(ShardSnapshotterTest, ATableRefusedInALaterPieceIsKeptWholeAndInstallsOnRetry) {
  // Given 2,000 rows of a table in a snapshot of 4 KiB pieces, the last of which a CHECK
  // constraint of this node refuses,
  Node a("pieces-a"), b("pieces-b");
  a.Exec(
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
      "INSERT INTO \"order\" (id, name, price) SELECT i, 'item ' || i, i FROM n;");
  ASSERT_TRUE(a.applier->AdvanceAppliedIndex(0, 7).ok());
  auto snapshot = CreateSnapshot(*a.applier, 0, 4 << 10);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  b.Exec(
      "DROP TABLE \"order\"; CREATE TABLE \"order\" (id INTEGER PRIMARY KEY, name TEXT UNIQUE, "
      "price REAL CHECK (price < 2000), img BLOB);");
  // when it is installed,
  auto install = InstallSnapshot(*b.applier, *snapshot, 7, 4 << 10);
  ASSERT_TRUE(install.ok()) << install.status();
  // then none of the table's rows stay (the pieces before the refused row are undone), the
  // others tables installed, and the dead letter holds all 2,000 rows:
  EXPECT_EQ(*b.db->QueryValue("SELECT count(*) FROM \"order\""), Value::Integer(0));
  EXPECT_EQ(*b.applier->DeadLetterCount(), 1);
  // once the constraint is aligned, a retry installs every one of them.
  b.Exec(
      "DROP TABLE \"order\"; CREATE TABLE \"order\" (id INTEGER PRIMARY KEY, name TEXT UNIQUE, "
      "price REAL, img BLOB);");
  auto retried = b.applier->RetryDeadLetters({});
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->applied, 1);
  EXPECT_EQ(b.Dump("order"), a.Dump("order"));
}

TEST(ShardSnapshotterTest, AnInstallThatCannotKeepItsDeadLettersChangesNothing) {
  Node a("keep-a"), b("keep-b");
  a.Exec(
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) "
      "INSERT INTO \"order\" (id, name, price) SELECT i, 'item ' || i, i FROM n;"
      "INSERT INTO pair VALUES ('k', 1, 'v');");
  ASSERT_TRUE(a.applier->AdvanceAppliedIndex(0, 7).ok());
  auto snapshot = CreateSnapshot(*a.applier, 0);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  b.Exec(
      "INSERT INTO pair VALUES ('b', 2, 'mine'); DROP TABLE \"order\"; CREATE TABLE \"order\" "
      "(id INTEGER PRIMARY KEY, name TEXT UNIQUE, price REAL CHECK (price < 10), img BLOB);");
  const std::string before = b.Dump("pair");
  auto unchanged = [&] {
    EXPECT_EQ(b.Dump("pair"), before);
    EXPECT_EQ(*b.applier->AppliedIndex(0), 0u);
    EXPECT_EQ(*b.applier->DeadLetterCount(), 0);
  };
  // No room for another dead letter on this node (-max-dead-letters): refused, nothing changed.
  b.applier->set_max_dead_letters(0);
  auto full = InstallSnapshot(*b.applier, *snapshot, 7);
  EXPECT_TRUE(absl::IsResourceExhausted(full.status())) << full.status();
  EXPECT_THAT(full.status().message(), HasSubstr("-max-dead-letters"));
  unchanged();
  // Rows too large for one dead letter (SQLite's length limit lowered to 4 KiB here): the same.
  b.applier->set_max_dead_letters(100);
  sqlite3_limit(b.applier->database().raw(), SQLITE_LIMIT_LENGTH, 4096);
  auto large = InstallSnapshot(*b.applier, *snapshot, 7);
  EXPECT_TRUE(absl::IsResourceExhausted(large.status())) << large.status();
  EXPECT_THAT(large.status().message(), HasSubstr("more than a dead letter can hold"));
  unchanged();
  // A payload that no longer reads to its end (damaged on disk since it was checked): the same.
  sqlite3_limit(b.applier->database().raw(), SQLITE_LIMIT_LENGTH, 1000000000);
  raft::host::StringSnapshotSink sink;
  ASSERT_TRUE(WriteShardSnapshot(*snapshot, sink).ok());
  std::string payload = sink.Take();
  payload.resize(payload.size() - 3);
  raft::host::StringSnapshotSource cut(payload);
  ShardSnapshotReader reader(cut);
  auto unreadable = b.applier->InstallSnapshot(reader, 7);
  EXPECT_TRUE(absl::IsFailedPrecondition(unreadable.status())) << unreadable.status();
  EXPECT_FALSE(IsDatabaseFailure(unreadable.status()));
  unchanged();
}
TEST(ShardSnapshotterTest, ASnapshotOfManyPiecesInstallsWhole) {
  Node a("many-pieces-a", 2), b("many-pieces-b", 2);
  // About 3 MB of rows: with 64 KiB pieces, dozens of pieces per shard.
  a.Exec(
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) "
      "INSERT INTO \"order\" (id, name, img) SELECT i, 'item ' || i, randomblob(1000) FROM n;");
  for (int shard = 0; shard < 2; ++shard) {
    ASSERT_TRUE(a.applier->AdvanceAppliedIndex(shard, 9).ok());
    raft::host::StringSnapshotSink sink;
    ShardSnapshotWriter writer(sink, 64 << 10);
    ASSERT_TRUE(a.applier->CreateSnapshot(shard, writer).ok());
    EXPECT_GT(writer.pieces(), 20u);
    raft::host::StringSnapshotSource source(sink.Take());
    ASSERT_TRUE(CheckShardSnapshot(shard, source, 64 << 10).ok());
    ShardSnapshotReader reader(source, 64 << 10);
    auto installed = b.applier->InstallSnapshot(reader);
    ASSERT_TRUE(installed.ok()) << installed.status();
  }
  EXPECT_EQ(b.Dump("order"), a.Dump("order"));
}
TEST(ShardSnapshotterTest, SnapshotReplacesExactlyTheShardsRows) {
  // Given two nodes with 4 shards and different data
  Node a("snap-a", 4), b("snap-b", 4);
  for (int i = 0; i < 200; ++i) {
    a.Exec(absl::StrCat("INSERT INTO \"order\" (id, name, price) VALUES (", i, ", 'a", i, "', ", i,
                        ".5)"));
    if (i % 3 == 0) {
      b.Exec(absl::StrCat("INSERT INTO \"order\" (id, name) VALUES (", i, ", 'b", i, "')"));
    }
  }
  a.Exec("INSERT INTO loose VALUES ('r', 1)");
  const int shard = 2;
  change::v1::ChangeBatch batch;
  batch.set_origin_node(1);
  ASSERT_TRUE(a.applier->Apply(shard, 11, batch).ok());  // Applied index 11, nothing else.
  auto snapshot = CreateSnapshot(*a.applier, shard);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ(snapshot->applied_index(), 11u);

  // When B installs A's snapshot of shard 2
  ASSERT_TRUE(InstallSnapshot(*b.applier, *snapshot).ok());

  // Then B's rows in shard 2 are A's, and its rows in other shards are untouched
  auto rows_of = [&](Node& n, bool in_shard) {
    std::string out;
    auto rows = n.db->QueryRows("SELECT id, name, price FROM \"order\" ORDER BY id");
    for (const auto& r : *rows) {
      if ((n.router.ShardOf("order", {r[0]}) == shard) != in_shard) continue;
      for (const Value& v : r) absl::StrAppend(&out, v.DebugString(), " ");
      out += "\n";
    }
    return out;
  };
  EXPECT_EQ(rows_of(b, true), rows_of(a, true));
  EXPECT_NE(rows_of(b, false), rows_of(a, false));
  EXPECT_THAT(rows_of(b, false), HasSubstr("'b"));
  EXPECT_THAT(rows_of(b, false), ::testing::Not(HasSubstr("'a")));
  EXPECT_EQ(*b.applier->AppliedIndex(shard), 11u);
  EXPECT_FALSE(rows_of(b, true).empty());
}

// The shard's rows are deleted while the table is scanned (not after reading every key): a long
// run of rows, most of them deleted, in a rowid table, a WITHOUT ROWID table and a table without
// a declared key, each row is checked.
TEST(ShardSnapshotterTest, AnInstallDeletesEveryRowOfTheShardItScansPast) {
  Node a("scan-a", 4), b("scan-b", 4);
  b.Exec(
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000) "
      "INSERT INTO \"order\" (id, name, img) SELECT i, 'b' || i, randomblob(300) FROM n;"
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000) "
      "INSERT INTO pair (a, b, v) SELECT 'k' || (i % 7), i, randomblob(300) FROM n;"
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000) "
      "INSERT INTO loose (x, y) SELECT i, randomblob(300) FROM n;");
  a.Exec("INSERT INTO \"order\" (id, name) VALUES (5000, 'a')");
  // Every shard's install empties it on B but for A's one row: each shard in turn, so that the
  // later scans run past rows of shards already emptied.
  for (int shard = 0; shard < 4; ++shard) {
    change::v1::ChangeBatch batch;
    batch.set_origin_node(1);
    ASSERT_TRUE(a.applier->Apply(shard, 11, batch).ok());
    auto snapshot = CreateSnapshot(*a.applier, shard);
    ASSERT_TRUE(snapshot.ok()) << snapshot.status();
    ASSERT_TRUE(InstallSnapshot(*b.applier, *snapshot).ok());
    for (const auto& [table, key_columns] : std::vector<std::pair<std::string, std::string>>{
             {"order", "id"}, {"pair", "a, b"}, {"loose", "rowid"}}) {
      auto rows = b.db->QueryRows(absl::StrCat("SELECT ", key_columns, " FROM ",
                                               sqlite::QuoteIdentifier(table), " WHERE ",
                                               key_columns == "id" ? "id <> 5000" : "1"));
      ASSERT_TRUE(rows.ok()) << rows.status();
      for (const auto& key : *rows) {
        const int of = b.router.ShardOf(table, key);
        ASSERT_GT(of, shard) << table << " row " << key[0].DebugString() << " of shard " << of
                             << " is left after installing shard " << shard;
      }
    }
  }
  EXPECT_EQ(b.Dump("order"), a.Dump("order"));
  EXPECT_EQ(*b.db->QueryValue("SELECT count(*) FROM pair"), Value::Integer(0));
  EXPECT_EQ(*b.db->QueryValue("SELECT count(*) FROM loose"), Value::Integer(0));
  // The installs kept their undo pages in a file; apply rounds keep them in memory again (2).
  EXPECT_EQ(*b.applier->database().QueryValue("PRAGMA temp_store"), Value::Integer(2));
}

// Found by //tests/fuzz:snapshot_install: a snapshot of one shard holding a row of another
// wrote it, out of that shard's order (and over that shard's version of the row).
TEST(ShardSnapshotterTest, ASnapshotTableWithARowOfAnotherShardIsADeadLetterAndWritesNothing) {
  Node a("foreign-row-a", 2), b("foreign-row-b", 2);
  // Keys of "order" in shard 0 and in shard 1.
  std::vector<int64_t> keys[2];
  for (int64_t id = 1; keys[0].size() < 2 || keys[1].size() < 2; ++id) {
    keys[a.router.ShardOf("order", {Value::Integer(id)})].push_back(id);
  }
  a.Exec(absl::StrCat("INSERT INTO \"order\" (id, name) VALUES (", keys[0][0], ", 'a0'), (",
                      keys[1][0], ", 'a1')"));
  b.Exec(absl::StrCat("INSERT INTO \"order\" (id, name) VALUES (", keys[1][0], ", 'b1')"));
  ASSERT_TRUE(a.applier->AdvanceAppliedIndex(0, 4).ok());
  auto snapshot = CreateSnapshot(*a.applier, 0);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  change::v1::ShardSnapshot snap = *snapshot;
  // The order rows of shard 0, then one of shard 1 (b holds another version of it).
  for (auto& t : *snap.mutable_tables()) {
    if (t.table() != "order") continue;
    ASSERT_EQ(t.values_size(), 4) << t.ShortDebugString();
    *t.add_values() = ToWire(Value::Integer(keys[1][0]));
    *t.add_values() = ToWire(Value::Text("forged"));
    *t.add_values() = ToWire(Value::Null());
    *t.add_values() = ToWire(Value::Null());
  }
  // Streamed one row per piece: the foreign row comes after a piece of shard 0 was written.
  auto install = InstallSnapshot(*b.applier, snap, 4, 1);
  ASSERT_TRUE(install.ok()) << install.status();
  EXPECT_EQ(install->rows_kept, 1);
  EXPECT_EQ(*b.applier->AppliedIndex(0), 4u);
  auto errors = b.db->QueryRows("SELECT tbl, error FROM \"__marmot__dead_letters\"");
  ASSERT_TRUE(errors.ok());
  ASSERT_EQ(errors->size(), 1u) << b.Dump("__marmot__dead_letters");
  EXPECT_EQ((*errors)[0][0], Value::Text("order"));
  EXPECT_THAT((*errors)[0][1].bytes(), HasSubstr("row 2 belongs to shard 1, not 0"));
  // Shard 1's row is b's own; shard 0's row of order waits in the dead letter.
  EXPECT_EQ(b.Dump("order"), absl::StrCat(keys[1][0], " ", keys[1][0], " 'b1' NULL NULL \n"));
  // A retry of that dead letter meets the same row and still writes nothing.
  auto retried = b.applier->RetryDeadLetters({});
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->applied, 0);
  EXPECT_EQ(retried->still_failing, 1);
  EXPECT_EQ(b.Dump("order"), absl::StrCat(keys[1][0], " ", keys[1][0], " 'b1' NULL NULL \n"));
}

// Found by //tests/fuzz:snapshot_install: a key sent as TEXT '5' routed to the snapshot's
// shard, but an INTEGER PRIMARY KEY stores it as INTEGER 5 (the column's affinity), a key that
// another shard orders. The row is routed as stored too.
TEST(ShardSnapshotterTest, ARowStoredWithAKeyOfAnotherShardIsADeadLetterAndWritesNothing) {
  Node a("stored-key-a", 2), b("stored-key-b", 2);
  int64_t id = 1;
  const auto shard_of = [&](const Value& key) { return a.router.ShardOf("order", {key}); };
  while (shard_of(Value::Text(absl::StrCat(id))) == shard_of(Value::Integer(id))) ++id;
  const int shard = shard_of(Value::Text(absl::StrCat(id)));
  ASSERT_TRUE(a.applier->AdvanceAppliedIndex(shard, 4).ok());
  auto snapshot = CreateSnapshot(*a.applier, shard);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  change::v1::ShardSnapshot snap = *snapshot;
  for (auto& t : *snap.mutable_tables()) {
    if (t.table() != "order") continue;
    ASSERT_EQ(t.values_size(), 0);
    for (const Value& v : {Value::Text(absl::StrCat(id)), Value::Text("sent as text"),
                           Value::Null(), Value::Null()}) {
      *t.add_values() = ToWire(v);
    }
  }
  auto install = InstallSnapshot(*b.applier, snap, 4);
  ASSERT_TRUE(install.ok()) << install.status();
  EXPECT_EQ(install->rows_kept, 1);
  EXPECT_EQ(*b.db->QueryValue("SELECT count(*) FROM \"order\""), Value::Integer(0));
  EXPECT_THAT(DeadLetters(b), HasSubstr(absl::StrCat("row 1 is stored with a key of shard ",
                                                     1 - shard, ", not ", shard)));
  EXPECT_EQ(*b.applier->AppliedIndex(shard), 4u);
}

TEST(ShardSnapshotterTest, ASnapshotLeavesRowsWithLaterOwnChangesAsTheyAre) {
  // Node a installs node b's snapshot of a shard while a's own change of row k1 is still in its
  // log, not yet committed: k1 stays as a wrote it (that change comes later in the shard's order
  // and applies as an own change the row holds). a's change of k2 is one the snapshot holds (its
  // dedupe state covers it) and b changed k2 since: k2 takes the snapshot's version.
  Node a("snap-own-a", 4), b("snap-own-b", 4);
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  std::vector<std::string> names;  // Three keys of one shard.
  const auto shard_of = [&](const std::string& name) {
    return a.router.ShardOf("pair", {Value::Text(name), Value::Integer(1)});
  };
  for (int i = 0; names.size() < 3; ++i) {
    const std::string name = absl::StrCat("k", i);
    if (names.empty() || shard_of(name) == shard_of(names[0])) names.push_back(name);
  }
  const int shard = shard_of(names[0]);
  a.Exec(absl::StrCat("INSERT INTO pair VALUES ('", names[1], "', 1, 'a-old')"));  // change 1
  ASSERT_TRUE(b.applier->Apply(shard, 5, OnlyChange(a.CapturedBatch(1), 1)).ok());
  a.Exec(absl::StrCat("INSERT INTO pair VALUES ('", names[0], "', 1, 'a-pending')"));  // change 2
  b.Exec(absl::StrCat("UPDATE pair SET v = 'b-newer' WHERE a = '", names[1], "';",
                      "INSERT INTO pair VALUES ('", names[0], "', 1, 'b-old'), ('", names[2],
                      "', 1, 'b3');"));
  auto snapshot = CreateSnapshot(*b.applier, shard);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();

  auto install = InstallSnapshot(*a.applier, *snapshot, 9);
  ASSERT_TRUE(install.ok()) << install.status();
  auto v = [&](Node& n, const std::string& name) {
    return *n.db->QueryValue(absl::StrCat("SELECT v FROM pair WHERE a = '", name, "'"));
  };
  EXPECT_EQ(v(a, names[0]), Value::Text("a-pending"));
  EXPECT_EQ(v(a, names[1]), Value::Text("b-newer"));
  EXPECT_EQ(v(a, names[2]), Value::Text("b3"));
  // The pending change then commits and applies here as an own change its row holds, and on b.
  change::v1::ChangeBatch pending = OnlyChange(a.CapturedBatch(1), 2);
  auto r = a.applier->Apply(shard, 10, pending);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(v(a, names[0]), Value::Text("a-pending"));
  // (b's own writes never ship in this test: as if they had come before, b does not hold a's
  // change back for them.)
  b.applier->set_local_node(0);
  ASSERT_TRUE(b.applier->Apply(shard, 10, pending).ok());
  EXPECT_EQ(b.Dump("pair"), a.Dump("pair"));
}

// A row kept through an install for this node's later own change keeps the UNIQUE values it
// holds: a snapshot row taking one is kept as a conflict at once, unwritten, as every node keeps
// it once that change applies there. Node a renamed row 1 to 'b' (pending, in its log); node b
// gave 'b' to a new row 2. (Was: the snapshot's rows were written with INSERT OR REPLACE, which
// deleted row 1 here; the shipper then read no row for a's pending change and shipped a DELETE
// of row 1 to every node: unique_hunt_test KeptRowsTravelWithASnapshot, found 2026-12-07.)
TEST(ShardSnapshotterTest, ARowKeptForALaterOwnChangeKeepsItsUniqueValueFromASnapshotRow) {
  Node a("snap-unique-a"), b("snap-unique-b");
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  a.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'x')");  // change 1
  ASSERT_TRUE(b.applier->Apply(0, 5, a.CapturedBatch(1)).ok());
  a.Exec("UPDATE \"order\" SET name = 'b' WHERE id = 1");  // change 2, pending
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (2, 'b')");
  auto snapshot = CreateSnapshot(*b.applier, 0);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  auto install = InstallSnapshot(*a.applier, *snapshot, 9);
  ASSERT_TRUE(install.ok()) << install.status();
  EXPECT_EQ(a.Dump("order"), "1 1 'b' NULL NULL \n");
  EXPECT_EQ(a.Conflicts(), 1);
  // a's change then applies in the shard: here as an own change its row holds; on b over row 2,
  // which b keeps as a conflict too. (b's own writes never ship in this test: as if they had
  // come before, b does not hold a's change back for them.)
  change::v1::ChangeBatch pending = OnlyChange(a.CapturedBatch(1), 2, "order");
  ASSERT_TRUE(a.applier->Apply(0, 10, pending).ok());
  b.applier->set_local_node(0);
  ASSERT_TRUE(b.applier->Apply(0, 10, pending).ok());
  EXPECT_EQ(b.Dump("order"), a.Dump("order"));
  EXPECT_EQ(b.Conflicts(), 1);
  EXPECT_EQ(a.Conflicts(), 1);
}

// The same across shards: a's pending change of row 1 is in another shard than the snapshot
// installed, which gives row 2 the value 'b'. The install deletes only its own shard's rows,
// but the snapshot row's upsert would delete row 1 too.
TEST(ShardSnapshotterTest, ARowOfAnotherShardWithAPendingOwnChangeKeepsItsUniqueValue) {
  Node a("snap-unique-shards-a", 4), b("snap-unique-shards-b", 4);
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  const int64_t other = testing::OrderIdOfAnotherShard(a, 1);
  const int shard = testing::OrderShard(a, other);
  a.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'b')");  // pending in row 1's shard
  b.Exec(absl::StrCat("INSERT INTO \"order\" (id, name) VALUES (", other, ", 'b')"));
  auto snapshot = CreateSnapshot(*b.applier, shard);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  auto install = InstallSnapshot(*a.applier, *snapshot, 9);
  ASSERT_TRUE(install.ok()) << install.status();
  EXPECT_EQ(*a.db->QueryValue("SELECT group_concat(id) FROM \"order\" WHERE name = 'b'"),
            Value::Text("1"))
      << a.Dump("order");
  EXPECT_EQ(a.Conflicts(), 1);
}

// What a node keeps as conflicts, as every node should keep them: per conflict its shard, table,
// key, origin, change, op and the version it lost to (not its id, entry or time of reading).
std::string ConflictShape(Node& n) {
  return testing::QueryText(
      n,
      "SELECT shard, tbl, key, origin, change_id, op, winner_origin, winner_change_id FROM "
      "\"__marmot__conflicts\" ORDER BY tbl, key, origin, change_id");
}

// The versions of a table's rows as RowVersions keeps them: key, origin, change, held or not.
std::string VersionShape(Node& n, const std::string& table) {
  return testing::QueryText(
      n, absl::StrCat("SELECT key, shard, origin, change_id, held IS NOT NULL FROM "
                      "\"__marmot__versions\" WHERE tbl = '",
                      table, "' ORDER BY key"));
}

// Writes what `n`'s applier deferred (own changes its rows held: their versions, applied
// indexes), as the node's next write transaction does before a snapshot is read.
void WriteDeferred(Node& n) {
  ASSERT_TRUE(n.db->Exec("BEGIN IMMEDIATE").ok());
  ASSERT_TRUE(n.applier->WriteDeferred().ok());
  ASSERT_TRUE(n.db->Exec("COMMIT").ok());
  n.applier->DeferredCommitted();
}

// `batch` applied on each of `nodes` at (`shard`, `index`), deferred state written after.
void ApplyEverywhere(std::initializer_list<Node*> nodes, int shard, uint64_t index,
                     const change::v1::ChangeBatch& batch) {
  for (Node* n : nodes) {
    auto r = n->applier->Apply(shard, index, batch);
    ASSERT_TRUE(r.ok()) << r.status();
    WriteDeferred(*n);
  }
}

// A snapshot row kept at once for this node's pending change (its UNIQUE value is that change's
// here) is written once that change loses a conflict of its own row (TakeKeptAtOnce), as on
// every node: there the change replaced nothing. Node a renamed row 1 to 'b' over b's first
// version of it, which b had changed since (to 'z'); b gave 'b' to a new row 2. a's change then
// loses on both nodes: row 1 takes b's 'z', and row 2 stands with 'b' on both.
TEST(ShardSnapshotterTest, ASnapshotRowKeptForAnOwnChangeThatLosesIsWrittenAsOnEveryNode) {
  Node a("snap-lose-a"), b("snap-lose-b");
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'x')");  // b's change 1
  ApplyEverywhere({&a, &b}, 0, 1, OnlyChange(b.CapturedBatch(2), 1, "order"));
  b.Exec("UPDATE \"order\" SET name = 'z' WHERE id = 1");  // b's change 2
  ApplyEverywhere({&b}, 0, 2, OnlyChange(b.CapturedBatch(2), 2, "order"));
  a.Exec("UPDATE \"order\" SET name = 'b' WHERE id = 1");      // a's change 1, pending
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (2, 'b')");  // b's change 3
  ApplyEverywhere({&b}, 0, 3, OnlyChange(b.CapturedBatch(2), 3, "order"));
  auto install = testing::CopySnapshot(*b.applier, *a.applier, 0, 3);
  ASSERT_TRUE(install.ok()) << install.status();
  EXPECT_EQ(a.Dump("order"), "1 1 'b' NULL NULL \n");
  EXPECT_EQ(a.Conflicts(), 1);
  ApplyEverywhere({&a, &b}, 0, 4, OnlyChange(a.CapturedBatch(1), 1, "order"));
  EXPECT_EQ(b.Dump("order"), "1 1 'z' NULL NULL \n2 2 'b' NULL NULL \n");
  EXPECT_EQ(a.Dump("order"), b.Dump("order"));
  EXPECT_EQ(ConflictShape(a), ConflictShape(b));
  EXPECT_EQ(VersionShape(a, "order"), VersionShape(b, "order"));
}

// When the pending change wins, the snapshot row kept at once is the conflict every node keeps:
// the same origin, change, key and winner as where the change's upsert replaced it.
TEST(ShardSnapshotterTest, ASnapshotRowKeptAtOnceIsTheConflictEveryNodeKeeps) {
  Node a("snap-win-a"), b("snap-win-b");
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'x')");  // b's change 1
  ApplyEverywhere({&a, &b}, 0, 1, OnlyChange(b.CapturedBatch(2), 1, "order"));
  a.Exec("UPDATE \"order\" SET name = 'b' WHERE id = 1");      // a's change 1, pending
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (2, 'b')");  // b's change 2
  ApplyEverywhere({&b}, 0, 2, OnlyChange(b.CapturedBatch(2), 2, "order"));
  auto install = testing::CopySnapshot(*b.applier, *a.applier, 0, 2);
  ASSERT_TRUE(install.ok()) << install.status();
  ApplyEverywhere({&a, &b}, 0, 3, OnlyChange(a.CapturedBatch(1), 1, "order"));
  EXPECT_EQ(b.Dump("order"), "1 1 'b' NULL NULL \n");
  EXPECT_EQ(a.Dump("order"), b.Dump("order"));
  EXPECT_EQ(ConflictShape(a), ConflictShape(b));
  EXPECT_EQ(VersionShape(a, "order"), VersionShape(b, "order"));
  // A later change of row 2 made over a's version of it applies on both; one made over b's
  // own (without seeing a's) is a conflict on both.
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (7, 'c')");  // b's change 3, no version
  ApplyEverywhere({&a, &b}, 0, 4, OnlyChange(b.CapturedBatch(2), 3, "order"));
  EXPECT_EQ(a.Dump("order"), b.Dump("order"));
  EXPECT_EQ(ConflictShape(a), ConflictShape(b));
}

// A change of the snapshot row kept at once, made over its version before this node's pending
// change applied, is judged as on every node (ChangeView::MadeWithoutSeeingItsRow finds the
// conflict the install kept): b moves row 2 off 'b' (written on a, the older conflict goes),
// then edits its price while 'c' (written), and a's change applies over neither. `keep_value`:
// b's first edit keeps 'b' and changes the price instead: a keeps it at once in the older
// conflict's place, and a's change then replaces row 2 on b as well.
void ExpectAnEditOfASnapshotRowKeptAtOnceJudgedAsOnEveryNode(const std::string& label,
                                                             bool keep_value) {
  Node a(label + "-a"), b(label + "-b");
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'x')");  // b's change 1
  ApplyEverywhere({&a, &b}, 0, 1, OnlyChange(b.CapturedBatch(2), 1, "order"));
  a.Exec("UPDATE \"order\" SET name = 'b' WHERE id = 1");      // a's change 1, pending
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (2, 'b')");  // b's change 2
  ApplyEverywhere({&b}, 0, 2, OnlyChange(b.CapturedBatch(2), 2, "order"));
  auto install = testing::CopySnapshot(*b.applier, *a.applier, 0, 2);
  ASSERT_TRUE(install.ok()) << install.status();
  ASSERT_EQ(a.Conflicts(), 1);
  b.Exec(keep_value ? "UPDATE \"order\" SET price = 1 WHERE id = 2"
                    : "UPDATE \"order\" SET name = 'c' WHERE id = 2");  // b's change 3
  ApplyEverywhere({&a, &b}, 0, 3, OnlyChange(b.CapturedBatch(2), 3, "order"));
  EXPECT_EQ(a.Conflicts(), keep_value ? 1 : 0);
  b.Exec("UPDATE \"order\" SET img = x'01' WHERE id = 2");  // b's change 4
  ApplyEverywhere({&a, &b}, 0, 4, OnlyChange(b.CapturedBatch(2), 4, "order"));
  ApplyEverywhere({&a, &b}, 0, 5, OnlyChange(a.CapturedBatch(1), 1, "order"));
  EXPECT_EQ(b.Dump("order"),
            keep_value ? "1 1 'b' NULL NULL \n" : "1 1 'b' NULL NULL \n2 2 'c' NULL X'01' \n");
  EXPECT_EQ(a.Dump("order"), b.Dump("order"));
  // (Not its op: a node that keeps an edit at once keeps the edit, U, where the others keep
  // the row it replaced, as an insert, I; as for any change kept at once, snapshot or not.)
  const std::string shape =
      "SELECT shard, tbl, key, origin, change_id, winner_origin, winner_change_id FROM "
      "\"__marmot__conflicts\" ORDER BY tbl, key, origin, change_id";
  EXPECT_EQ(testing::QueryText(a, shape), testing::QueryText(b, shape));
  EXPECT_EQ(VersionShape(a, "order"), VersionShape(b, "order"));
}

TEST(ShardSnapshotterTest, AnEditMovingASnapshotRowKeptAtOnceOffTheValueIsWrittenEverywhere) {
  ExpectAnEditOfASnapshotRowKeptAtOnceJudgedAsOnEveryNode("snap-edit-off", false);
}

TEST(ShardSnapshotterTest, AnEditOfASnapshotRowKeptAtOnceKeepingTheValueIsKeptEverywhere) {
  ExpectAnEditOfASnapshotRowKeptAtOnceJudgedAsOnEveryNode("snap-edit-keep", true);
}

// DISABLED: shows conflicts that differ between nodes (found 2026-12-07 reviewing fca23e2).
// As ASnapshotRowKeptAtOnceIsTheConflictEveryNodeKeeps, but b's row 2 has no version (written
// behind marmot's back: here b's own insert, never applied through b's applier). A row without
// a version is kept as a change of origin 0 whose id is made of its table, its key and the
// entry that displaced it (UnversionedChangeId). Expected: the same conflict on both nodes.
// Seen: b keeps it with the id of the entry of a's change (3), a with the snapshot's index (1):
// two different change ids for one row; a resolution or a later write naming one of them finds
// no such conflict on the other node. And the row's key has a's version on a (KeepDisplacedNow
// gave it a's change) but none on b (a row without a version keeps none when it is replaced):
// b's insert of row 2 again, naming no version, is kept as a conflict on a and applied on b.
TEST(ShardSnapshotterTest, DISABLED_AnUnversionedSnapshotRowKeptAtOnceIsTheConflictEveryNodeKeeps) {
  Node a("snap-unversioned-a"), b("snap-unversioned-b");
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'x')");  // b's change 1
  ApplyEverywhere({&a, &b}, 0, 1, OnlyChange(b.CapturedBatch(2), 1, "order"));
  a.Exec("UPDATE \"order\" SET name = 'b' WHERE id = 1");      // a's change 1, pending
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (2, 'b')");  // never applied: no version
  auto install = testing::CopySnapshot(*b.applier, *a.applier, 0, 1);
  ASSERT_TRUE(install.ok()) << install.status();
  EXPECT_EQ(a.Conflicts(), 1);
  b.applier->set_local_node(0);  // b's insert is not pending for this test
  ApplyEverywhere({&a, &b}, 0, 3, OnlyChange(a.CapturedBatch(1), 1, "order"));
  EXPECT_EQ(b.Dump("order"), "1 1 'b' NULL NULL \n");
  EXPECT_EQ(a.Dump("order"), b.Dump("order"));
  EXPECT_EQ(ConflictShape(a), ConflictShape(b));
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (2, 'again')");  // b's change 3
  ApplyEverywhere({&a, &b}, 0, 4, OnlyChange(b.CapturedBatch(2), 3, "order"));
  EXPECT_EQ(b.Dump("order"), "1 1 'b' NULL NULL \n2 2 'again' NULL NULL \n");
  EXPECT_EQ(a.Dump("order"), b.Dump("order"));
}

// DISABLED: shows a divergence (found 2026-12-07 reviewing fca23e2). As
// ASnapshotRowKeptForAnOwnChangeThatLosesIsWrittenAsOnEveryNode, but b's row 2 has no version
// (written behind marmot's back: here b's own insert, never applied through b's applier). a's
// change loses and a writes row 2 back (TakeKeptAtOnce), giving it the version it was kept as:
// origin 0 and an id of its own (UnversionedChangeId); on b row 2 has no version. b then
// edits row 2 (its edit names no version). Expected: the edit applies on both. Seen: b holds
// 'b2', a keeps b's edit as a conflict (made without seeing "node 0's change") and holds 'b'.
TEST(ShardSnapshotterTest, DISABLED_AnUnversionedSnapshotRowWrittenBackTakesLaterEdits) {
  Node a("snap-unversioned-lose-a"), b("snap-unversioned-lose-b");
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'x')");  // b's change 1
  ApplyEverywhere({&a, &b}, 0, 1, OnlyChange(b.CapturedBatch(2), 1, "order"));
  b.Exec("UPDATE \"order\" SET name = 'z' WHERE id = 1");  // b's change 2
  ApplyEverywhere({&b}, 0, 2, OnlyChange(b.CapturedBatch(2), 2, "order"));
  a.Exec("UPDATE \"order\" SET name = 'b' WHERE id = 1");      // a's change 1, pending
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (2, 'b')");  // b's change 3, never applied
  auto install = testing::CopySnapshot(*b.applier, *a.applier, 0, 2);
  ASSERT_TRUE(install.ok()) << install.status();
  EXPECT_EQ(a.Conflicts(), 1);
  b.applier->set_local_node(0);  // b's insert is not pending for this test
  ApplyEverywhere({&a, &b}, 0, 3, OnlyChange(a.CapturedBatch(1), 1, "order"));
  EXPECT_EQ(b.Dump("order"), "1 1 'z' NULL NULL \n2 2 'b' NULL NULL \n");
  EXPECT_EQ(a.Dump("order"), b.Dump("order"));
  b.Exec("UPDATE \"order\" SET name = 'b2' WHERE id = 2");  // b's change 4
  ApplyEverywhere({&a, &b}, 0, 4, OnlyChange(b.CapturedBatch(2), 4, "order"));
  EXPECT_EQ(b.Dump("order"), "1 1 'z' NULL NULL \n2 2 'b2' NULL NULL \n");
  EXPECT_EQ(a.Dump("order"), b.Dump("order"));
  EXPECT_EQ(ConflictShape(a), ConflictShape(b));
}

// Across shards: a's pending change gives row 1 (shard x) the value 'b' that b's row `other`
// (shard y) takes; a installs b's snapshot of shard y, which keeps row `other` at once for a's
// change; then a's change applies in shard x. `loses`: b changed row 1 to 'z' first, so a's
// change loses and replaces nothing anywhere: row `other` stands on both (a writes it back,
// TakeKeptAtOnce looking in every shard). Otherwise a's change wins and row `other` is a
// conflict on both.
void ExpectASnapshotRowKeptForAnOwnChangeOfAnotherShardEndsAlike(const std::string& label,
                                                                 bool loses) {
  Node a(label + "-a", 4), b(label + "-b", 4);
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  const int64_t other = testing::OrderIdOfAnotherShard(a, 1);
  const int x = testing::OrderShard(a, 1), y = testing::OrderShard(a, other);
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'x')");  // b's change 1
  ApplyEverywhere({&a, &b}, x, 1, OnlyChange(b.CapturedBatch(2), 1, "order"));
  int64_t b_change = 2;
  uint64_t x_index = 2;
  if (loses) b.Exec("UPDATE \"order\" SET name = 'z' WHERE id = 1");  // b's change 2
  a.Exec("UPDATE \"order\" SET name = 'b' WHERE id = 1");             // a's change 1, pending
  if (loses) {                                                        // Held on a.
    ApplyEverywhere({&a, &b}, x, x_index++, OnlyChange(b.CapturedBatch(2), b_change++, "order"));
  }
  b.Exec(absl::StrCat("INSERT INTO \"order\" (id, name) VALUES (", other, ", 'b')"));
  ApplyEverywhere({&b}, y, 1, OnlyChange(b.CapturedBatch(2), b_change, "order"));
  auto install = testing::CopySnapshot(*b.applier, *a.applier, y, 1);
  ASSERT_TRUE(install.ok()) << install.status();
  EXPECT_EQ(a.Dump("order"), "1 1 'b' NULL NULL \n");
  ApplyEverywhere({&a, &b}, x, x_index, OnlyChange(a.CapturedBatch(1), 1, "order"));
  EXPECT_EQ(b.Dump("order"),
            loses ? absl::StrCat("1 1 'z' NULL NULL \n", other, " ", other, " 'b' NULL NULL \n")
                  : "1 1 'b' NULL NULL \n");
  EXPECT_EQ(a.Dump("order"), b.Dump("order"));
  EXPECT_EQ(ConflictShape(a), ConflictShape(b));
}

// (Found 2026-12-07 reviewing fca23e2: a kept row `other` as a conflict for good: TakeKeptAtOnce
// looked only in the shard of the change that lost, and took only rows whose version was the
// loser's, which KeepDisplacedNow gives in one shard only.)
TEST(ShardSnapshotterTest,
     ASnapshotRowKeptForAnOwnChangeOfAnotherShardThatLosesIsWrittenAsOnEveryNode) {
  ExpectASnapshotRowKeptForAnOwnChangeOfAnotherShardEndsAlike("snap-lose-shards", true);
}

// DISABLED: shows conflicts that differ between nodes (found 2026-12-07 reviewing fca23e2). a's
// change wins: on b its upsert replaces row `other` (kept there in row 1's shard, where the
// change that replaced it applied); a kept it at once in the snapshot's shard. Expected: one
// conflict, the same on both. Seen: the same rows, the conflict in shard `x` on b and in shard
// `y` on a (so it travels with the snapshots of different shards, and is cleared by
// resolutions of different shards).
TEST(ShardSnapshotterTest,
     DISABLED_ASnapshotRowKeptForAnOwnChangeOfAnotherShardIsTheConflictEveryNodeKeeps) {
  ExpectASnapshotRowKeptForAnOwnChangeOfAnotherShardEndsAlike("snap-win-shards", false);
}

// A table with two UNIQUE columns besides its key, on both nodes, captured.
void MakeTwoUniqueTable(Node& n) {
  n.Exec("CREATE TABLE two (id INTEGER PRIMARY KEY, u TEXT UNIQUE, w TEXT UNIQUE)");
  ASSERT_TRUE(sqlite::InstallCapture(*n.db).ok());
}

// One snapshot row takes a UNIQUE value from each of two rows with pending own changes of a:
// row 1 (its `u`, a's change 1, which then loses: b changed row 1 first) and row 3 (its `w`,
// a's change 2, which wins). On b, change 1 replaces nothing and change 2's upsert replaces the
// snapshot's row 2: row 2 is a conflict change 2 won. `loser_on_u`: the losing change takes `u`
// (otherwise `w`).
void ExpectASnapshotRowOverTwoPendingRowsEndsAsOnEveryNode(const std::string& label,
                                                           bool loser_on_u,
                                                           bool read_together = false) {
  Node a(label + "-a"), b(label + "-b");
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  MakeTwoUniqueTable(a);
  MakeTwoUniqueTable(b);
  const std::string lose = loser_on_u ? "u" : "w", win = loser_on_u ? "w" : "u";
  b.Exec("INSERT INTO two VALUES (1, 'u1', 'w1'), (3, 'u3', 'w3')");  // b's changes 1, 2
  ApplyEverywhere({&a, &b}, 0, 1, OnlyChange(b.CapturedBatch(2), 1, "two"));
  ApplyEverywhere({&a, &b}, 0, 2, OnlyChange(b.CapturedBatch(2), 2, "two"));
  b.Exec(absl::StrCat("UPDATE two SET ", lose, " = 'z' WHERE id = 1"));  // b's change 3
  ApplyEverywhere({&b}, 0, 3, OnlyChange(b.CapturedBatch(2), 3, "two"));
  a.Exec(absl::StrCat("UPDATE two SET ", lose, " = 'p' WHERE id = 1"));  // a's change 1
  a.Exec(absl::StrCat("UPDATE two SET ", win, " = 'q' WHERE id = 3"));   // a's change 2
  b.Exec(absl::StrCat("INSERT INTO two (id, ", lose, ", ", win, ") VALUES (2, 'p', 'q')"));  // 4
  ApplyEverywhere({&b}, 0, 4, OnlyChange(b.CapturedBatch(2), 4, "two"));
  auto install = testing::CopySnapshot(*b.applier, *a.applier, 0, 4);
  ASSERT_TRUE(install.ok()) << install.status();
  EXPECT_EQ(a.Conflicts(), 1);
  EXPECT_EQ(testing::QueryText(a, "SELECT id FROM two ORDER BY id"), "1 \n3 \n");
  // a's two changes read by its shipper at once (one entry), or the second read only after the
  // first applied (its values are read from the row then).
  if (read_together) {
    ApplyEverywhere({&a, &b}, 0, 5, a.CapturedBatch(1));
  } else {
    ApplyEverywhere({&a, &b}, 0, 5, OnlyChange(a.CapturedBatch(1), 1, "two"));
    ApplyEverywhere({&a, &b}, 0, 6, OnlyChange(a.CapturedBatch(1), 2, "two"));
  }
  EXPECT_EQ(b.Dump("two"),
            loser_on_u ? "1 1 'z' 'w1' \n3 3 'u3' 'q' \n" : "1 1 'u1' 'z' \n3 3 'q' 'w3' \n");
  EXPECT_EQ(a.Dump("two"), b.Dump("two"));
  EXPECT_EQ(ConflictShape(a), ConflictShape(b));
}

TEST(ShardSnapshotterTest, ASnapshotRowOverTwoPendingRowsEndsAsOnEveryNodeLoserOnU) {
  ExpectASnapshotRowOverTwoPendingRowsEndsAsOnEveryNode("snap-two-u", true);
}

// Here the install keeps row 2 at once for a's change 1 (the one that loses). When it loses,
// row 2 would replace row 3, whose a's change 2 is still pending: it is kept at once for that
// change in turn (ChangeApplier::KeptAgainForAnotherOwnChange). Rows 1 ('u1', 'z') and 3 ('q',
// 'w3') on both, row 2 a conflict a's change 2 won, as b ends and as the LoserOnU variant ends.
// (Found 2026-12-07 reviewing fca23e2: row 2 was written back with INSERT OR REPLACE, deleting
// row 3 here; a's shipper then read no row 3 for change 2 and shipped a DELETE of it: row 3 and
// a's change of it were gone everywhere, kept nowhere.)
TEST(ShardSnapshotterTest, ASnapshotRowOverTwoPendingRowsEndsAsOnEveryNodeLoserOnW) {
  ExpectASnapshotRowOverTwoPendingRowsEndsAsOnEveryNode("snap-two-w", false);
}

TEST(ShardSnapshotterTest, ASnapshotRowOverTwoPendingRowsReadTogetherEndsAsOnEveryNodeLoserOnW) {
  ExpectASnapshotRowOverTwoPendingRowsEndsAsOnEveryNode("snap-two-w-together", false, true);
}

TEST(ShardSnapshotterTest, ASnapshotRowOverTwoPendingRowsReadTogetherEndsAsOnEveryNodeLoserOnU) {
  ExpectASnapshotRowOverTwoPendingRowsEndsAsOnEveryNode("snap-two-u-together", true, true);
}

// A table whose UNIQUE index is partial (`where`) or on an expression (`on`), on both nodes.
void MakeIndexedTable(Node& n, const std::string& on, const std::string& where) {
  n.Exec(absl::StrCat("CREATE TABLE tagged (id INTEGER PRIMARY KEY, name TEXT, live INTEGER);",
                      "CREATE UNIQUE INDEX tagged_name ON tagged (", on, ")", where));
  ASSERT_TRUE(sqlite::InstallCapture(*n.db).ok());
}

// a renamed row 1 to `mine` (pending); b's snapshot holds row 2 with `theirs` and `live`.
// `replaces`: whether row 2's upsert would replace row 1 through the index (then it is kept at
// once, and a's change replaces it on b too); otherwise it is written, and stays on both.
void ExpectAnIndexThatOnlyProbesCanAskAbout(const std::string& label, const std::string& on,
                                            const std::string& where, const std::string& mine,
                                            const std::string& theirs, int live, bool replaces) {
  Node a(label + "-a"), b(label + "-b");
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  MakeIndexedTable(a, on, where);
  MakeIndexedTable(b, on, where);
  b.Exec("INSERT INTO tagged VALUES (1, 'first', 1)");  // b's change 1
  ApplyEverywhere({&a, &b}, 0, 1, OnlyChange(b.CapturedBatch(2), 1, "tagged"));
  a.Exec(absl::StrCat("UPDATE tagged SET name = '", mine, "' WHERE id = 1"));  // a's change 1
  b.Exec(absl::StrCat("INSERT INTO tagged VALUES (2, '", theirs, "', ", live, ")"));  // 2
  ApplyEverywhere({&b}, 0, 2, OnlyChange(b.CapturedBatch(2), 2, "tagged"));
  auto install = testing::CopySnapshot(*b.applier, *a.applier, 0, 2);
  ASSERT_TRUE(install.ok()) << install.status();
  EXPECT_EQ(a.Conflicts(), replaces ? 1 : 0);
  EXPECT_EQ(testing::QueryText(a, "SELECT id FROM tagged ORDER BY id"),
            replaces ? "1 \n" : "1 \n2 \n");
  ApplyEverywhere({&a, &b}, 0, 3, OnlyChange(a.CapturedBatch(1), 1, "tagged"));
  EXPECT_EQ(a.Dump("tagged"), b.Dump("tagged"));
  EXPECT_EQ(ConflictShape(a), ConflictShape(b));
}

TEST(ShardSnapshotterTest, APartialUniqueIndexKeepsOnlyARowItHolds) {
  ExpectAnIndexThatOnlyProbesCanAskAbout("snap-partial-in", "name", " WHERE live = 1", "b", "b", 1,
                                         /*replaces=*/true);
  ExpectAnIndexThatOnlyProbesCanAskAbout("snap-partial-out", "name", " WHERE live = 1", "b", "b", 0,
                                         /*replaces=*/false);
}

TEST(ShardSnapshotterTest, AnExpressionUniqueIndexKeepsARowItWouldReplace) {
  ExpectAnIndexThatOnlyProbesCanAskAbout("snap-expr-in", "lower(name)", "", "b", "B", 1,
                                         /*replaces=*/true);
  ExpectAnIndexThatOnlyProbesCanAskAbout("snap-expr-out", "lower(name)", "", "b", "c", 1,
                                         /*replaces=*/false);
}

// The key of the row with a pending change is a rekey: a moved row 1 to key 5 with name 'b';
// b's snapshot gives 'b' to row 2. a's rekey then applies and replaces row 2 on b.
TEST(ShardSnapshotterTest, ASnapshotRowOverAPendingRekeyEndsAsOnEveryNode) {
  Node a("snap-rekey-a"), b("snap-rekey-b");
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'x')");  // b's change 1
  ApplyEverywhere({&a, &b}, 0, 1, OnlyChange(b.CapturedBatch(2), 1, "order"));
  a.Exec("UPDATE \"order\" SET id = 5, name = 'b' WHERE id = 1");  // a's change 1
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (2, 'b')");      // b's change 2
  ApplyEverywhere({&b}, 0, 2, OnlyChange(b.CapturedBatch(2), 2, "order"));
  auto install = testing::CopySnapshot(*b.applier, *a.applier, 0, 2);
  ASSERT_TRUE(install.ok()) << install.status();
  EXPECT_EQ(a.Dump("order"), "5 5 'b' NULL NULL \n");
  ApplyEverywhere({&a, &b}, 0, 3, OnlyChange(a.CapturedBatch(1), 1, "order"));
  EXPECT_EQ(b.Dump("order"), "5 5 'b' NULL NULL \n");
  EXPECT_EQ(a.Dump("order"), b.Dump("order"));
  EXPECT_EQ(ConflictShape(a), ConflictShape(b));
}

// The same in a WITHOUT ROWID table with a UNIQUE column.
TEST(ShardSnapshotterTest, ASnapshotRowOfAWithoutRowidTableKeepsAPendingRowsUniqueValue) {
  Node a("snap-norowid-a"), b("snap-norowid-b");
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  for (Node* n : {&a, &b}) {
    n->Exec("CREATE TABLE tag (k TEXT PRIMARY KEY, label TEXT UNIQUE) WITHOUT ROWID");
    ASSERT_TRUE(sqlite::InstallCapture(*n->db).ok());
  }
  b.Exec("INSERT INTO tag VALUES ('k1', 'x')");  // b's change 1
  ApplyEverywhere({&a, &b}, 0, 1, OnlyChange(b.CapturedBatch(2), 1, "tag"));
  a.Exec("UPDATE tag SET label = 'b' WHERE k = 'k1'");  // a's change 1
  b.Exec("INSERT INTO tag VALUES ('k2', 'b')");         // b's change 2
  ApplyEverywhere({&b}, 0, 2, OnlyChange(b.CapturedBatch(2), 2, "tag"));
  auto install = testing::CopySnapshot(*b.applier, *a.applier, 0, 2);
  ASSERT_TRUE(install.ok()) << install.status();
  EXPECT_EQ(a.Dump("tag"), "'k1' 'b' \n");
  EXPECT_EQ(a.Conflicts(), 1);
  ApplyEverywhere({&a, &b}, 0, 3, OnlyChange(a.CapturedBatch(1), 1, "tag"));
  EXPECT_EQ(a.Dump("tag"), b.Dump("tag"));
  EXPECT_EQ(ConflictShape(a), ConflictShape(b));
}

}  // namespace
}  // namespace marmot::replicator
