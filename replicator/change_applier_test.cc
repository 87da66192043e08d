// Applying captured changes of one node to another node's database, without Raft in between:
// the state machine half of replication.
#include "replicator/change_applier.h"

#include <glog/logging.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "replicator/change_batch.h"
#include "replicator/snapshot_stream.h"
#include "replicator/value_codec.h"
#include "sqlite/change_log.h"
#include "sqlite/schema.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using sqlite::Value;
using ::testing::HasSubstr;

// What a node writes as its snapshot of `shard` (a stream of pieces), read back whole.
absl::StatusOr<change::v1::ShardSnapshot> CreateSnapshot(ChangeApplier& applier, int shard,
                                                         size_t piece_bytes = kDefaultPieceBytes) {
  raft::host::StringSnapshotSink sink;
  ShardSnapshotWriter writer(sink, piece_bytes);
  if (absl::Status s = applier.CreateSnapshot(shard, writer); !s.ok()) return s;
  return ReadShardSnapshot(raft::host::StringSnapshotSource(sink.Take()));
}

// Installs `snap` as a node does: written as a stream of pieces, read from it.
absl::StatusOr<InstallResult> InstallSnapshot(ChangeApplier& applier,
                                              const change::v1::ShardSnapshot& snap,
                                              std::optional<uint64_t> index = std::nullopt,
                                              size_t piece_bytes = kDefaultPieceBytes) {
  raft::host::StringSnapshotSink sink;
  if (absl::Status s = WriteShardSnapshot(snap, sink, piece_bytes); !s.ok()) return s;
  raft::host::StringSnapshotSource source(sink.Take());
  ShardSnapshotReader reader(source);
  return applier.InstallSnapshot(reader, index);
}

constexpr char kSchema[] =
    "CREATE TABLE \"order\" (id INTEGER PRIMARY KEY, name TEXT UNIQUE, price REAL, img BLOB);"
    "CREATE TABLE pair (a TEXT, b INTEGER, v, PRIMARY KEY (a, b)) WITHOUT ROWID;"
    "CREATE TABLE loose (x, y);"
    "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
    "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id));";

// One node: a database with the schema, capture installed, and an applier.
struct Node {
  explicit Node(const std::string& label, int shards = 1) : router(shards) {
    path = sqlite::testing::NewDatabase(label, kSchema);
    auto opened = sqlite::Database::Open(path);
    CHECK(opened.ok()) << opened.status();
    db = std::make_unique<sqlite::Database>(*std::move(opened));
    CHECK(sqlite::InstallCapture(*db).ok());
    auto a = ChangeApplier::Open(path, router);
    CHECK(a.ok()) << a.status();
    applier = *std::move(a);
  }

  void Exec(const std::string& sql) { ASSERT_TRUE(db->Exec(sql).ok()) << sql; }

  // Closes the applier and opens it again, as a restart of marmot does (what it kept in memory
  // is gone), with `local_node` as its node id.
  void RestartApplier(uint64_t local_node = 0) {
    applier.reset();
    auto reopened = ChangeApplier::Open(path, router);
    CHECK(reopened.ok()) << reopened.status();
    applier = *std::move(reopened);
    applier->set_local_node(local_node);
  }

  // Every captured change of every table, as one batch from this node.
  change::v1::ChangeBatch CapturedBatch(uint64_t origin) {
    change::v1::ChangeBatch batch;
    batch.set_origin_node(origin);
    auto listing = sqlite::ListUserTables(*db);
    CHECK(listing.ok());
    for (const sqlite::TableSchema& t : listing->tables) {
      auto changes = sqlite::ReadChanges(*db, t, 0, 1000000);
      CHECK(changes.ok()) << changes.status();
      if (changes->empty()) continue;
      change::v1::TableChanges* out = batch.add_tables();
      *out = TableHeader(t);
      for (const sqlite::ChangeRecord& c : *changes) *out->add_changes() = ToWire(t, c);
    }
    return batch;
  }

  // All rows of a table with their storage classes, for comparisons.
  std::string Dump(const std::string& table) {
    auto rows = db->QueryRows(absl::StrCat("SELECT rowid, * FROM ", sqlite::QuoteIdentifier(table),
                                           " ORDER BY 2, 3"));
    if (!rows.ok()) {  // WITHOUT ROWID
      rows = db->QueryRows(absl::StrCat("SELECT * FROM ", sqlite::QuoteIdentifier(table), " ORDER BY 1, 2"));
    }
    CHECK(rows.ok()) << rows.status();
    std::string out;
    for (const auto& row : *rows) {
      for (const Value& v : row) absl::StrAppend(&out, v.DebugString(), " ");
      out += "\n";
    }
    return out;
  }

  int64_t LogRows(const std::string& table) {
    return db->QueryValue(absl::StrCat("SELECT count(*) FROM ",
                                       sqlite::QuoteIdentifier(sqlite::ChangeLogTableName(table))))
        ->integer();
  }

  ShardRouter router;
  std::string path;
  std::unique_ptr<sqlite::Database> db;
  std::unique_ptr<ChangeApplier> applier;
};

TEST(ChangeApplierTest, ReplaysAnotherNodesChangesExactly) {
  // Given writes of every kind on node A
  Node a("apply-a"), b("apply-b");
  a.Exec("INSERT INTO \"order\" VALUES (1, 'one', 2.0, x'0001'), (2, 'two', 3.5, NULL);"
         "UPDATE \"order\" SET price = 4.0 WHERE id = 2;"
         "UPDATE \"order\" SET id = 20 WHERE id = 2;"
         "DELETE FROM \"order\" WHERE id = 1;"
         "INSERT INTO pair VALUES ('k', 1, 'v1'), ('k', 2, '2024-01-01');"
         "UPDATE pair SET b = 3 WHERE b = 2;"
         "INSERT INTO loose VALUES ('no', 'key'); INSERT INTO loose VALUES (1.5, NULL);"
         "DELETE FROM loose WHERE x = 'no';");
  // When B applies them as one committed entry
  auto result = b.applier->Apply(0, 5, a.CapturedBatch(1));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->dead_lettered, 0);
  EXPECT_EQ(result->applied, 11);  // 5 of order, 3 of pair, 3 of loose.
  // Then B's tables equal A's, storage classes included
  for (const char* t : {"order", "pair", "loose"}) EXPECT_EQ(b.Dump(t), a.Dump(t)) << t;
  // And B captured nothing of it again (its triggers were off for the applier)
  for (const char* t : {"order", "pair", "loose"}) EXPECT_EQ(b.LogRows(t), 0) << t;
  EXPECT_EQ(*b.applier->AppliedIndex(0), 5u);
}

TEST(ChangeApplierTest, AnEntryIsAppliedOnceAcrossRestartsAndReproposals) {
  Node a("once-a"), b("once-b");
  a.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'x'); UPDATE \"order\" SET name = 'y';");
  change::v1::ChangeBatch batch = a.CapturedBatch(1);
  ASSERT_TRUE(b.applier->Apply(0, 7, batch).ok());
  // The same entry again after a restart of the applier: skipped as stale.
  auto reopened = ChangeApplier::Open(b.path, b.router);
  ASSERT_TRUE(reopened.ok());
  auto again = (*reopened)->Apply(0, 7, batch);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->stale_entry);
  // A later user write on B to the same row, then the origin re-proposes the same changes at a
  // later index (it crashed before learning they committed): skipped as duplicates, so B's
  // newer write is not overwritten by an old one.
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(b.path, "UPDATE \"order\" SET name = 'b-wins';").ok());
  auto reproposed = (*reopened)->Apply(0, 9, batch);
  ASSERT_TRUE(reproposed.ok());
  EXPECT_EQ(reproposed->duplicates, 2);
  EXPECT_EQ(reproposed->applied, 0);
  EXPECT_EQ(*b.db->QueryValue("SELECT name FROM \"order\" WHERE id = 1"), Value::Text("b-wins"));
  EXPECT_EQ(*(*reopened)->AppliedIndex(0), 9u);
}

TEST(ChangeApplierTest, OwnOlderChangesDoNotOverwriteNewerLocalWrites) {
  // Regression (chaos seed 1): a node catching up re-applied its own older change over a newer
  // local write; the application read the older row and wrote it back.
  Node a("own-a");
  a.applier->set_local_node(1);
  a.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'first');");
  change::v1::ChangeBatch older = a.CapturedBatch(1);  // Read before the update: 'first'.
  a.Exec("UPDATE \"order\" SET name = 'second' WHERE id = 1;");
  change::v1::ChangeBatch newer = a.CapturedBatch(1);
  ASSERT_EQ(newer.tables_size(), 1);
  ASSERT_EQ(newer.tables(0).changes_size(), 2);
  newer.mutable_tables(0)->mutable_changes()->DeleteSubrange(0, 1);

  // The older change commits while the newer one is still in the local log: skipped.
  auto r1 = a.applier->Apply(0, 1, older);
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_EQ(r1->superseded, 1);
  EXPECT_EQ(*a.db->QueryValue("SELECT name FROM \"order\" WHERE id = 1"), Value::Text("second"));
  // The newer one then applies as usual.
  auto r2 = a.applier->Apply(0, 2, newer);
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ(r2->applied, 1);
  EXPECT_EQ(*a.db->QueryValue("SELECT name FROM \"order\" WHERE id = 1"), Value::Text("second"));

  // On another node the same older change from node 1 is skipped while that node's own change
  // of the row waits in its log (it comes later in the shard and wins everywhere), and applies
  // once that own change applied.
  Node b("own-b");
  b.applier->set_local_node(2);
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'local on b');"
         "UPDATE \"order\" SET name = 'newer on b' WHERE id = 1;");
  change::v1::ChangeBatch b_own = b.CapturedBatch(2);
  auto r3 = b.applier->Apply(0, 1, older);  // origin 1, not b's own
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(r3->superseded, 1);
  EXPECT_EQ(*b.db->QueryValue("SELECT name FROM \"order\" WHERE id = 1"), Value::Text("newer on b"));
  ASSERT_TRUE(b.applier->Apply(0, 2, b_own).ok());
  auto r4 = b.applier->Apply(0, 3, newer);
  ASSERT_TRUE(r4.ok());
  EXPECT_EQ(r4->superseded, 0);
  EXPECT_EQ(*b.db->QueryValue("SELECT name FROM \"order\" WHERE id = 1"), Value::Text("second"));
}

TEST(ChangeApplierTest, OwnChangeIsSkippedForANewerLocalChangeCapturedAfterEarlierApplies) {
  // The applier reads the local change log incrementally: a change captured after it last read
  // the log must still supersede an older own change of the same row.
  Node a("own-incremental");
  a.applier->set_local_node(1);
  a.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'a'); INSERT INTO \"order\" (id, name) VALUES (2, 'x');");
  change::v1::ChangeBatch first = a.CapturedBatch(1);
  ASSERT_EQ(first.tables(0).changes_size(), 2);
  change::v1::ChangeBatch row1 = first, row2 = first;
  row1.mutable_tables(0)->mutable_changes()->RemoveLast();
  row2.mutable_tables(0)->mutable_changes()->DeleteSubrange(0, 1);
  auto r1 = a.applier->Apply(0, 1, row1);  // reads the log: both inserts
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_EQ(r1->applied, 1);

  a.Exec("UPDATE \"order\" SET name = 'y' WHERE id = 2");  // captured after that read
  auto r2 = a.applier->Apply(0, 2, row2);
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ(r2->superseded, 1);
  EXPECT_EQ(*a.db->QueryValue("SELECT name FROM \"order\" WHERE id = 2"), Value::Text("y"));
}

TEST(ChangeApplierTest, OwnChangeOverItsOwnRowWritesNothingButOverAnotherVersionApplies) {
  Node a("own-unchanged"), b("own-unchanged-b");
  a.applier->set_local_node(1);
  // img has no type affinity: REAL 2.0 and INTEGER 2 stay apart.
  a.Exec("INSERT INTO \"order\" (id, name, img) VALUES (1, 'mine', 2.0)");
  change::v1::ChangeBatch mine = a.CapturedBatch(1);
  // The row still holds what the change carries: nothing to write.
  auto r1 = a.applier->Apply(0, 1, mine);
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_EQ(r1->applied, 1);
  EXPECT_EQ(r1->unchanged, 1);

  // Node 2's version of the row was ordered before node 1's own change of it, and arrived
  // after the capture; it differs only in a storage class (INTEGER 2, not REAL 2.0). The own
  // change must apply over it: the comparison is exact.
  b.Exec("INSERT INTO \"order\" (id, name, img) VALUES (1, 'mine', 2)");
  ASSERT_TRUE(a.applier->Apply(0, 2, b.CapturedBatch(2)).ok());
  EXPECT_EQ(*a.db->QueryValue("SELECT typeof(img) FROM \"order\" WHERE id = 1"), Value::Text("integer"));
  // (The same values under a newer change id, so that it is not taken for a re-proposal.)
  change::v1::ChangeBatch again = mine;
  again.mutable_tables(0)->mutable_changes(0)->set_change_id(mine.tables(0).changes(0).change_id() + 100);
  auto r3 = a.applier->Apply(0, 4, again);
  ASSERT_TRUE(r3.ok()) << r3.status();
  EXPECT_EQ(r3->applied, 1);
  EXPECT_EQ(r3->unchanged, 0);
  EXPECT_EQ(*a.db->QueryValue("SELECT typeof(img) FROM \"order\" WHERE id = 1"), Value::Text("real"));
}

// Makes node a read its pair log once, through a change of node 3 to another row: rows
// of a log's first read count as rewritten (LocalChangeIndex), later ones do not.
void FirstReadOfPair(Node& a, uint64_t index) {
  Node other("first-read-other");
  other.Exec("INSERT INTO pair VALUES ('other', 0, 'theirs')");
  ASSERT_TRUE(a.applier->Apply(0, index, other.CapturedBatch(3)).ok());
}

// Node a writes row ('k', 1) as 'mine', node b the same row as 'theirs'; each change is captured
// (origins 1 and 2), none applied.
struct SameRowWrites {
  change::v1::ChangeBatch mine, theirs;
};
SameRowWrites WriteTheSameRowOnBoth(Node& a, Node& b) {
  SameRowWrites w;
  a.Exec("INSERT INTO pair VALUES ('k', 1, 'mine')");
  w.mine = a.CapturedBatch(1);
  b.Exec("INSERT INTO pair VALUES ('k', 1, 'theirs')");
  w.theirs = b.CapturedBatch(2);
  return w;
}

TEST(ChangeApplierTest, OwnChangeAppliesAgainOverARowAnotherNodesChangeRewroteMeanwhile) {
  // Most own changes are known to be in place without reading their row; one whose row the
  // applier rewrote since the capture is not.
  Node a("own-rewritten"), b("own-rewritten-b");
  a.applier->set_local_node(1);
  FirstReadOfPair(a, 1);
  auto [mine, theirs] = WriteTheSameRowOnBoth(a, b);
  // Node 2's version of the row was ordered before node 1's change and arrives after it. An
  // applier that knows its node id skips it (the own change comes later); one that does not,
  // as here, writes it, and the own change then finds its row rewritten.
  a.applier->set_local_node(0);
  ASSERT_TRUE(a.applier->Apply(0, 2, theirs).ok());
  a.applier->set_local_node(1);
  EXPECT_EQ(*a.db->QueryValue("SELECT v FROM pair WHERE a = 'k'"), Value::Text("theirs"));
  auto r = a.applier->Apply(0, 3, mine);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->applied, 1);
  EXPECT_EQ(r->unchanged, 0);
  EXPECT_EQ(*a.db->QueryValue("SELECT v FROM pair WHERE a = 'k'"), Value::Text("mine"));

  // A later own change of the row that nothing touched is in place: nothing to write.
  a.Exec("UPDATE pair SET v = 'mine again' WHERE a = 'k'");
  change::v1::ChangeBatch later = a.CapturedBatch(1);
  later.mutable_tables(0)->mutable_changes()->DeleteSubrange(0, 1);  // the first was applied
  auto r2 = a.applier->Apply(0, 4, later);
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ(r2->unchanged, 1);
  EXPECT_EQ(*a.db->QueryValue("SELECT v FROM pair WHERE a = 'k'"), Value::Text("mine again"));
}

TEST(ChangeApplierTest, OwnChangeAppliesAgainOverARowRewrittenBeforeARestart) {
  // What the applier wrote before it (re)started is unknown to it: rows of the first read of a
  // log are read, not trusted.
  Node a("own-restart"), b("own-restart-b");
  auto [mine, theirs] = WriteTheSameRowOnBoth(a, b);
  ASSERT_TRUE(a.applier->Apply(0, 1, theirs).ok());  // Not knowing its node id: written.
  a.RestartApplier(1);
  auto r = a.applier->Apply(0, 2, mine);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->unchanged, 0);
  EXPECT_EQ(*a.db->QueryValue("SELECT v FROM pair WHERE a = 'k'"), Value::Text("mine"));
}

TEST(ChangeApplierTest, OwnChangeAppliesAgainOverARowAnUpsertOfAnotherKeyDeleted) {
  // "order".name is UNIQUE: node 2's row 9 with the same name replaces node 1's row 1 here,
  // which no change of row 1 says. Node 1's own change of row 1, ordered after, brings it back.
  Node a("own-unique"), b("own-unique-b");
  a.applier->set_local_node(1);
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (50, 'other')");
  ASSERT_TRUE(a.applier->Apply(0, 1, b.CapturedBatch(2)).ok());  // the log's first read
  a.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'same')");
  change::v1::ChangeBatch mine = a.CapturedBatch(1);
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (9, 'same')");
  change::v1::ChangeBatch theirs = b.CapturedBatch(2);
  a.applier->set_local_node(0);  // Not knowing its node id: written.
  ASSERT_TRUE(a.applier->Apply(0, 2, theirs).ok());
  a.applier->set_local_node(1);
  EXPECT_EQ(*a.db->QueryValue("SELECT group_concat(id) FROM \"order\" WHERE name = 'same'"),
            Value::Text("9"));
  auto r = a.applier->Apply(0, 3, mine);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->unchanged, 0);
  EXPECT_EQ(*a.db->QueryValue("SELECT group_concat(id) FROM \"order\" WHERE name = 'same'"),
            Value::Text("1"));
}

TEST(ChangeApplierTest, AnotherNodesChangeOfARowWithAPendingLocalChangeIsSkipped) {
  // Node 1 wrote rows 1 ('same') and ('k', 1); node 2's changes of the same rows, and one that
  // would replace row 1 through the UNIQUE name, were ordered before node 1's changes and
  // arrive first. Node 1's changes come later and win everywhere; here nothing flickers.
  Node a("pending-a"), b("pending-b");
  a.applier->set_local_node(1);
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (50, 'other')");
  ASSERT_TRUE(a.applier->Apply(0, 1, b.CapturedBatch(2)).ok());
  b.Exec("DELETE FROM \"order\"");
  ASSERT_TRUE(a.applier->Apply(0, 2, b.CapturedBatch(2)).ok());
  a.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'same'); INSERT INTO pair VALUES ('k', 1, 'mine')");
  change::v1::ChangeBatch mine = a.CapturedBatch(1);
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (9, 'same'), (1, 'theirs');"
         "INSERT INTO pair VALUES ('k', 1, 'theirs'), ('k', 2, 'other row')");
  auto r = a.applier->Apply(0, 3, b.CapturedBatch(2));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->superseded, 3);
  EXPECT_EQ(r->applied, 1);  // ('k', 2): no local change
  EXPECT_EQ(*a.db->QueryValue("SELECT group_concat(id || name) FROM \"order\""), Value::Text("1same"));
  EXPECT_EQ(*a.db->QueryValue("SELECT group_concat(v) FROM pair ORDER BY b"), Value::Text("mine,other row"));
  // Node 1's own changes apply; a later change of node 2 applies as usual.
  auto own = a.applier->Apply(0, 4, mine);
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ(own->unchanged, 2);
  b.Exec("UPDATE pair SET v = 'theirs later' WHERE b = 1");
  change::v1::ChangeBatch later = b.CapturedBatch(2);
  auto r2 = a.applier->Apply(0, 5, later);
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ(*a.db->QueryValue("SELECT v FROM pair WHERE b = 1"), Value::Text("theirs later"));
}

// The batch with only change `id` of table pair.
change::v1::ChangeBatch OnlyChange(const change::v1::ChangeBatch& batch, int64_t id) {
  change::v1::ChangeBatch one = batch;
  for (int i = one.tables_size() - 1; i >= 0; --i) {
    if (one.tables(i).table() != "pair") one.mutable_tables()->DeleteSubrange(i, 1);
  }
  CHECK_EQ(one.tables_size(), 1);
  auto* changes = one.mutable_tables(0)->mutable_changes();
  for (int i = changes->size() - 1; i >= 0; --i) {
    if (changes->Get(i).change_id() != id) changes->DeleteSubrange(i, 1);
  }
  CHECK_EQ(changes->size(), 1);
  return one;
}

int64_t StoredAppliedIndex(Node& n) {
  auto v = n.db->QueryValue("SELECT applied_index FROM \"__marmot__shard_state\" WHERE shard = 0");
  CHECK(v.ok()) << v.status();
  return v->is_null() ? 0 : v->integer();
}


TEST(ChangeApplierTest, AnOwnEntryThatNeedsNoWriteIsAppliedWithoutATransaction) {
  Node a("unwritten");
  a.applier->set_local_node(1);
  FirstReadOfPair(a, 1);
  a.Exec("INSERT INTO pair VALUES ('k', 1, 'mine')");
  change::v1::ChangeBatch mine = a.CapturedBatch(1);
  const int64_t version = a.db->QueryValue("PRAGMA data_version")->integer();

  auto r = a.applier->ApplyWithoutWriting(0, 2, mine);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->applied, 1);
  EXPECT_EQ((*r)->unchanged, 1);
  // Nothing was written (another connection would see data_version move), yet the applier
  // counts the entry: a stale or re-proposed copy is recognised.
  EXPECT_EQ(a.db->QueryValue("PRAGMA data_version")->integer(), version);
  EXPECT_EQ(StoredAppliedIndex(a), 1);
  EXPECT_EQ(*a.applier->AppliedIndex(0), 2u);
  EXPECT_TRUE(a.applier->has_deferred());
  auto stale = a.applier->ApplyWithoutWriting(0, 2, mine);
  ASSERT_TRUE(stale.ok() && stale->has_value());
  EXPECT_TRUE((*stale)->stale_entry);
  auto again = a.applier->ApplyWithoutWriting(0, 3, mine);
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_EQ((*again)->duplicates, 1);

  // The next transaction writes it.
  ASSERT_TRUE(a.applier->database().Exec("BEGIN IMMEDIATE").ok());
  ASSERT_TRUE(a.applier->WriteDeferred().ok());
  ASSERT_TRUE(a.applier->database().Exec("COMMIT").ok());
  a.applier->DeferredCommitted();
  EXPECT_FALSE(a.applier->has_deferred());
  EXPECT_EQ(StoredAppliedIndex(a), 3);
  EXPECT_EQ(*a.db->QueryValue("SELECT change_id FROM \"__marmot__applied\" WHERE origin = 1 AND tbl = 'pair'"),
            Value::Integer(1));
  EXPECT_EQ(*a.db->QueryValue("SELECT v FROM pair WHERE a = 'k'"), Value::Text("mine"));
}

TEST(ChangeApplierTest, RowsOfALogsFirstReadAreReadToApplyWithoutWriting) {
  // The index cannot vouch for rows its first read of a log finds (marmot restarted with changes
  // in the log, or they were written before it looked): reading the row still spares the write
  // transaction, which would make the application's writer wait.
  Node a("first-read-unwritten");
  a.applier->set_local_node(1);
  a.Exec("INSERT INTO pair VALUES ('k', 1, 'mine'), ('k', 2, 'mine too')");
  change::v1::ChangeBatch mine = a.CapturedBatch(1);
  a.Exec("UPDATE pair SET v = 'changed since' WHERE b = 2");
  change::v1::ChangeBatch first = OnlyChange(mine, 1);
  const int64_t version = a.db->QueryValue("PRAGMA data_version")->integer();
  auto r = a.applier->ApplyWithoutWriting(0, 1, first);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->unchanged, 1);
  EXPECT_EQ(a.db->QueryValue("PRAGMA data_version")->integer(), version);
  // A change that a newer local change of its row supersedes needs no read either.
  auto second = a.applier->ApplyWithoutWriting(0, 2, OnlyChange(mine, 2));
  ASSERT_TRUE(second.ok() && second->has_value());
  EXPECT_EQ((*second)->superseded, 1);
}

TEST(ChangeApplierTest, EntriesThatNeedAWriteAreLeftToApply) {
  Node a("unwritten-no"), b("unwritten-no-b");
  a.applier->set_local_node(1);
  FirstReadOfPair(a, 1);
  // Another node's change to the same row, ordered before: the row no longer holds 'mine'.
  auto [mine, theirs] = WriteTheSameRowOnBoth(a, b);
  auto remote = a.applier->ApplyWithoutWriting(0, 2, theirs);
  ASSERT_TRUE(remote.ok());
  EXPECT_FALSE(remote->has_value()) << "another node's changes always write";
  a.applier->set_local_node(0);  // Not knowing its node id: written.
  ASSERT_TRUE(a.applier->Apply(0, 2, theirs).ok());
  a.applier->set_local_node(1);
  auto r = a.applier->ApplyWithoutWriting(0, 3, mine);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  EXPECT_FALSE(a.applier->has_deferred());
  EXPECT_EQ(*a.applier->AppliedIndex(0), 2u);
  // Apply writes it, with what ApplyWithoutWriting left of the index.
  auto applied = a.applier->Apply(0, 3, mine);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->unchanged, 0);
  EXPECT_EQ(*a.db->QueryValue("SELECT v FROM pair WHERE a = 'k'"), Value::Text("mine"));

  // A table with another UNIQUE constraint, and an open transaction, always write too.
  a.Exec("INSERT INTO \"order\" (id, name) VALUES (5, 'n')");
  change::v1::ChangeBatch order = a.CapturedBatch(1);
  for (int i = order.tables_size() - 1; i >= 0; --i) {
    if (order.tables(i).table() != "order") order.mutable_tables()->DeleteSubrange(i, 1);
  }
  auto unique = a.applier->ApplyWithoutWriting(0, 4, order);
  ASSERT_TRUE(unique.ok());
  EXPECT_FALSE(unique->has_value());
  a.Exec("INSERT INTO pair VALUES ('j', 1, 'mine')");
  change::v1::ChangeBatch j = OnlyChange(a.CapturedBatch(1), 2);
  ASSERT_TRUE(a.applier->database().Exec("BEGIN").ok());
  auto in_txn = a.applier->ApplyWithoutWriting(0, 4, j);
  ASSERT_TRUE(a.applier->database().Exec("ROLLBACK").ok());
  ASSERT_TRUE(in_txn.ok());
  EXPECT_FALSE(in_txn->has_value());
  auto outside = a.applier->ApplyWithoutWriting(0, 4, j);
  ASSERT_TRUE(outside.ok());
  EXPECT_TRUE(outside->has_value());
}

TEST(ChangeApplierTest, EntriesAppliedWithoutWritingApplyAgainAfterACrashWithoutAnOlderRowShowing) {
  // Two own changes of a row, both applied without writing; the applier then dies before any
  // transaction wrote that. Its log rows are still there (marking writes the deferred state
  // first): applied again from the Raft log, the older change is superseded, the row never
  // shows 'v1' again.
  Node a("unwritten-crash");
  a.applier->set_local_node(1);
  FirstReadOfPair(a, 1);
  a.Exec("INSERT INTO pair VALUES ('k', 1, 'v1')");
  change::v1::ChangeBatch first = OnlyChange(a.CapturedBatch(1), 1);
  auto r1 = a.applier->ApplyWithoutWriting(0, 2, first);
  ASSERT_TRUE(r1.ok() && r1->has_value());
  a.Exec("UPDATE pair SET v = 'v2' WHERE a = 'k'");
  change::v1::ChangeBatch second = OnlyChange(a.CapturedBatch(1), 2);
  auto r2 = a.applier->ApplyWithoutWriting(0, 3, second);
  ASSERT_TRUE(r2.ok() && r2->has_value());
  EXPECT_EQ((*r2)->unchanged, 1);

  a.RestartApplier(1);
  EXPECT_EQ(*a.applier->AppliedIndex(0), 1u);
  for (const auto& [index, batch] : {std::make_pair(2, first), std::make_pair(3, second)}) {
    // As the state machine does: without writing when it can, else Apply.
    auto unwritten = a.applier->ApplyWithoutWriting(0, index, batch);
    ASSERT_TRUE(unwritten.ok()) << unwritten.status();
    if (!unwritten->has_value()) {
      ASSERT_TRUE(a.applier->Apply(0, index, batch).ok());
    }
    EXPECT_EQ(*a.db->QueryValue("SELECT v FROM pair WHERE a = 'k'"), Value::Text("v2")) << index;
  }
  EXPECT_EQ(*a.applier->AppliedIndex(0), 3u);
}

TEST(ChangeApplierTest, ForeignKeysDoNotBlockOutOfOrderApply) {
  Node a("fk-a"), b("fk-b");
  // A child arrives before its parent (different shards apply in different orders), even on a
  // database whose applications enforce foreign keys.
  a.Exec("PRAGMA foreign_keys = ON; INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1);");
  change::v1::ChangeBatch batch = a.CapturedBatch(1);
  change::v1::ChangeBatch child_first;
  child_first.set_origin_node(1);
  for (const auto& t : batch.tables()) {
    if (t.table() == "child") *child_first.add_tables() = t;
  }
  auto result = b.applier->Apply(0, 1, child_first);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->applied, 1);
  EXPECT_EQ(result->dead_lettered, 0);
}

TEST(ChangeApplierTest, ChangesToMarmotsOrSqlitesOwnTablesOrToViewsAreDeadLettersNeverApplied) {
  // A forged change into the dedupe state would make a later real change of that origin look
  // applied; one into sqlite_sequence or a view, or a snapshot table named so, is no better.
  Node b("forged-b");
  b.Exec("CREATE TABLE counter (id INTEGER PRIMARY KEY AUTOINCREMENT, v);"
         "INSERT INTO counter (v) VALUES (1); CREATE VIEW v_order AS SELECT * FROM \"order\";");
  change::v1::ChangeBatch forged;
  forged.set_origin_node(7);
  auto add = [&](const std::string& table, std::vector<std::string> columns, std::vector<std::string> key,
                 std::vector<change::v1::Value> row) {
    change::v1::TableChanges* t = forged.add_tables();
    t->set_table(table);
    for (const auto& c : columns) t->add_columns(c);
    for (const auto& k : key) t->add_key_columns(k);
    change::v1::Change* c = t->add_changes();
    c->set_change_id(1);
    c->set_op(change::v1::OP_INSERT);
    for (const auto& v : row) *c->add_row() = v;
  };
  change::v1::Value one, big, text;
  one.set_integer(1);
  big.set_integer(int64_t{1} << 60);
  text.set_text("t");
  add("__marmot__applied", {"shard", "origin", "tbl", "change_id"}, {"shard", "origin", "tbl"}, {one, one, text, big});
  add("__MARMOT__applied", {"shard", "origin", "tbl", "change_id"}, {"shard", "origin", "tbl"}, {one, one, text, big});
  add("sqlite_sequence", {"name", "seq"}, {}, {text, big});
  add("v_order", {"id"}, {"id"}, {one});
  auto result = b.applier->Apply(0, 1, forged);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->applied, 0);
  EXPECT_EQ(result->dead_lettered, 4);
  // (Their ids are recorded as applied, as for every dead letter; nothing else was written.)
  EXPECT_EQ(*b.db->QueryValue("SELECT count(*) FROM \"__marmot__applied\" WHERE change_id <> 1"),
            Value::Integer(0));
  EXPECT_EQ(*b.db->QueryValue("SELECT seq FROM sqlite_sequence WHERE name = 'counter'"), Value::Integer(1));
  auto errors = b.db->QueryRows("SELECT error FROM \"__marmot__dead_letters\" ORDER BY id");
  ASSERT_TRUE(errors.ok());
  ASSERT_EQ(errors->size(), 4u);
  EXPECT_THAT((*errors)[0][0].bytes(), HasSubstr("not a user table"));
  EXPECT_THAT((*errors)[3][0].bytes(), HasSubstr("is a view"));
  // A snapshot naming them installs nothing into them either.
  change::v1::ShardSnapshot snap;
  snap.set_shard(0);
  snap.set_applied_index(5);
  change::v1::ShardSnapshot::Table* t = snap.add_tables();
  t->set_table("__marmot__shard_state");
  t->add_columns("shard");
  t->add_columns("applied_index");
  t->add_key_columns("shard");
  *t->add_values() = one;
  *t->add_values() = big;
  auto install = InstallSnapshot(*b.applier, snap);
  ASSERT_TRUE(install.ok()) << install.status();
  EXPECT_EQ(*b.applier->AppliedIndex(0), 5u);
  EXPECT_EQ(*b.db->QueryValue("SELECT count(*) FROM \"__marmot__shard_state\" WHERE shard = 1"), Value::Integer(0));
}

TEST(ChangeApplierTest, ASnapshotTableThatCannotInstallIsADeadLetterAndTheRestInstalls) {
  // Rows a constraint of this node refuses, and a table whose columns differ here, used to fail
  // the whole install, which was retried forever.
  Node a("uninstallable-a"), b("uninstallable-b");
  a.Exec("INSERT INTO \"order\" (id, name, price) VALUES (1, 'cheap', 1), (2, 'dear', 500);"
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

TEST(ChangeApplierTest, ATableRefusedInALaterPieceIsKeptWholeAndInstallsOnRetry) {
  // Given 2,000 rows of a table in a snapshot of 4 KiB pieces, the last of which a CHECK
  // constraint of this node refuses,
  Node a("pieces-a"), b("pieces-b");
  a.Exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
         "INSERT INTO \"order\" (id, name, price) SELECT i, 'item ' || i, i FROM n;");
  ASSERT_TRUE(a.applier->AdvanceAppliedIndex(0, 7).ok());
  auto snapshot = CreateSnapshot(*a.applier, 0, 4 << 10);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  b.Exec("DROP TABLE \"order\"; CREATE TABLE \"order\" (id INTEGER PRIMARY KEY, name TEXT UNIQUE, "
         "price REAL CHECK (price < 2000), img BLOB);");
  // when it is installed,
  auto install = InstallSnapshot(*b.applier, *snapshot, 7, 4 << 10);
  ASSERT_TRUE(install.ok()) << install.status();
  // then none of the table's rows stay (the pieces before the refused row are undone), the
  // others tables installed, and the dead letter holds all 2,000 rows:
  EXPECT_EQ(*b.db->QueryValue("SELECT count(*) FROM \"order\""), Value::Integer(0));
  EXPECT_EQ(*b.applier->DeadLetterCount(), 1);
  // once the constraint is aligned, a retry installs every one of them.
  b.Exec("DROP TABLE \"order\"; CREATE TABLE \"order\" (id INTEGER PRIMARY KEY, name TEXT UNIQUE, "
         "price REAL, img BLOB);");
  auto retried = b.applier->RetryDeadLetters({});
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->applied, 1);
  EXPECT_EQ(b.Dump("order"), a.Dump("order"));
}

TEST(ChangeApplierTest, AnInstallThatCannotKeepItsDeadLettersChangesNothing) {
  Node a("keep-a"), b("keep-b");
  a.Exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) "
         "INSERT INTO \"order\" (id, name, price) SELECT i, 'item ' || i, i FROM n;"
         "INSERT INTO pair VALUES ('k', 1, 'v');");
  ASSERT_TRUE(a.applier->AdvanceAppliedIndex(0, 7).ok());
  auto snapshot = CreateSnapshot(*a.applier, 0);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  b.Exec("INSERT INTO pair VALUES ('b', 2, 'mine'); DROP TABLE \"order\"; CREATE TABLE \"order\" "
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

TEST(ChangeApplierTest, ChangesPastTheDeadLetterLimitFailTheEntryAndChangeNothing) {
  Node a("limit-a"), b("limit-b");
  a.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'one'), (2, 'two');");
  b.Exec("DROP TABLE \"order\";");  // Every change of it is a dead letter here.
  b.applier->set_max_dead_letters(1);
  auto r = b.applier->Apply(0, 3, a.CapturedBatch(1));
  EXPECT_TRUE(absl::IsResourceExhausted(r.status())) << r.status();
  EXPECT_FALSE(IsDatabaseFailure(r.status()));
  EXPECT_EQ(*b.applier->DeadLetterCount(), 0);
  EXPECT_EQ(*b.applier->AppliedIndex(0), 0u);
  b.applier->set_max_dead_letters(2);
  r = b.applier->Apply(0, 3, a.CapturedBatch(1));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->dead_lettered, 2);
}

TEST(ChangeApplierTest, ASnapshotOfManyPiecesInstallsWhole) {
  Node a("many-pieces-a", 2), b("many-pieces-b", 2);
  // About 3 MB of rows: with 64 KiB pieces, dozens of pieces per shard.
  a.Exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) "
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

TEST(ChangeApplierTest, ChangesThatCannotApplyGoToDeadLettersAndTheRestApplies) {
  Node a("dead-a"), b("dead-b");
  a.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'ok'); INSERT INTO pair VALUES ('k', 1, 'v');");
  change::v1::ChangeBatch batch = a.CapturedBatch(1);
  // B's pair table has another shape; a change also names a table B does not have.
  b.Exec("DROP TABLE pair; CREATE TABLE pair (a TEXT, b INTEGER, w, PRIMARY KEY (a, b)) WITHOUT ROWID;");
  change::v1::TableChanges* ghost = batch.add_tables();
  ghost->set_table("ghost");
  ghost->add_columns("id");
  ghost->add_key_columns("id");
  change::v1::Change* c = ghost->add_changes();
  c->set_change_id(1);
  c->set_op(change::v1::OP_INSERT);
  c->add_row()->set_integer(1);

  auto result = b.applier->Apply(0, 3, batch);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->applied, 1);
  EXPECT_EQ(result->dead_lettered, 2);
  EXPECT_EQ(*b.applier->DeadLetterCount(), 2);
  auto errors = b.db->QueryRows("SELECT tbl, error FROM \"__marmot__dead_letters\" ORDER BY tbl");
  ASSERT_TRUE(errors.ok());
  EXPECT_EQ((*errors)[0][0], Value::Text("ghost"));
  EXPECT_THAT((*errors)[0][1].bytes(), HasSubstr("does not exist on this node"));
  EXPECT_THAT((*errors)[1][1].bytes(), HasSubstr("differs on this node"));
  // The shard moved on.
  EXPECT_EQ(*b.applier->AppliedIndex(0), 3u);
  EXPECT_EQ(b.Dump("order"), a.Dump("order"));
}

TEST(ChangeApplierTest, SnapshotReplacesExactlyTheShardsRows) {
  // Given two nodes with 4 shards and different data
  Node a("snap-a", 4), b("snap-b", 4);
  for (int i = 0; i < 200; ++i) {
    a.Exec(absl::StrCat("INSERT INTO \"order\" (id, name, price) VALUES (", i, ", 'a", i, "', ", i, ".5)"));
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

// Found by //tests/fuzz:snapshot_install: a snapshot of one shard holding a row of another
// wrote it, out of that shard's order (and over that shard's version of the row).
TEST(ChangeApplierTest, ASnapshotTableWithARowOfAnotherShardIsADeadLetterAndWritesNothing) {
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

TEST(ChangeApplierTest, ASnapshotLeavesRowsWithLaterOwnChangesAsTheyAre) {
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
  b.Exec(absl::StrCat("UPDATE pair SET v = 'b-newer' WHERE a = '", names[1], "';"
                      "INSERT INTO pair VALUES ('", names[0], "', 1, 'b-old'), ('", names[2], "', 1, 'b3');"));
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

// Dead letters, retried. A dead letter holds its row back: every later change of the same row
// queues behind it, so that a retry can never write an older version over a newer one.

// The dead letters of a node, oldest first: "id tbl change_id error" per line.
std::string DeadLetters(Node& n) {
  auto rows = n.db->QueryRows(
      "SELECT id, tbl, change_id, error FROM \"__marmot__dead_letters\" ORDER BY id");
  CHECK(rows.ok()) << rows.status();
  std::string out;
  for (const auto& r : *rows) {
    for (const Value& v : r) absl::StrAppend(&out, v.DebugString(), " ");
    out += "\n";
  }
  return out;
}

std::vector<int64_t> DeadLetterIds(Node& n) {
  auto rows = n.db->QueryRows("SELECT id FROM \"__marmot__dead_letters\" ORDER BY id");
  CHECK(rows.ok()) << rows.status();
  std::vector<int64_t> ids;
  for (const auto& r : *rows) ids.push_back(r[0].integer());
  return ids;
}

TEST(DeadLetterRetryTest, AChangeForAMissingTableAppliesOnceTheTableExists) {
  // Given changes of `pair` that node B cannot apply: B has no such table
  Node a("retry-a"), b("retry-b");
  b.Exec("DROP TABLE pair");
  a.Exec("INSERT INTO pair VALUES ('k', 1, 'v1'), ('k', 2, 2.5); UPDATE pair SET v = 'v2' WHERE b = 1;"
         "INSERT INTO \"order\" (id, name) VALUES (1, 'x')");
  change::v1::ChangeBatch batch = a.CapturedBatch(1);
  auto applied = b.applier->Apply(0, 3, batch);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->dead_lettered, 3);
  EXPECT_EQ(applied->applied, 1);
  EXPECT_EQ(*b.applier->DeadLetterCount(), 3);

  // When the operator creates the table (with capture on it) and retries every dead letter
  b.Exec("CREATE TABLE pair (a TEXT, b INTEGER, v, PRIMARY KEY (a, b)) WITHOUT ROWID");
  ASSERT_TRUE(sqlite::InstallCapture(*b.db).ok());
  auto retried = b.applier->RetryDeadLetters({});
  ASSERT_TRUE(retried.ok()) << retried.status();

  // Then they apply in order, the dead letters are gone, and B's rows equal A's
  EXPECT_EQ(retried->applied, 3);
  EXPECT_EQ(retried->still_failing, 0);
  EXPECT_EQ(*b.applier->DeadLetterCount(), 0);
  EXPECT_EQ(b.Dump("pair"), a.Dump("pair"));
  EXPECT_EQ(b.LogRows("pair"), 0);  // Applied with triggers off: not captured again.
  // And the same changes proposed again later are still duplicates, not applied twice
  ASSERT_TRUE(b.db->Exec("UPDATE pair SET v = 'b-wins' WHERE b = 1").ok());
  auto again = b.applier->Apply(0, 4, batch);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->duplicates, 4);
  EXPECT_EQ(again->applied, 0);
  EXPECT_EQ(*b.db->QueryValue("SELECT v FROM pair WHERE b = 1"), Value::Text("b-wins"));
}

TEST(DeadLetterRetryTest, LaterChangesOfADeadLetteredRowQueueBehindItAndApplyInOrder) {
  // Given node B whose `order` rejects prices of 100 or more (same columns, extra CHECK)
  Node a("order-a"), b("order-b");
  b.Exec("DROP TABLE \"order\"; CREATE TABLE \"order\" (id INTEGER PRIMARY KEY, name TEXT UNIQUE, "
         "price REAL CHECK (price < 100), img BLOB);");
  // Entry 1: row 1 gets a price B rejects (change A); row 2 is fine
  a.Exec("INSERT INTO \"order\" (id, name, price) VALUES (1, 'r1', 500), (2, 'r2', 1)");
  auto r1 = b.applier->Apply(0, 1, a.CapturedBatch(1));
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_EQ(r1->dead_lettered, 1);
  EXPECT_EQ(r1->applied, 1);
  const int64_t first = DeadLetterIds(b).at(0);

  // When entry 2 brings change B of row 1, which B could apply on its own, and a change of row 2
  a.Exec("UPDATE \"order\" SET price = 5 WHERE id = 1; UPDATE \"order\" SET price = 7 WHERE id = 2");
  auto r2 = b.applier->Apply(0, 2, a.CapturedBatch(1));  // Entry 1's changes again: duplicates.
  ASSERT_TRUE(r2.ok()) << r2.status();

  // Then change B is queued behind A, not applied; row 2 is unaffected
  EXPECT_EQ(r2->dead_lettered, 1);
  EXPECT_EQ(r2->applied, 1);
  EXPECT_EQ(*b.db->QueryValue("SELECT count(*) FROM \"order\" WHERE id = 1"), Value::Integer(0));
  EXPECT_EQ(*b.db->QueryValue("SELECT price FROM \"order\" WHERE id = 2"), Value::Real(7));
  std::vector<int64_t> ids = DeadLetterIds(b);
  ASSERT_EQ(ids.size(), 2u);
  const int64_t second = ids[1];
  EXPECT_THAT(DeadLetters(b), HasSubstr(absl::StrCat("queued behind dead letter ", first, " of the same row")));

  // Retrying B alone while A still fails applies nothing
  auto only_b = b.applier->RetryDeadLetters({second});
  ASSERT_TRUE(only_b.ok()) << only_b.status();
  EXPECT_EQ(only_b->applied, 0);
  EXPECT_EQ(only_b->still_failing, 1);
  EXPECT_EQ(*b.db->QueryValue("SELECT count(*) FROM \"order\" WHERE id = 1"), Value::Integer(0));
  // Retrying both while the cause remains: A fails again (its error kept up to date), B waits
  auto both = b.applier->RetryDeadLetters({});
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_EQ(both->applied, 0);
  EXPECT_EQ(both->still_failing, 2);
  EXPECT_THAT(DeadLetters(b), HasSubstr("CHECK constraint failed"));
  EXPECT_EQ(DeadLetterIds(b), ids);

  // Once the cause is fixed (the CHECK dropped, rows kept), a retry applies A then B: row 1 ends
  // as B made it, as on A
  b.Exec("CREATE TABLE o2 (id INTEGER PRIMARY KEY, name TEXT UNIQUE, price REAL, img BLOB);"
         "INSERT INTO o2 SELECT * FROM \"order\"; DROP TABLE \"order\"; ALTER TABLE o2 RENAME TO \"order\";");
  auto fixed = b.applier->RetryDeadLetters({});
  ASSERT_TRUE(fixed.ok()) << fixed.status();
  EXPECT_EQ(fixed->applied, 2);
  EXPECT_EQ(fixed->still_failing, 0);
  EXPECT_EQ(DeadLetters(b), "");
  EXPECT_EQ(b.Dump("order"), a.Dump("order"));
  // The row is free again: its next change applies at once
  a.Exec("UPDATE \"order\" SET name = 'r1 renamed' WHERE id = 1");
  auto r3 = b.applier->Apply(0, 3, a.CapturedBatch(1));
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(r3->applied, 1);
  EXPECT_EQ(b.Dump("order"), a.Dump("order"));
}

TEST(DeadLetterRetryTest, ARekeyQueuesBehindItsOldKeyAndHoldsBackItsNewKey) {
  Node a("rekey-a"), b("rekey-b");
  b.Exec("DROP TABLE \"order\"; CREATE TABLE \"order\" (id INTEGER PRIMARY KEY, name TEXT UNIQUE, "
         "price REAL CHECK (price < 100), img BLOB);");
  a.Exec("INSERT INTO \"order\" (id, name, price) VALUES (1, 'r1', 500)");
  ASSERT_TRUE(b.applier->Apply(0, 1, a.CapturedBatch(1)).ok());  // Row 1: dead letter.
  // Row 1 moves to key 10 (queued behind row 1), then row 10 changes (queued behind the rekey).
  a.Exec("UPDATE \"order\" SET id = 10, price = 1 WHERE id = 1;"
         "UPDATE \"order\" SET name = 'r10' WHERE id = 10");
  auto r = b.applier->Apply(0, 2, a.CapturedBatch(1));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->dead_lettered, 2);
  EXPECT_EQ(r->applied, 0);
  std::vector<int64_t> ids = DeadLetterIds(b);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_THAT(DeadLetters(b), HasSubstr(absl::StrCat("queued behind dead letter ", ids[1])));

  b.Exec("CREATE TABLE o2 (id INTEGER PRIMARY KEY, name TEXT UNIQUE, price REAL, img BLOB);"
         "DROP TABLE \"order\"; ALTER TABLE o2 RENAME TO \"order\";");
  auto fixed = b.applier->RetryDeadLetters({});
  ASSERT_TRUE(fixed.ok()) << fixed.status();
  EXPECT_EQ(fixed->applied, 3);
  EXPECT_EQ(b.Dump("order"), a.Dump("order"));
}

TEST(DeadLetterRetryTest, BlockedRowsSurviveAReopenAndAHandDeletedDeadLetterFreesItsRow) {
  Node a("reopen-a"), b("reopen-b");
  b.Exec("DROP TABLE pair");
  a.Exec("INSERT INTO pair VALUES ('k', 1, 'v1'), ('k', 2, 'w1')");
  ASSERT_TRUE(b.applier->Apply(0, 1, a.CapturedBatch(1)).ok());
  ASSERT_EQ(*b.applier->DeadLetterCount(), 2);
  b.Exec("CREATE TABLE pair (a TEXT, b INTEGER, v, PRIMARY KEY (a, b)) WITHOUT ROWID");
  // An operator gives up on row ('k', 2) and deletes its dead letter by hand.
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(
                  b.path, "DELETE FROM \"__marmot__dead_letters\" WHERE change_id = 2;")
                  .ok());

  // After a restart, a later change of row ('k', 1) still queues behind its dead letter, while
  // row ('k', 2), whose dead letter is gone, takes its change.
  b.RestartApplier();
  a.Exec("UPDATE pair SET v = 'v2' WHERE b = 1; UPDATE pair SET v = 'w2' WHERE b = 2");
  auto r = b.applier->Apply(0, 2, a.CapturedBatch(1));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->dead_lettered, 1);
  EXPECT_EQ(r->applied, 1);
  EXPECT_EQ(*b.db->QueryValue("SELECT count(*) FROM pair WHERE b = 1"), Value::Integer(0));

  auto retried = b.applier->RetryDeadLetters({});
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->applied, 2);
  EXPECT_EQ(b.Dump("pair"), a.Dump("pair"));
}

TEST(DeadLetterRetryTest, AHandDeletedDeadLetterStopsHoldingItsRowWithoutARestart) {
  Node a("hand-a"), b("hand-b");
  b.Exec("DROP TABLE pair");
  a.Exec("INSERT INTO pair VALUES ('k', 1, 'v1')");
  ASSERT_TRUE(b.applier->Apply(0, 1, a.CapturedBatch(1)).ok());
  b.Exec("CREATE TABLE pair (a TEXT, b INTEGER, v, PRIMARY KEY (a, b)) WITHOUT ROWID;"
         "DELETE FROM \"__marmot__dead_letters\";");
  a.Exec("UPDATE pair SET v = 'v2'");
  auto r = b.applier->Apply(0, 2, a.CapturedBatch(1));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->applied, 1);
  EXPECT_EQ(r->dead_lettered, 0);
  EXPECT_EQ(b.Dump("pair"), a.Dump("pair"));
}

TEST(DeadLetterRetryTest, UnknownIdsAreNotFoundAndUndecodableEntriesStay) {
  Node b("ids-b");
  ASSERT_TRUE(b.applier->RecordUndecodable(0, 1, "garbage", "not a ChangeBatch").ok());
  std::vector<int64_t> ids = DeadLetterIds(b);
  ASSERT_EQ(ids.size(), 1u);
  auto missing = b.applier->RetryDeadLetters({ids[0], ids[0] + 1});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr(absl::StrCat(ids[0] + 1)));
  auto all = b.applier->RetryDeadLetters({});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->applied, 0);
  EXPECT_EQ(all->still_failing, 1);
  EXPECT_EQ(*b.applier->DeadLetterCount(), 1);
}

// The changes of `batch` to the `pair` row ('k', `key`) only.
change::v1::ChangeBatch OnlyKey(change::v1::ChangeBatch batch, int64_t key) {
  for (change::v1::TableChanges& t : *batch.mutable_tables()) {
    auto* changes = t.mutable_changes();
    for (int i = changes->size() - 1; i >= 0; --i) {
      const change::v1::Change& c = changes->Get(i);
      const change::v1::Value& b =
          c.op() == change::v1::OP_DELETE ? c.old_key(1) : c.row(1);
      if (b.integer() != key) changes->DeleteSubrange(i, 1);
    }
  }
  return batch;
}

TEST(DeadLetterRetryTest, AShardSnapshotSupersedesThatShardsDeadLettersUpToItsIndex) {
  // Given two rows of `pair` in different shards, both dead-lettered on B (no table there)
  Node a("supersede-a", 2), b("supersede-b", 2);
  int64_t in_zero = 0, in_one = 0;
  for (int64_t k = 1; in_zero == 0 || in_one == 0; ++k) {
    int64_t& first_of_shard =
        a.router.ShardOf("pair", {Value::Text("k"), Value::Integer(k)}) == 0 ? in_zero : in_one;
    if (first_of_shard == 0) first_of_shard = k;
  }
  a.Exec(absl::StrCat("INSERT INTO pair VALUES ('k', ", in_zero, ", 'zero'), ('k', ", in_one, ", 'one')"));
  change::v1::ChangeBatch all = a.CapturedBatch(1);
  b.Exec("DROP TABLE pair");
  ASSERT_TRUE(b.applier->Apply(0, 10, OnlyKey(all, in_zero)).ok());
  ASSERT_TRUE(b.applier->Apply(1, 10, OnlyKey(all, in_one)).ok());
  ASSERT_EQ(*b.applier->DeadLetterCount(), 2);
  b.Exec("CREATE TABLE pair (a TEXT, b INTEGER, v, PRIMARY KEY (a, b)) WITHOUT ROWID");

  // When B installs A's snapshot of shard 0 at index 10
  ASSERT_TRUE(a.applier->Apply(0, 10, OnlyKey(all, in_zero)).ok());
  auto snapshot = CreateSnapshot(*a.applier, 0);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  ASSERT_TRUE(InstallSnapshot(*b.applier, *snapshot, 10).ok());

  // Then shard 0's dead letter is gone (the snapshot holds the row), shard 1's stays
  auto left = b.db->QueryRows("SELECT shard FROM \"__marmot__dead_letters\"");
  ASSERT_TRUE(left.ok());
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0][0], Value::Integer(1));
  EXPECT_EQ(*b.db->QueryValue(absl::StrCat("SELECT v FROM pair WHERE b = ", in_zero)), Value::Text("zero"));
  // And the shard-0 row is free again while the shard-1 row still holds its changes back
  a.Exec("UPDATE pair SET v = v || '2'");
  change::v1::ChangeBatch updates = a.CapturedBatch(1);
  auto r0 = b.applier->Apply(0, 11, OnlyKey(updates, in_zero));
  ASSERT_TRUE(r0.ok()) << r0.status();
  EXPECT_EQ(r0->applied, 1);
  auto r1 = b.applier->Apply(1, 11, OnlyKey(updates, in_one));
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_EQ(r1->dead_lettered, 1);
  auto retried = b.applier->RetryDeadLetters({});
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->applied, 2);
  EXPECT_EQ(b.Dump("pair"), a.Dump("pair"));
}

TEST(DeadLetterRetryTest, SnapshotRowsOfAMissingTableHoldBackItsShardAndInstallOnRetry) {
  // Given a snapshot of shard 0 holding rows of `pair`, installed on B that has no such table
  Node a("rows-a"), b("rows-b");
  a.Exec("INSERT INTO pair VALUES ('k', 1, 'v1'), ('k', 2, 'w1')");
  ASSERT_TRUE(a.applier->Apply(0, 5, change::v1::ChangeBatch()).ok());
  auto snapshot = CreateSnapshot(*a.applier, 0);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  b.Exec("DROP TABLE pair");
  ASSERT_TRUE(InstallSnapshot(*b.applier, *snapshot).ok());
  EXPECT_THAT(DeadLetters(b), HasSubstr("snapshot rows not installed"));
  // When the table is created and a later change of one of those rows arrives: it queues
  b.Exec("CREATE TABLE pair (a TEXT, b INTEGER, v, PRIMARY KEY (a, b)) WITHOUT ROWID");
  a.Exec("UPDATE pair SET v = 'v2' WHERE b = 1");
  change::v1::ChangeBatch later = OnlyKey(a.CapturedBatch(1), 1);
  later.mutable_tables(0)->mutable_changes()->DeleteSubrange(0, 1);  // Only the update.
  auto r = b.applier->Apply(0, 6, later);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->dead_lettered, 1);
  EXPECT_THAT(DeadLetters(b), HasSubstr("(snapshot rows of the table)"));
  // Then a retry installs the rows, then applies the change
  auto retried = b.applier->RetryDeadLetters({});
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->applied, 2);
  EXPECT_EQ(b.Dump("pair"), a.Dump("pair"));
}

// Dead letters carried by a snapshot. A snapshot made on a node with dead letters holds rows
// that lack those changes, while its dedupe state counts them as applied; it carries the dead
// letters, and the node installing it applies them after the rows or keeps them.

// The one value `sql` reads on `n` (as Value::DebugString), or why there is none.
std::string ValueOf(Node& n, const std::string& sql) {
  auto v = n.db->QueryValue(sql);
  return v.ok() ? v->DebugString() : std::string(v.status().message());
}

constexpr char kCheckedOrder[] =
    "DROP TABLE \"order\"; CREATE TABLE \"order\" (id INTEGER PRIMARY KEY, name TEXT UNIQUE, "
    "price REAL CHECK (price < 100), img BLOB);";

// "raft_index origin tbl change_id" of each dead letter of `n`, oldest first.
std::string DeadLetterOrigins(Node& n) {
  auto rows = n.db->QueryRows(
      "SELECT raft_index, origin, tbl, change_id FROM \"__marmot__dead_letters\" ORDER BY id");
  CHECK(rows.ok()) << rows.status();
  std::string out;
  for (const auto& r : *rows) {
    for (const Value& v : r) absl::StrAppend(&out, v.DebugString(), " ");
    out += "\n";
  }
  return out;
}

// Two entries of writes on `src` (origin 1), applied at indexes 1 and 2 by each of `nodes`:
// row 1 of `order` gets a price of 500, then 5; `pair` gets two rows, then an update of one.
// Each entry holds every change captured so far (the earlier ones are duplicates).
std::vector<change::v1::ChangeBatch> WriteTwoEntries(Node& src) {
  src.Exec("INSERT INTO \"order\" (id, name, price) VALUES (1, 'r1', 500), (2, 'r2', 1);"
           "INSERT INTO pair VALUES ('k', 1, 'v1'), ('k', 2, 'w1');");
  change::v1::ChangeBatch first = src.CapturedBatch(1);
  src.Exec("UPDATE \"order\" SET price = 5 WHERE id = 1; UPDATE pair SET v = 'v2' WHERE b = 1");
  return {first, src.CapturedBatch(1)};
}

void ApplyAll(Node& n, const std::vector<change::v1::ChangeBatch>& entries) {
  for (size_t i = 0; i < entries.size(); ++i) {
    auto r = n.applier->Apply(0, i + 1, entries[i]);
    ASSERT_TRUE(r.ok()) << r.status();
  }
}

TEST(SnapshotDeadLetterTest, ANodeThatCanApplyThemEndsAsTheNodesThatAppliedEveryChange) {
  // Given node A that lacks `pair` and rejects prices of 100 or more: it dead-letters the
  // changes of `pair` and of row 1 of `order` (the second one queued behind the first)
  Node src("carry-src"), a("carry-a"), b("carry-b"), c("carry-c");
  a.Exec("DROP TABLE pair;");
  a.Exec(kCheckedOrder);
  const std::vector<change::v1::ChangeBatch> entries = WriteTwoEntries(src);
  ApplyAll(a, entries);
  ApplyAll(c, entries);  // C applies every change directly.
  ASSERT_EQ(*a.applier->DeadLetterCount(), 5);
  auto snapshot = CreateSnapshot(*a.applier, 0);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ(snapshot->dead_letters_size(), 5);

  // When node B, with the full schema and rows of its own in the shard, installs A's snapshot
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (7, 'only on b'); INSERT INTO pair VALUES ('b', 1, 'b')");
  const int64_t captured_on_b = b.LogRows("pair");
  auto installed = InstallSnapshot(*b.applier, *snapshot);
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_EQ(installed->carried_applied, 5);
  EXPECT_EQ(installed->carried_kept, 0);

  // Then B's rows are C's: the snapshot's rows with the carried changes applied after them
  EXPECT_EQ(b.Dump("order"), c.Dump("order"));
  EXPECT_EQ(b.Dump("pair"), c.Dump("pair"));
  EXPECT_EQ(DeadLetters(b), "");
  EXPECT_EQ(b.LogRows("pair"), captured_on_b);  // Applied with triggers off: not captured.
  EXPECT_EQ(*b.applier->AppliedIndex(0), 2u);
  // And A still lacks them (the snapshot did not change its maker)
  EXPECT_EQ(ValueOf(a, "SELECT count(*) FROM \"order\" WHERE id = 1"), Value::Integer(0).DebugString());
  // And a re-proposal of those changes is a duplicate on B (the snapshot's dedupe state counts
  // them): B's newer local write of the row stays
  b.Exec("UPDATE pair SET v = 'b-wins' WHERE b = 1");
  auto again = b.applier->Apply(0, 3, entries[1]);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->applied, 0);
  EXPECT_EQ(again->duplicates, 6);
  EXPECT_EQ(ValueOf(b, "SELECT v FROM pair WHERE b = 1"), Value::Text("b-wins").DebugString());
}

TEST(SnapshotDeadLetterTest, ANodeThatCannotApplyThemKeepsThemAndRetriesThemLater) {
  // Given A's snapshot carrying dead letters of `pair`, which A lacks
  Node src("keep-src"), a("keep-a"), b("keep-b"), c("keep-c");
  a.Exec("DROP TABLE pair;");
  const std::vector<change::v1::ChangeBatch> entries = WriteTwoEntries(src);
  ApplyAll(a, entries);
  ApplyAll(c, entries);
  auto snapshot = CreateSnapshot(*a.applier, 0);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();

  // When B, which lacks `pair` too and dead-lettered the first entry's changes of it itself,
  // installs it
  b.Exec("DROP TABLE pair;");
  ApplyAll(b, {entries[0]});
  ASSERT_EQ(*b.applier->DeadLetterCount(), 2);
  auto installed = InstallSnapshot(*b.applier, *snapshot);
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_EQ(installed->carried_applied, 0);
  EXPECT_EQ(installed->carried_kept, 3);

  // Then B holds the carried ones as its own dead letters, as A recorded them (index, origin,
  // table, change id), with the error they met on B; its own were superseded, not doubled
  EXPECT_EQ(*b.applier->DeadLetterCount(), 3);
  EXPECT_EQ(DeadLetterOrigins(b), DeadLetterOrigins(a));
  EXPECT_THAT(DeadLetters(b), HasSubstr("does not exist on this node"));
  EXPECT_EQ(b.Dump("order"), c.Dump("order"));
  // And once the table exists, a retry applies them in order: B's rows are C's
  b.Exec("CREATE TABLE pair (a TEXT, b INTEGER, v, PRIMARY KEY (a, b)) WITHOUT ROWID");
  auto retried = b.applier->RetryDeadLetters({});
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->applied, 3);
  EXPECT_EQ(retried->still_failing, 0);
  EXPECT_EQ(b.Dump("pair"), c.Dump("pair"));
}

TEST(SnapshotDeadLetterTest, ARowsLaterCarriedChangesQueueBehindOneThatFailsHere) {
  // Given A's snapshot carrying both changes of row 1 of `order` (A lacks the table)
  Node src("queue-src"), a("queue-a"), b("queue-b"), c("queue-c");
  a.Exec("DROP TABLE \"order\";");
  const std::vector<change::v1::ChangeBatch> entries = WriteTwoEntries(src);
  ApplyAll(a, entries);
  ApplyAll(c, entries);
  auto snapshot = CreateSnapshot(*a.applier, 0);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();

  // When B, which rejects the first (price 500) but could apply the second (price 5), installs it
  b.Exec(kCheckedOrder);
  auto installed = InstallSnapshot(*b.applier, *snapshot);
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_EQ(installed->carried_applied, 1);
  EXPECT_EQ(installed->carried_kept, 2);

  // Then the first is a dead letter of B, and the second is queued behind it, not applied;
  // row 2 applied
  std::vector<int64_t> ids = DeadLetterIds(b);
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_THAT(DeadLetters(b), HasSubstr("CHECK constraint failed"));
  EXPECT_THAT(DeadLetters(b),
              HasSubstr(absl::StrCat("queued behind dead letter ", ids[0], " of the same row")));
  EXPECT_EQ(ValueOf(b, "SELECT count(*) FROM \"order\" WHERE id = 1"), Value::Integer(0).DebugString());
  EXPECT_EQ(ValueOf(b, "SELECT price FROM \"order\" WHERE id = 2"), Value::Real(1).DebugString());
  // And once the CHECK is gone, a retry applies both in order
  b.Exec("CREATE TABLE o2 (id INTEGER PRIMARY KEY, name TEXT UNIQUE, price REAL, img BLOB);"
         "INSERT INTO o2 SELECT * FROM \"order\"; DROP TABLE \"order\"; ALTER TABLE o2 RENAME TO \"order\";");
  auto retried = b.applier->RetryDeadLetters({});
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->applied, 2);
  EXPECT_EQ(b.Dump("order"), c.Dump("order"));
}

TEST(SnapshotDeadLetterTest, SnapshotRowsThatAreDeadLettersTravelOnToTheNextInstall) {
  // Given A that lacks `pair` and installed C's snapshot of the shard: the rows of `pair` are a
  // snapshot-rows dead letter on A, and a later change of `pair` queues behind it
  Node src("rows-src"), a("rows-carry-a"), b("rows-carry-b"), c("rows-carry-c");
  a.Exec("DROP TABLE pair;");
  const std::vector<change::v1::ChangeBatch> entries = WriteTwoEntries(src);
  auto first = c.applier->Apply(0, 1, entries[0]);
  ASSERT_TRUE(first.ok()) << first.status();
  auto from_c = CreateSnapshot(*c.applier, 0);
  ASSERT_TRUE(from_c.ok()) << from_c.status();
  ASSERT_TRUE(InstallSnapshot(*a.applier, *from_c).ok());
  ASSERT_TRUE(a.applier->Apply(0, 2, entries[1]).ok());
  ASSERT_TRUE(c.applier->Apply(0, 2, entries[1]).ok());
  EXPECT_THAT(DeadLetters(a), HasSubstr("snapshot rows not installed"));
  EXPECT_THAT(DeadLetters(a), HasSubstr("(snapshot rows of the table)"));

  // When B installs A's snapshot
  auto from_a = CreateSnapshot(*a.applier, 0);
  ASSERT_TRUE(from_a.ok()) << from_a.status();
  ASSERT_TRUE(InstallSnapshot(*b.applier, *from_a).ok());

  // Then B has the rows of `pair` from the carried snapshot rows, and the change after them
  EXPECT_EQ(DeadLetters(b), "");
  EXPECT_EQ(b.Dump("pair"), c.Dump("pair"));
  EXPECT_EQ(b.Dump("order"), c.Dump("order"));
}

TEST(SnapshotDeadLetterTest, ACarriedOwnChangeIsSkippedWhenANewerOneOfItsRowIsStillLocal) {
  // Given node B (id 2) that wrote row ('k', 1) twice: the first change reached A, which lacks
  // `pair`, and the second is still in B's change log
  Node a("own-carry-a"), b("own-carry-b");
  b.applier->set_local_node(2);
  a.Exec("DROP TABLE pair;");
  b.Exec("INSERT INTO pair VALUES ('k', 1, 'v1'), ('k', 2, 'w1')");
  change::v1::ChangeBatch older = b.CapturedBatch(2);
  b.Exec("UPDATE pair SET v = 'v2' WHERE b = 1");
  change::v1::ChangeBatch newer = b.CapturedBatch(2);
  ASSERT_TRUE(a.applier->Apply(0, 1, older).ok());
  auto snapshot = CreateSnapshot(*a.applier, 0);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  ASSERT_EQ(snapshot->dead_letters_size(), 2);

  // When B installs A's snapshot
  auto installed = InstallSnapshot(*b.applier, *snapshot);
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_EQ(installed->carried_applied, 2);

  // Then the older change of ('k', 1) is skipped (its newer change comes later in the shard's
  // order; B does not show 'v1' meanwhile) and the row keeps B's newer write (the snapshot does
  // not hold that change), the one of ('k', 2) applies, nothing is kept
  EXPECT_EQ(DeadLetters(b), "");
  EXPECT_EQ(ValueOf(b, "SELECT v FROM pair WHERE b = 1"), Value::Text("v2").DebugString());
  EXPECT_EQ(ValueOf(b, "SELECT v FROM pair WHERE b = 2"), Value::Text("w1").DebugString());
  // And the newer change then applies as usual
  auto r = b.applier->Apply(0, 2, newer);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->duplicates, 2);
  EXPECT_EQ(ValueOf(b, "SELECT v FROM pair WHERE b = 1"), Value::Text("v2").DebugString());
}

TEST(SnapshotDeadLetterTest, AnUndecodableEntryTravelsAsItCame) {
  Node a("undecodable-a"), b("undecodable-b");
  ASSERT_TRUE(a.applier->RecordUndecodable(0, 4, "garbage", "not a ChangeBatch").ok());
  auto snapshot = CreateSnapshot(*a.applier, 0);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  ASSERT_TRUE(InstallSnapshot(*b.applier, *snapshot).ok());
  EXPECT_EQ(DeadLetterOrigins(b), "4 NULL NULL NULL \n");
  EXPECT_THAT(DeadLetters(b), HasSubstr("not a ChangeBatch"));
  EXPECT_EQ(ValueOf(b, "SELECT change FROM \"__marmot__dead_letters\""),
            Value::Blob("garbage").DebugString());
}

TEST(SnapshotDeadLetterTest, ASnapshotWithoutDeadLettersInstallsAsBefore) {
  // Given a snapshot as versions before carried dead letters made it: A's rows, no dead letters
  Node src("old-src"), a("old-a"), b("old-b");
  a.Exec("DROP TABLE pair;");
  ApplyAll(a, WriteTwoEntries(src));
  auto snapshot = CreateSnapshot(*a.applier, 0);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  change::v1::ShardSnapshot old_format;
  for (const auto& t : snapshot->tables()) *old_format.add_tables() = t;
  for (const auto& d : snapshot->applied()) *old_format.add_applied() = d;
  old_format.set_shard(snapshot->shard());
  old_format.set_applied_index(snapshot->applied_index());
  change::v1::ShardSnapshot parsed;
  ASSERT_TRUE(parsed.ParseFromString(old_format.SerializeAsString()));

  // When B installs it
  b.Exec("INSERT INTO pair VALUES ('b', 1, 'b')");
  ASSERT_TRUE(InstallSnapshot(*b.applier, parsed).ok());

  // Then B's shard holds exactly A's rows (without the changes A could not apply), as before
  EXPECT_EQ(b.Dump("order"), a.Dump("order"));
  EXPECT_EQ(b.Dump("pair"), "");
  EXPECT_EQ(DeadLetters(b), "");
  EXPECT_EQ(*b.applier->AppliedIndex(0), 2u);
}

}  // namespace
}  // namespace marmot::replicator
