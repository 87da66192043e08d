// ChangeApplier applies committed change batches of one node to another node's database,
// without Raft in between: what is written, skipped, deferred or dead-lettered, and why.
// (Snapshots: shard_snapshotter_test.cc; dead letters retried or carried by a snapshot:
// dead_letter_retrier_test.cc; the rules alone: apply_decider_test.cc.)
#include "replicator/change_applier.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "replicator/schema_changes.h"
#include "replicator/table_renames.h"
#include "replicator/table_writer.h"
#include "replicator/testing/applier_node.h"
#include "sqlite/row_digest.h"

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
using testing::QueryText;

TEST(ChangeApplierTest, ReplaysAnotherNodesChangesExactly) {
  // Given writes of every kind on node A
  Node a("apply-a"), b("apply-b");
  a.Exec(
      "INSERT INTO \"order\" VALUES (1, 'one', 2.0, x'0001'), (2, 'two', 3.5, NULL);"
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

// Each version knows the row it leaves on the nodes that write it (row_versions.h, `digest`):
// the row's values by column, none for a delete or the old key of a rekey. What the copy of a
// table made again compares its rows with (sqlite/change_log.h, captured_before).
TEST(ChangeApplierTest, EachVersionKnowsTheRowItLeaves) {
  Node a("digest-a"), b("digest-b");
  a.Exec(
      "INSERT INTO \"order\" VALUES (1, 'one', 2.0, x'0001'), (2, 'two', 3.5, NULL),"
      " (3, 'three', NULL, NULL);"
      "UPDATE \"order\" SET price = 4.0 WHERE id = 3;"
      "UPDATE \"order\" SET id = 20 WHERE id = 2;"
      "DELETE FROM \"order\" WHERE id = 1;");
  ASSERT_TRUE(b.applier->Apply(0, 5, a.CapturedBatch(1)).ok());
  ASSERT_TRUE(sqlite::RegisterRowDigest(*b.db).ok());
  EXPECT_EQ(QueryText(b,
                      "SELECT o.id FROM \"order\" AS o JOIN \"__marmot__versions\" AS v ON "
                      "v.tbl = 'order' AND v.key = o.id WHERE v.digest = marmot_row_digest("
                      "'id', o.id, 'name', o.name, 'price', o.price, 'img', o.img) ORDER BY 1"),
            "3 \n20 \n");
  EXPECT_EQ(QueryText(b,
                      "SELECT key, digest FROM \"__marmot__versions\" WHERE tbl = 'order' AND "
                      "key IN (1, 2) ORDER BY key"),
            "1 0 \n2 0 \n");
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

  // On another node that wrote the row too, without seeing node 1's: node 1's change comes first
  // in the shard and wins, but is held while that node's own changes of the row wait in its log
  // (the application's row stays as it wrote it); they lose when they apply (kept as
  // conflicts), and the row then takes node 1's version.
  Node b("own-b");
  b.applier->set_local_node(2);
  b.Exec(
      "INSERT INTO \"order\" (id, name) VALUES (1, 'local on b');"
      "UPDATE \"order\" SET name = 'newer on b' WHERE id = 1;");
  change::v1::ChangeBatch b_own = b.CapturedBatch(2);
  auto r3 = b.applier->Apply(0, 1, older);  // origin 1, not b's own
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(r3->held, 1);
  EXPECT_EQ(*b.db->QueryValue("SELECT name FROM \"order\" WHERE id = 1"),
            Value::Text("newer on b"));
  auto lost = b.applier->Apply(0, 2, b_own);
  ASSERT_TRUE(lost.ok()) << lost.status();
  EXPECT_EQ(lost->conflicts, 2);
  EXPECT_EQ(b.Conflicts(), 2);
  EXPECT_EQ(*b.db->QueryValue("SELECT name FROM \"order\" WHERE id = 1"), Value::Text("first"));
  // Node 1's update was made after its insert: it applies.
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
  a.Exec(
      "INSERT INTO \"order\" (id, name) VALUES (1, 'a');"
      "INSERT INTO \"order\" (id, name) VALUES (2, 'x');");
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
  // (Neither names a version, as from older nodes: the later wins, no conflict.)
  b.Exec("INSERT INTO \"order\" (id, name, img) VALUES (1, 'mine', 2)");
  ASSERT_TRUE(a.applier->Apply(0, 2, testing::WithoutVersions(b.CapturedBatch(2))).ok());
  EXPECT_EQ(*a.db->QueryValue("SELECT typeof(img) FROM \"order\" WHERE id = 1"),
            Value::Text("integer"));
  // (The same values under a newer change id, so that it is not taken for a re-proposal.)
  change::v1::ChangeBatch again = testing::WithoutVersions(mine);
  const int64_t newer_id = mine.tables(0).changes(0).change_id() + 100;
  again.mutable_tables(0)->mutable_changes(0)->set_change_id(newer_id);
  auto r3 = a.applier->Apply(0, 4, again);
  ASSERT_TRUE(r3.ok()) << r3.status();
  EXPECT_EQ(r3->applied, 1);
  EXPECT_EQ(r3->unchanged, 0);
  EXPECT_EQ(*a.db->QueryValue("SELECT typeof(img) FROM \"order\" WHERE id = 1"),
            Value::Text("real"));
}

// Makes node a read its pair log once, through a change of node 3 to another row: rows
// of a log's first read count as rewritten (LocalChangeIndex), later ones do not.
void FirstReadOfPair(Node& a, uint64_t index) {
  Node other("first-read-other");
  other.Exec("INSERT INTO pair VALUES ('other', 0, 'theirs')");
  ASSERT_TRUE(a.applier->Apply(0, index, other.CapturedBatch(3)).ok());
}

// Node a writes row ('k', 1) as 'mine', node b the same row as 'theirs'; each change is captured
// (origins 1 and 2), none applied. They name no version (WithoutVersions): the later in the
// shard wins, and the own change may have to write over the other.
struct SameRowWrites {
  change::v1::ChangeBatch mine, theirs;
};
SameRowWrites WriteTheSameRowOnBoth(Node& a, Node& b) {
  SameRowWrites w;
  a.Exec("INSERT INTO pair VALUES ('k', 1, 'mine')");
  w.mine = testing::WithoutVersions(a.CapturedBatch(1));
  b.Exec("INSERT INTO pair VALUES ('k', 1, 'theirs')");
  w.theirs = testing::WithoutVersions(b.CapturedBatch(2));
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
  // which no change of row 1 says. Node 1's own change of row 1, ordered after, brings it back,
  // and replaces row 9 in turn: both are kept as conflicts when they go.
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
  EXPECT_EQ(r->conflicts, 1);
  EXPECT_EQ(*a.db->QueryValue("SELECT group_concat(id) FROM \"order\" WHERE name = 'same'"),
            Value::Text("1"));
  EXPECT_EQ(*a.db->QueryValue("SELECT group_concat(key || ' ' || origin || ' ' || winner_origin) "
                              "FROM (SELECT * FROM \"__marmot__conflicts\" ORDER BY id)"),
            Value::Text("1 0 2,9 2 1"));
  // Row 1 had no version: named by origin 0 and a negative id made of its key and the entry
  // (the same on every node), not by this node's own count of conflicts.
  EXPECT_EQ(*a.db->QueryValue("SELECT change_id < 0 FROM \"__marmot__conflicts\" WHERE key = '1'"),
            Value::Integer(1));
}

TEST(ChangeApplierTest, AnotherNodesChangeOfARowWithAPendingLocalChangeIsHeldOrSkipped) {
  // Node 1 wrote rows 1 ('same') and ('k', 1); node 2's changes of ('k', 1), and one that would
  // replace row 1 through the UNIQUE name, were ordered before node 1's changes and arrive
  // first. Here nothing flickers: node 2's ('k', 1) is held until node 1's, made without seeing
  // it, loses; node 2's row 9 is kept as a conflict at once, since node 1's row 1 comes later
  // and replaces it on every node (where it is kept as a conflict then).
  Node a("pending-a"), b("pending-b");
  a.applier->set_local_node(1);
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (50, 'other')");
  ASSERT_TRUE(a.applier->Apply(0, 1, b.CapturedBatch(2)).ok());
  b.Exec("DELETE FROM \"order\"");
  ASSERT_TRUE(a.applier->Apply(0, 2, b.CapturedBatch(2)).ok());
  a.Exec(
      "INSERT INTO \"order\" (id, name) VALUES (1, 'same');"
      "INSERT INTO pair VALUES ('k', 1, 'mine')");
  change::v1::ChangeBatch mine = a.CapturedBatch(1);
  b.Exec(
      "INSERT INTO \"order\" (id, name) VALUES (9, 'same');"
      "INSERT INTO pair VALUES ('k', 1, 'theirs'), ('k', 2, 'other row')");
  auto r = a.applier->Apply(0, 3, b.CapturedBatch(2));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->superseded, 0);
  EXPECT_EQ(r->conflicts, 1);
  EXPECT_EQ(r->held, 1);
  EXPECT_EQ(r->applied, 2);  // Held ('k', 1), and ('k', 2): no local change.
  EXPECT_EQ(*a.db->QueryValue("SELECT group_concat(id || name) FROM \"order\""),
            Value::Text("1same"));
  EXPECT_EQ(*a.db->QueryValue("SELECT group_concat(tbl || ' ' || key || ' ' || origin || ' ' || "
                              "winner_origin) FROM \"__marmot__conflicts\""),
            Value::Text("order 9 2 1"));
  EXPECT_EQ(*a.db->QueryValue("SELECT group_concat(v) FROM pair ORDER BY b"),
            Value::Text("mine,other row"));
  // Node 1's own changes apply: row 1 is in place; ('k', 1) loses and takes node 2's version.
  auto own = a.applier->Apply(0, 4, mine);
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ(own->unchanged, 1);
  EXPECT_EQ(own->conflicts, 1);
  EXPECT_EQ(*a.db->QueryValue("SELECT group_concat(v) FROM pair ORDER BY b"),
            Value::Text("theirs,other row"));
  // A later change of node 2 (made over its own version) applies as usual.
  b.Exec("UPDATE pair SET v = 'theirs later' WHERE b = 1");
  change::v1::ChangeBatch later = b.CapturedBatch(2);
  auto r2 = a.applier->Apply(0, 5, later);
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ(*a.db->QueryValue("SELECT v FROM pair WHERE b = 1"), Value::Text("theirs later"));
}

TEST(ChangeApplierTest, ARowAnotherRowsUniqueValueReplacedIsKeptAsAConflictOnEveryNode) {
  // Regression (hunt): node 2 gave 'b@x' to a new row 2 while node 1, not knowing it, gave it to
  // row 1. In the shard's order node 1's change comes second and its upsert deleted row 2 on
  // every node, kept nowhere. Now row 2 is kept as a conflict node 1's change won, with the same
  // values, origin and winner on every node: node 3 (nothing pending) and node 2 see the delete
  // happen; node 1, whose own change holds 'b@x' here already, keeps node 2's change at once.
  Node a("unique-a"), b("unique-b"), c("unique-c");
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  c.applier->set_local_node(3);
  c.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'a@x')");
  const change::v1::ChangeBatch start = c.CapturedBatch(3);
  for (Node* n : {&a, &b, &c}) ASSERT_TRUE(n->applier->Apply(0, 1, start).ok());
  b.Exec("INSERT INTO \"order\" (id, name, price) VALUES (2, 'b@x', 2.5)");
  const change::v1::ChangeBatch inserted = b.CapturedBatch(2);
  a.Exec("UPDATE \"order\" SET name = 'b@x' WHERE id = 1");
  const change::v1::ChangeBatch updated = a.CapturedBatch(1);
  for (Node* n : {&a, &b, &c}) {
    auto first = n->applier->Apply(0, 2, inserted);
    ASSERT_TRUE(first.ok()) << first.status();
    auto second = n->applier->Apply(0, 3, updated);
    ASSERT_TRUE(second.ok()) << second.status();
    EXPECT_EQ(first->conflicts + second->conflicts, 1) << n->path;
  }
  for (Node* n : {&a, &b, &c}) {
    SCOPED_TRACE(n->path);
    EXPECT_EQ(*n->db->QueryValue("SELECT group_concat(id || ' ' || name) FROM \"order\""),
              Value::Text("1 b@x"));
    EXPECT_EQ(*n->db->QueryValue("SELECT group_concat(key || ' ' || origin || ' ' || change_id || "
                                 "' ' || op || ' ' || winner_origin || ' ' || winner_change_id) "
                                 "FROM \"__marmot__conflicts\""),
              Value::Text(absl::StrCat("2 2 ", inserted.tables(0).changes(0).change_id(), " I 1 ",
                                       updated.tables(0).changes(0).change_id())));
    // The row's values as node 2 wrote them, storage classes included.
    auto kept = n->db->QueryValue("SELECT change FROM \"__marmot__conflicts\"");
    ASSERT_TRUE(kept.ok());
    change::v1::TableChanges lost;
    ASSERT_TRUE(lost.ParseFromString(kept->bytes()));
    ASSERT_EQ(lost.changes_size(), 1);
    EXPECT_EQ(lost.columns_size(), lost.changes(0).row_size());
    EXPECT_THAT(lost.DebugString(), HasSubstr("b@x"));
    EXPECT_THAT(lost.DebugString(), HasSubstr("2.5"));
    // Row 2's version is node 1's change: a change of row 2 made without seeing its removal is a
    // conflict too.
    EXPECT_EQ(*n->db->QueryValue("SELECT origin FROM \"__marmot__versions\" WHERE key = 2"),
              Value::Integer(1));
  }
}

// Node 1 edits row 2 (V) while node 2 changes row 2 with `node2_sql` (D, pending on node 2, so
// V is held there); stale node 4 gives row 2's UNIQUE value to a new row 5 (W). Shard order: V,
// W, D. Every node must end with rows 1 and 5, and row 2 kept by W twice (V, then D).
void ExpectARowHeldOnAUniqueValueReplacedAsOnEveryNode(const std::string& label,
                                                       const std::string& node2_sql) {
  Node a(label + "-a"), b(label + "-b"), c(label + "-c"), d(label + "-d");
  std::vector<Node*> nodes = {&a, &b, &c, &d};
  for (size_t i = 0; i < nodes.size(); ++i) nodes[i]->applier->set_local_node(i + 1);
  c.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'a@x'), (2, 'b@x')");
  const change::v1::ChangeBatch start = c.CapturedBatch(3);
  for (Node* n : {&a, &b, &c}) ASSERT_TRUE(n->applier->Apply(0, 1, start).ok());
  a.Exec("UPDATE \"order\" SET price = 9.5 WHERE id = 2");
  const change::v1::ChangeBatch edit = a.CapturedBatch(1);
  b.Exec(node2_sql);
  const change::v1::ChangeBatch moved = b.CapturedBatch(2);
  d.Exec("INSERT INTO \"order\" (id, name) VALUES (5, 'b@x')");
  const change::v1::ChangeBatch taken = d.CapturedBatch(4);
  ASSERT_TRUE(d.applier->Apply(0, 1, start).ok());
  for (Node* n : nodes) {
    uint64_t index = 2;
    for (const change::v1::ChangeBatch* batch : {&edit, &taken, &moved}) {
      auto r = n->applier->Apply(0, index++, *batch);
      ASSERT_TRUE(r.ok()) << n->path << ": " << r.status();
    }
  }
  const char kConflicts[] =
      "SELECT group_concat(key || ' ' || origin || ' ' || winner_origin, ', ') FROM (SELECT * "
      "FROM \"__marmot__conflicts\" ORDER BY key, origin)";
  for (Node* n : nodes) {
    SCOPED_TRACE(n->path);
    EXPECT_EQ(*n->db->QueryValue("SELECT group_concat(id || ' ' || name, ', ') FROM \"order\""),
              Value::Text("1 a@x, 5 b@x"));
    EXPECT_EQ(n->Dump("order"), a.Dump("order"));
    EXPECT_EQ(*n->db->QueryValue(kConflicts), Value::Text("2 1 4, 2 2 4"));
  }
}

TEST(ChangeApplierTest, ARowMovedOffAUniqueValueWhileAnotherNodesEditIsHeldEndsAsEverywhere) {
  // Regression (review of issue 20): every node but 2 has row 2 on the value when W comes, and W
  // replaces it (kept). On node 2 row 2 held D's value, W replaced nothing, and when D lost the
  // held V was written late and replaced row 5: nodes ended with different rows.
  ExpectARowHeldOnAUniqueValueReplacedAsOnEveryNode(
      "held-moved", "UPDATE \"order\" SET name = 'c@x' WHERE id = 2");
}

TEST(ChangeApplierTest, ARowDeletedWhileAnotherNodesEditIsHeldEndsAsEverywhere) {
  ExpectARowHeldOnAUniqueValueReplacedAsOnEveryNode("held-deleted",
                                                    "DELETE FROM \"order\" WHERE id = 2");
}

TEST(ChangeApplierTest, AnEditOverARekeyKeptAtOnceTakesItsConflictsPlace) {
  // Regression (review): node 2 moves row 2 to key 7 with the name node 1's pending change gave
  // row 1, then edits row 7. Node 1 keeps the rekey at once (kKeepDisplaced); the edit, made by
  // the same node after the rekey, takes its place. It was kept besides it: two conflicts on
  // node 1 where every other node keeps one (the edit, once node 1's change replaces row 7).
  Node a("rekey-at-once-a"), b("rekey-at-once-b");
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (2, 'b@x')");
  const change::v1::ChangeBatch start = b.CapturedBatch(2);
  for (Node* n : {&a, &b}) ASSERT_TRUE(n->applier->Apply(0, 1, start).ok());
  a.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'z@x')");
  const change::v1::ChangeBatch mine = a.CapturedBatch(1);
  b.Exec("UPDATE \"order\" SET id = 7, name = 'z@x' WHERE id = 2");
  const change::v1::ChangeBatch rekey = b.CapturedBatch(2);
  // Edited before the rekey came back applied on node 2: the edit names no version of row 7.
  b.Exec("UPDATE \"order\" SET price = 9.5 WHERE id = 7");
  const change::v1::ChangeBatch edit = b.CapturedBatch(2);  // Node 2's changes 1 to 3.
  ASSERT_EQ(edit.tables(0).changes_size(), 3);
  ASSERT_TRUE(a.applier->Apply(0, 2, rekey).ok());
  ASSERT_TRUE(a.applier->Apply(0, 3, edit).ok());
  auto own = a.applier->Apply(0, 4, mine);
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ(*a.db->QueryValue("SELECT group_concat(id || ' ' || name) FROM \"order\""),
            Value::Text("1 z@x"));
  EXPECT_EQ(*a.db->QueryValue("SELECT group_concat(key || ' ' || origin || ' ' || change_id) "
                              "FROM \"__marmot__conflicts\""),
            Value::Text(absl::StrCat("7 2 ", edit.tables(0).changes(2).change_id())));
}

TEST(ChangeApplierTest, APendingLocalChangeReadBeforeAColumnExistedLeavesThatColumnToOthers) {
  // Regression (hunt): ALTER TABLE ADD COLUMN on node 1 while both nodes write. Node 2's change
  // of a row was read before node 2 had the column; node 1's change of the row, with the
  // column, came first in the shard. Node 2 skipped node 1's change whole for its own, which
  // carries no value for the column, and kept the column empty where node 1 had node 1's value.
  Node a("uncarried-a"), b("uncarried-b");
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  ShippedColumns b_shipped;
  b.applier->set_shipped_columns(&b_shipped);
  a.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'start')");
  const change::v1::ChangeBatch start = a.CapturedBatch(1);
  ASSERT_TRUE(a.applier->Apply(0, 1, start).ok());
  ASSERT_TRUE(b.applier->Apply(0, 1, start).ok());
  // Node 2 writes the row; its shipper reads the change before node 2 has `upd`.
  b.Exec("UPDATE \"order\" SET price = 2.0 WHERE id = 1");
  const change::v1::ChangeBatch b_change = b.CapturedBatch(2);
  ASSERT_EQ(b_change.tables(0).changes_size(), 1);
  b_shipped.FirstLook("order", 0);
  b_shipped.Read("order", b_change.tables(0).changes(0).change_id(),
                 {b_change.tables(0).columns().begin(), b_change.tables(0).columns().end()});
  // Both nodes gain the column; node 1 writes it in the same row.
  a.Exec("ALTER TABLE \"order\" ADD COLUMN upd TEXT");
  b.Exec("ALTER TABLE \"order\" ADD COLUMN upd TEXT");
  a.Exec("UPDATE \"order\" SET upd = 'from a', name = 'a name' WHERE id = 1");
  const change::v1::ChangeBatch a_change = a.CapturedBatch(1);
  // Shard order: node 1's change (index 2), then node 2's (index 3), on both nodes.
  for (Node* n : {&a, &b}) {
    auto r2 = n->applier->Apply(0, 2, a_change);
    ASSERT_TRUE(r2.ok()) << r2.status();
    EXPECT_EQ(r2->dead_lettered, 0);
    auto r3 = n->applier->Apply(0, 3, b_change);
    ASSERT_TRUE(r3.ok()) << r3.status();
    EXPECT_EQ(r3->dead_lettered, 0);
  }
  // Node 2's change was made without seeing node 1's, which came first: it is kept as a
  // conflict on both, and node 1's version (its `upd` too) stays on both.
  EXPECT_EQ(a.Dump("order"), b.Dump("order"));
  EXPECT_EQ(*b.db->QueryValue("SELECT name || ' ' || quote(price) || ' ' || upd FROM \"order\""),
            Value::Text("a name NULL from a"));
  EXPECT_EQ(a.Conflicts(), 1);
  EXPECT_EQ(b.Conflicts(), 1);
}

TEST(ChangeApplierTest, AWriteOfARowWithAPendingLocalChangeIsHeldUntilThatLoses) {
  // Nodes 1 and 2 insert the same key without seeing each other's; node 2's comes first in the
  // shard. Node 1 holds it while its own insert waits in its log: its application keeps reading
  // what it wrote until that insert comes back and loses.
  Node a("held-a"), b("held-b");
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  a.Exec("INSERT INTO pair VALUES ('k', 1, 'mine')");
  const change::v1::ChangeBatch mine = a.CapturedBatch(1);
  b.Exec("INSERT INTO pair VALUES ('k', 1, 'theirs')");
  const change::v1::ChangeBatch theirs = b.CapturedBatch(2);
  for (Node* n : {&a, &b}) {
    auto first = n->applier->Apply(0, 1, theirs);
    ASSERT_TRUE(first.ok()) << first.status();
    EXPECT_EQ(first->held, n == &a ? 1 : 0);
  }
  EXPECT_EQ(*a.db->QueryValue("SELECT v FROM pair WHERE a = 'k'"), Value::Text("mine"));
  for (Node* n : {&a, &b}) {
    auto second = n->applier->Apply(0, 2, mine);
    ASSERT_TRUE(second.ok()) << second.status();
    EXPECT_EQ(second->conflicts, 1);
    EXPECT_EQ(*n->db->QueryValue("SELECT v FROM pair WHERE a = 'k'"), Value::Text("theirs"));
    // The loser is kept whole, with the version it lost to.
    EXPECT_EQ(*n->db->QueryValue("SELECT origin || ' ' || op || ' ' || winner_origin || ' ' || "
                                 "key FROM \"__marmot__conflicts\""),
              Value::Text("1 I 2 'k',1"));
  }
  EXPECT_EQ(a.Dump("pair"), b.Dump("pair"));

  // Node 1 then edits the row it now reads (node 2's): made after seeing it, it applies, and
  // node 2's next edit, made after seeing that, applies too: a chain is never a conflict.
  a.Exec("UPDATE pair SET v = 'edited on 1' WHERE a = 'k'");
  change::v1::ChangeBatch edit = a.CapturedBatch(1);
  edit.mutable_tables(0)->mutable_changes()->DeleteSubrange(0, 1);  // the insert applied
  for (Node* n : {&a, &b}) ASSERT_TRUE(n->applier->Apply(0, 3, edit).ok());
  b.Exec("UPDATE pair SET v = 'edited on 2' WHERE a = 'k'");
  change::v1::ChangeBatch edit2 = b.CapturedBatch(2);
  edit2.mutable_tables(0)->mutable_changes()->DeleteSubrange(0, 1);
  for (Node* n : {&a, &b}) {
    auto r = n->applier->Apply(0, 4, edit2);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->conflicts, 0);
    EXPECT_EQ(*n->db->QueryValue("SELECT v FROM pair WHERE a = 'k'"), Value::Text("edited on 2"));
    EXPECT_EQ(n->Conflicts(), 1);
  }
}

TEST(ChangeApplierTest, RowVersionsHeldVersionsAndConflictsTravelInSnapshots) {
  Node a("travel-a"), b("travel-b"), c("travel-c"), d("travel-d");
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  c.applier->set_local_node(3);
  d.applier->set_local_node(4);
  a.Exec("INSERT INTO pair VALUES ('k', 1, 'mine')");
  const change::v1::ChangeBatch mine = a.CapturedBatch(1);
  b.Exec("INSERT INTO pair VALUES ('k', 1, 'theirs')");
  const change::v1::ChangeBatch theirs = b.CapturedBatch(2);
  ASSERT_TRUE(a.applier->Apply(0, 1, theirs).ok());  // Held on a: its own insert waits.
  ASSERT_TRUE(b.applier->Apply(0, 1, theirs).ok());
  // A snapshot of a, whose row still holds what a's application wrote: c takes node 2's
  // version, which a holds.
  auto from_a = testing::CopySnapshot(*a.applier, *c.applier, 0, 1);
  ASSERT_TRUE(from_a.ok()) << from_a.status();
  EXPECT_EQ(*c.db->QueryValue("SELECT v FROM pair WHERE a = 'k'"), Value::Text("theirs"));
  const std::string versions =
      "SELECT tbl, key, shard, raft_index, origin, change_id FROM \"__marmot__versions\"";
  EXPECT_EQ(c.Dump("__marmot__versions"), b.Dump("__marmot__versions"));
  // a's insert then loses on all three, kept the same everywhere.
  for (Node* n : {&a, &b, &c}) {
    auto r = n->applier->Apply(0, 2, mine);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->conflicts, 1);
    EXPECT_EQ(*n->db->QueryValue("SELECT v FROM pair WHERE a = 'k'"), Value::Text("theirs"));
  }
  const std::string conflicts =
      "SELECT group_concat(tbl || key || origin || change_id || op || hex(change) || "
      "winner_origin || winner_change_id || at_ms) FROM \"__marmot__conflicts\"";
  EXPECT_EQ(*a.db->QueryValue(conflicts), *b.db->QueryValue(conflicts));
  EXPECT_EQ(*c.db->QueryValue(conflicts), *b.db->QueryValue(conflicts));
  EXPECT_EQ(*a.db->QueryValue(versions + " ORDER BY 1, 2"),
            *b.db->QueryValue(versions + " ORDER BY 1, 2"));
  // A node that installs a later snapshot gets the conflict too.
  auto from_b = testing::CopySnapshot(*b.applier, *d.applier, 0, 2);
  ASSERT_TRUE(from_b.ok()) << from_b.status();
  EXPECT_EQ(*d.db->QueryValue(conflicts), *b.db->QueryValue(conflicts));
  EXPECT_EQ(d.Conflicts(), 1);
  EXPECT_EQ(d.Dump("pair"), b.Dump("pair"));
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
  EXPECT_EQ(*a.db->QueryValue(
                "SELECT change_id FROM \"__marmot__applied\" WHERE origin = 1 AND tbl = 'pair'"),
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
  a.Exec(
      "PRAGMA foreign_keys = ON; INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1);");
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
  b.Exec(
      "CREATE TABLE counter (id INTEGER PRIMARY KEY AUTOINCREMENT, v);"
      "INSERT INTO counter (v) VALUES (1); CREATE VIEW v_order AS SELECT * FROM \"order\";");
  change::v1::ChangeBatch forged;
  forged.set_origin_node(7);
  auto add = [&](const std::string& table, std::vector<std::string> columns,
                 std::vector<std::string> key, std::vector<change::v1::Value> row) {
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
  add("__marmot__applied", {"shard", "origin", "tbl", "change_id"}, {"shard", "origin", "tbl"},
      {one, one, text, big});
  add("__MARMOT__applied", {"shard", "origin", "tbl", "change_id"}, {"shard", "origin", "tbl"},
      {one, one, text, big});
  add("sqlite_sequence", {"name", "seq"}, {}, {text, big});
  add("v_order", {"id"}, {"id"}, {one});
  auto result = b.applier->Apply(0, 1, forged);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->applied, 0);
  EXPECT_EQ(result->dead_lettered, 4);
  // (Their ids are recorded as applied, as for every dead letter; nothing else was written.)
  EXPECT_EQ(*b.db->QueryValue("SELECT count(*) FROM \"__marmot__applied\" WHERE change_id <> 1"),
            Value::Integer(0));
  EXPECT_EQ(*b.db->QueryValue("SELECT seq FROM sqlite_sequence WHERE name = 'counter'"),
            Value::Integer(1));
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
  EXPECT_EQ(*b.db->QueryValue("SELECT count(*) FROM \"__marmot__shard_state\" WHERE shard = 1"),
            Value::Integer(0));
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
TEST(ChangeApplierTest, ChangesThatCannotApplyGoToDeadLettersAndTheRestApplies) {
  Node a("dead-a"), b("dead-b");
  a.Exec(
      "INSERT INTO \"order\" (id, name) VALUES (1, 'ok'); INSERT INTO pair VALUES ('k', 1, 'v');");
  change::v1::ChangeBatch batch = a.CapturedBatch(1);
  // B's pair table has another shape; a change also names a table B does not have.
  b.Exec(
      "DROP TABLE pair; CREATE TABLE pair (a TEXT, b INTEGER, w, PRIMARY KEY (a, b)) WITHOUT "
      "ROWID;");
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

TEST(ChangeApplierTest, ChangesOfATableNamedInAnotherCaseElsewhereApplyToItAsNamedHere) {
  // Regression (hunt): one table made at once as `Item` on node A and `item` on node B (one
  // name to SQLite). Every change of A's was a dead letter on B ("table \"Item\" does not
  // exist on this node").
  Node a("case-a"), b("case-b");
  a.Exec("CREATE TABLE Item (id INTEGER PRIMARY KEY, v TEXT);");
  ASSERT_TRUE(sqlite::InstallCapture(*a.db).ok());
  b.Exec("CREATE TABLE item (id INTEGER PRIMARY KEY, v TEXT);");
  a.Exec("INSERT INTO Item VALUES (1, 'from a'); UPDATE Item SET v = 'from a, again';");
  change::v1::ChangeBatch batch = a.CapturedBatch(1);
  ASSERT_EQ(batch.tables_size(), 1);
  ASSERT_EQ(batch.tables(0).table(), "Item");
  auto result = b.applier->Apply(0, 3, batch);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->applied, 2);
  EXPECT_EQ(DeadLetters(b), "");
  EXPECT_EQ(b.Dump("item"), a.Dump("Item"));
  // What B keeps of the rows is kept under its name for the table: its rows' versions, and
  // what A's changes it applied (the same changes again are duplicates).
  EXPECT_EQ(QueryText(b, "SELECT DISTINCT tbl FROM \"__marmot__versions\""), "'item' \n");
  auto again = b.applier->Apply(0, 4, batch);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->duplicates, 2);
  EXPECT_EQ(again->applied, 0);
}

TEST(ChangeApplierTest, ASnapshotOfATableNamedInAnotherCaseInstallsIntoItAsNamedHere) {
  // Node C has A's rows of `Item`; node B, whose table is `item`, takes C's snapshot: the rows,
  // their versions and what of A's changes the shard applied, under B's name.
  Node a("case-snap-a"), b("case-snap-b"), c("case-snap-c");
  for (Node* n : {&a, &c}) n->Exec("CREATE TABLE Item (id INTEGER PRIMARY KEY, v TEXT);");
  ASSERT_TRUE(sqlite::InstallCapture(*a.db).ok());
  b.Exec("CREATE TABLE item (id INTEGER PRIMARY KEY, v TEXT);");
  a.Exec("INSERT INTO Item VALUES (1, 'one'), (2, 'two');");
  const change::v1::ChangeBatch batch = a.CapturedBatch(1);
  ASSERT_TRUE(c.applier->Apply(0, 3, batch).ok());
  auto installed = testing::CopySnapshot(*c.applier, *b.applier, 0, 3);
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_EQ(b.Dump("item"), a.Dump("Item"));
  EXPECT_EQ(DeadLetters(b), "");
  EXPECT_EQ(QueryText(b, "SELECT DISTINCT tbl FROM \"__marmot__versions\""), "'item' \n");
  // A's changes again (re-proposed after a crash): duplicates here.
  auto again = b.applier->Apply(0, 4, batch);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->duplicates, 2);
}

TEST(ChangeApplierTest, AnotherNodesEntriesWaitWhileThisNodesOwnSchemaMoves) {
  // Every pod running the same migration at once (Django's migrate on every node): another
  // node's schema and rows applied under a migration running here changed its tables between
  // its statements (a table it was about to make was there, a column it had dropped came back).
  Node a("own-schema-a"), b("own-schema-b");
  b.applier->set_local_node(2);
  b.applier->set_own_schema_quiet(absl::Milliseconds(300));
  a.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'x');");
  ASSERT_TRUE(b.applier->Apply(0, 1, a.CapturedBatch(1)).ok());
  // Given another node's table made here, its capture with it: not this node's own schema
  // change, nothing waits
  change::v1::ChangeBatch made;
  made.set_origin_node(1);
  change::v1::SchemaChange* create = made.add_schema_changes();
  create->set_kind(change::v1::SchemaChange::CREATE);
  create->set_type("table");
  create->set_name("theirs");
  create->set_sql("CREATE TABLE theirs (id INTEGER PRIMARY KEY)");
  ASSERT_TRUE(b.applier->Apply(0, 2, made).ok());
  a.Exec("UPDATE \"order\" SET name = 'y' WHERE id = 1;");
  ASSERT_TRUE(b.applier->Apply(0, 3, a.CapturedBatch(1)).ok());
  EXPECT_EQ(*b.db->QueryValue("SELECT name FROM \"order\" WHERE id = 1"), Value::Text("y"));
  b.Exec("INSERT INTO pair VALUES ('own', 1, 'v');");
  const change::v1::ChangeBatch own = b.CapturedBatch(2);
  a.Exec("UPDATE \"order\" SET name = 'z' WHERE id = 1;");
  const change::v1::ChangeBatch later = a.CapturedBatch(1);
  // When a local process changes the schema (a migration runs here)
  b.Exec("CREATE TABLE mine (id INTEGER PRIMARY KEY); ALTER TABLE mine ADD COLUMN v TEXT;");
  // Then this node's own entries apply
  ASSERT_TRUE(b.applier->Apply(0, 4, own).ok());
  // And another node's entry waits, changing nothing
  absl::StatusOr<ApplyResult> held = b.applier->Apply(0, 5, later);
  EXPECT_TRUE(IsHeldForOwnSchema(held.status())) << held.status();
  EXPECT_TRUE(IsDatabaseFailure(held.status()));  // Waited out as the writer waits out busy.
  EXPECT_EQ(*b.db->QueryValue("SELECT name FROM \"order\" WHERE id = 1"), Value::Text("y"));
  EXPECT_EQ(*b.applier->AppliedIndex(0), 4u);
  // And once the schema stood still, it applies
  absl::StatusOr<ApplyResult> applied = held;
  for (int i = 0; i < 1000 && !applied.ok(); ++i) {
    absl::SleepFor(absl::Milliseconds(10));
    applied = b.applier->Apply(0, 5, later);
  }
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(*b.db->QueryValue("SELECT name FROM \"order\" WHERE id = 1"), Value::Text("z"));
}

// Found by rename_hunt_test (a node killed right after it renamed a table): at its start, an
// entry of another node that named the old table came before the shipper's first look found
// the rename, and its change went to the dead letters ('table "kv" does not exist'). The
// applier compares the schema with the baseline before the first entry of another node after a
// start, as it does whenever a local process moved the schema: the rename is found then.
TEST(ChangeApplierTest, ATableRenamedHereJustBeforeAStartIsWhatOtherNodesEntriesOfItsOldNameMean) {
  Node a("renamed-before-start-a"), b("renamed-before-start-b");
  auto renames = std::make_shared<TableRenames>();
  b.router.set_renames(renames);
  a.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'x');");
  const change::v1::ChangeBatch theirs = a.CapturedBatch(1);  // Read before any rename.
  // Given node 2 renamed a table and stopped before its marmot looked; at its start its
  // capture moves with the table (CaptureKeeper)
  b.Exec("ALTER TABLE \"order\" RENAME TO orders;");
  ASSERT_TRUE(sqlite::InstallCapture(*b.db).ok());
  b.RestartApplier(2);
  b.applier->set_own_schema_quiet(absl::Milliseconds(300));
  // When another node's entry naming the old name comes first
  absl::StatusOr<ApplyResult> applied = b.applier->Apply(0, 1, theirs);
  // Then it waits for this node's own schema change, as while a migration runs here, and the
  // old name means the renamed table
  EXPECT_TRUE(IsHeldForOwnSchema(applied.status())) << applied.status();
  EXPECT_EQ(renames->NameHere("order", 0), "orders");
  EXPECT_EQ(renames->RouteOf("orders"), "order");
  for (int i = 0; i < 1000 && !applied.ok(); ++i) {
    absl::SleepFor(absl::Milliseconds(10));
    applied = b.applier->Apply(0, 1, theirs);
  }
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(applied->dead_lettered, 0) << DeadLetters(b);
  EXPECT_EQ(*b.db->QueryValue("SELECT name FROM orders WHERE id = 1"), Value::Text("x"));
}

// On the node that renamed a table, its dead letters kept by the old name follow it when the
// rename comes back committed, as they follow it on every other node: a retry then finds them
// under the name the table has (RetryDeadLetters retries each under the name it is kept by).
TEST(ChangeApplierTest, OnTheNodeThatRenamedATableItsDeadLettersFollowItWhenTheRenameCommits) {
  Node a("renamed-dead-letters-a"), b("renamed-dead-letters-b");
  auto renames = std::make_shared<TableRenames>();
  b.router.set_renames(renames);
  b.RestartApplier(2);
  // Given a dead letter on node 2 of a change of "order" read with a column it lacks
  a.Exec("ALTER TABLE \"order\" ADD COLUMN note TEXT;");
  ASSERT_TRUE(sqlite::InstallCapture(*a.db).ok());
  a.Exec("INSERT INTO \"order\" (id, name, note) VALUES (1, 'x', 'n');");
  absl::StatusOr<ApplyResult> applied = b.applier->Apply(0, 1, a.CapturedBatch(1));
  ASSERT_TRUE(applied.ok()) << applied.status();
  ASSERT_EQ(applied->dead_lettered, 1);
  // When node 2 renames the table and its rename comes back committed
  b.Exec("ALTER TABLE \"order\" RENAME TO orders;");
  ASSERT_TRUE(sqlite::InstallCapture(*b.db).ok());
  change::v1::ChangeBatch own;
  own.set_origin_node(2);
  change::v1::SchemaChange* rename = own.add_schema_changes();
  rename->set_kind(change::v1::SchemaChange::RENAME_TABLE);
  rename->set_type("table");
  rename->set_name("order");
  rename->set_new_name("orders");
  rename->set_sql(b.db->QueryValue("SELECT sql FROM sqlite_master WHERE name = 'orders'")->bytes());
  applied = b.applier->Apply(0, 2, own);
  ASSERT_TRUE(applied.ok()) << applied.status();
  // Then the dead letter is the renamed table's
  EXPECT_EQ(b.db->QueryValue("SELECT group_concat(tbl) FROM \"__marmot__dead_letters\"")->bytes(),
            "orders");
  // And once the cause is gone, a retry applies it there
  b.Exec("ALTER TABLE orders ADD COLUMN note TEXT;");
  absl::StatusOr<RetryResult> retried = b.applier->RetryDeadLetters({});
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->applied, 1) << DeadLetters(b);
  EXPECT_EQ(*b.db->QueryValue("SELECT note FROM orders WHERE id = 1"), Value::Text("n"));
}

// Found by review: node 1 kept node 2's change k at once (its pending P holds the value k
// gives row 2), then kept node 4's k2 as an ordinary conflict naming P as winner too. Node 3's
// c3, made after k, must be judged against k (the change kept at the version's entry), as
// every other node judges it, not against k2: node 1 kept k as an extra conflict before.
TEST(ChangeApplierTest, AChangeAfterAKeptAtOnceChangeIsJudgedAgainstItNotAgainstALaterConflict) {
  Node n1("ka-1"), n2("ka-2"), n3("ka-3"), n4("ka-4");
  n1.applier->set_local_node(1);
  n2.applier->set_local_node(2);
  n3.applier->set_local_node(3);
  n4.applier->set_local_node(4);
  n3.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'a@x'), (2, 'b@x')");
  const change::v1::ChangeBatch start = n3.CapturedBatch(3);
  for (Node* n : {&n1, &n2, &n3, &n4}) ASSERT_TRUE(n->applier->Apply(0, 1, start).ok());
  n1.Exec("INSERT INTO \"order\" (id, name) VALUES (9, 'k@x')");
  const change::v1::ChangeBatch p = n1.CapturedBatch(1);
  n2.Exec("UPDATE \"order\" SET name = 'k@x' WHERE id = 2");
  const change::v1::ChangeBatch k = n2.CapturedBatch(2);
  n4.Exec("UPDATE \"order\" SET price = 5 WHERE id = 2");
  const change::v1::ChangeBatch k2 = n4.CapturedBatch(4);
  ASSERT_TRUE(n3.applier->Apply(0, 2, k).ok());
  ASSERT_TRUE(n3.applier->Apply(0, 3, k2).ok());
  n3.Exec("UPDATE \"order\" SET price = 7 WHERE id = 2");
  const change::v1::ChangeBatch c3 = n3.CapturedBatch(3);
  for (Node* n : {&n1, &n2, &n4}) {
    ASSERT_TRUE(n->applier->Apply(0, 2, k).ok());
    ASSERT_TRUE(n->applier->Apply(0, 3, k2).ok());
  }
  for (Node* n : {&n1, &n2, &n3, &n4}) {
    absl::StatusOr<ApplyResult> applied = n->applier->Apply(0, 4, c3);
    ASSERT_TRUE(applied.ok()) << applied.status();
    applied = n->applier->Apply(0, 5, p);
    ASSERT_TRUE(applied.ok()) << applied.status();
  }
  // The conflicts by name (the winner a node names may still differ: see the closing note).
  const std::string conflicts =
      "SELECT group_concat(key || ' o' || origin || ' c' || change_id, ', ') FROM (SELECT * FROM "
      "\"__marmot__conflicts\" ORDER BY origin, change_id)";
  for (Node* n : {&n2, &n3, &n4}) {
    SCOPED_TRACE(n->path);
    EXPECT_EQ(n1.Dump("order"), n->Dump("order"));
    EXPECT_EQ(n1.db->QueryValue(conflicts)->DebugString(),
              n->db->QueryValue(conflicts)->DebugString());
  }
}

// Another node's insert takes a UNIQUE value from each of two rows with pending changes of node
// 1 (a): row 1's `lose` (a's change 1, which then loses: b changed row 1 first) and row 3's
// `win` (a's change 2, which wins). a keeps the insert at once for one of them. Expected on
// every node, as on b: row 1 with b's value, row 3 with a's, the insert a conflict a's change 2
// won. (Reviewing fca23e2, whose snapshot install keeps rows the same way:
// shard_snapshotter_test ASnapshotRowOverTwoPendingRowsEndsAsOnEveryNode*.)
void ExpectAnInsertOverTwoPendingRowsEndsAsOnEveryNode(const std::string& label, bool loser_on_u) {
  Node a(label + "-a"), b(label + "-b");
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  for (Node* n : {&a, &b}) {
    n->Exec("CREATE TABLE two (id INTEGER PRIMARY KEY, u TEXT UNIQUE, w TEXT UNIQUE)");
    ASSERT_TRUE(sqlite::InstallCapture(*n->db).ok());
  }
  auto apply = [](std::initializer_list<Node*> nodes, uint64_t index,
                  const change::v1::ChangeBatch& batch) {
    for (Node* n : nodes) {
      auto r = n->applier->Apply(0, index, batch);
      ASSERT_TRUE(r.ok()) << r.status();
    }
  };
  const std::string lose = loser_on_u ? "u" : "w", win = loser_on_u ? "w" : "u";
  b.Exec("INSERT INTO two VALUES (1, 'u1', 'w1'), (3, 'u3', 'w3')");  // b's changes 1, 2
  apply({&a, &b}, 1, OnlyChange(b.CapturedBatch(2), 1, "two"));
  apply({&a, &b}, 2, OnlyChange(b.CapturedBatch(2), 2, "two"));
  a.Exec(absl::StrCat("UPDATE two SET ", lose, " = 'p' WHERE id = 1"));  // a's change 1
  a.Exec(absl::StrCat("UPDATE two SET ", win, " = 'q' WHERE id = 3"));   // a's change 2
  b.Exec(absl::StrCat("UPDATE two SET ", lose, " = 'z' WHERE id = 1"));  // b's change 3
  apply({&a, &b}, 3, OnlyChange(b.CapturedBatch(2), 3, "two"));          // held on a
  b.Exec(absl::StrCat("INSERT INTO two (id, ", lose, ", ", win, ") VALUES (2, 'p', 'q')"));  // 4
  apply({&a, &b}, 4, OnlyChange(b.CapturedBatch(2), 4, "two"));  // kept at once on a
  EXPECT_EQ(a.Conflicts(), 1);
  // a's change 1 is read and applied; its change 2 is read after.
  apply({&a, &b}, 5, OnlyChange(a.CapturedBatch(1), 1, "two"));
  apply({&a, &b}, 6, OnlyChange(a.CapturedBatch(1), 2, "two"));
  EXPECT_EQ(b.Dump("two"),
            loser_on_u ? "1 1 'z' 'w1' \n3 3 'u3' 'q' \n" : "1 1 'u1' 'z' \n3 3 'q' 'w3' \n");
  EXPECT_EQ(a.Dump("two"), b.Dump("two"));
  EXPECT_EQ(QueryText(a,
                      "SELECT tbl, key, origin, change_id, winner_origin, winner_change_id "
                      "FROM \"__marmot__conflicts\" ORDER BY key"),
            QueryText(b,
                      "SELECT tbl, key, origin, change_id, winner_origin, winner_change_id "
                      "FROM \"__marmot__conflicts\" ORDER BY key"));
}

TEST(ChangeApplierTest, AnInsertOverTwoPendingRowsEndsAsOnEveryNodeLoserOnU) {
  ExpectAnInsertOverTwoPendingRowsEndsAsOnEveryNode("two-pending-u", true);
}

// Here a keeps b's insert at once for its change 1, the one that loses. When it loses, the
// insert would replace row 3, whose a's change 2 is still pending: it is kept at once for that
// change in turn (KeptAgainForAnotherOwnChange). Rows 1 ('u1', 'z') and 3 ('q', 'w3') on both,
// row 2 a conflict a's change 2 won. (Found 2026-12-07 reviewing fca23e2, the same through a
// snapshot install in shard_snapshotter_test: TakeKeptAtOnce's write of the insert with INSERT
// OR REPLACE deleted row 3 on a; a's shipper then read no row 3 for change 2 and shipped a
// DELETE of it: row 3 and a's edit of it were gone on both nodes, kept nowhere.)
TEST(ChangeApplierTest, AnInsertOverTwoPendingRowsEndsAsOnEveryNodeLoserOnW) {
  ExpectAnInsertOverTwoPendingRowsEndsAsOnEveryNode("two-pending-w", false);
}

// A change kept at once for this node's change N of one table, when this node's change N of
// another table loses (change ids count per table: every log starts above the same floor at a
// start, so a node's first change of each table has one id). Node 1 (a) renamed row 1 of
// `order` to 'b' (its change 1 of order) and edited ('k', 1) of pair over b's first version (its
// change 1 of pair, which loses: b edited it first); b gave 'b' to a new row 2, kept at once on
// a for a's change 1 of order. Expected on both, whichever of a's changes applies first: row 1
// 'b', row 2 a conflict a's change of order won; ('k', 1) 'theirs', a's edit a conflict.
// (Regression, found 2026-12-07 reviewing fca23e2: TakeKeptAtOnce took the conflicts kept for
// a change of that id of any table. When a's change of pair lost, row 2 was written back on a,
// deleting row 1 there: a ended with row 2 and b with row 1; or, when a's change of order was
// read after that, it shipped as a DELETE and row 1 was gone everywhere.)
void ExpectAKeptChangeStaysWhenAnotherTablesChangeOfItsIdLoses(const std::string& label,
                                                               bool pair_first,
                                                               bool read_late = false) {
  Node a(label + "-a"), b(label + "-b");
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  auto apply = [](std::initializer_list<Node*> nodes, uint64_t index,
                  const change::v1::ChangeBatch& batch) {
    for (Node* n : nodes) {
      auto r = n->applier->Apply(0, index, batch);
      ASSERT_TRUE(r.ok()) << r.status();
    }
  };
  b.Exec("INSERT INTO pair VALUES ('k', 1, 'v0')");  // b's change 1 of pair
  apply({&a, &b}, 1, OnlyChange(b.CapturedBatch(2), 1, "pair"));
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (1, 'x')");  // b's change 1 of order
  apply({&a, &b}, 2, OnlyChange(b.CapturedBatch(2), 1, "order"));
  a.Exec("UPDATE \"order\" SET name = 'b' WHERE id = 1");          // a's change 1 of order
  a.Exec("UPDATE pair SET v = 'mine' WHERE a = 'k'");              // a's change 1 of pair
  b.Exec("UPDATE pair SET v = 'theirs' WHERE a = 'k'");            // b's change 2 of pair
  apply({&a, &b}, 3, OnlyChange(b.CapturedBatch(2), 2, "pair"));   // held on a
  b.Exec("INSERT INTO \"order\" (id, name) VALUES (2, 'b')");      // b's change 2 of order
  apply({&a, &b}, 4, OnlyChange(b.CapturedBatch(2), 2, "order"));  // kept at once on a
  ASSERT_EQ(a.Conflicts(), 1);
  const change::v1::ChangeBatch mine = a.CapturedBatch(1);
  apply({&a, &b}, 5, OnlyChange(mine, 1, pair_first ? "pair" : "order"));
  // The second of a's changes read by its shipper before the first applied, or after.
  apply({&a, &b}, 6,
        OnlyChange(read_late ? a.CapturedBatch(1) : mine, 1, pair_first ? "order" : "pair"));
  EXPECT_EQ(b.Dump("order"), "1 1 'b' NULL NULL \n");
  EXPECT_EQ(a.Dump("order"), b.Dump("order"));
  EXPECT_EQ(a.Dump("pair"), b.Dump("pair"));
  const std::string shape =
      "SELECT shard, tbl, key, origin, change_id, winner_origin, winner_change_id FROM "
      "\"__marmot__conflicts\" ORDER BY tbl, key, origin, change_id";
  EXPECT_EQ(QueryText(a, shape), QueryText(b, shape));
}

TEST(ChangeApplierTest, AKeptChangeStaysWhenAnotherTablesChangeOfItsIdLosesFirst) {
  ExpectAKeptChangeStaysWhenAnotherTablesChangeOfItsIdLoses("kept-other-table-first", true);
}

TEST(ChangeApplierTest, AKeptChangeStaysWhenAnotherTablesChangeOfItsIdLosesFirstReadLate) {
  ExpectAKeptChangeStaysWhenAnotherTablesChangeOfItsIdLoses("kept-other-table-late", true, true);
}

TEST(ChangeApplierTest, AKeptChangeStaysWhenAnotherTablesChangeOfItsIdLosesAfter) {
  ExpectAKeptChangeStaysWhenAnotherTablesChangeOfItsIdLoses("kept-other-table-after", false);
}

// A batch of node 9's schema changes, as shard 0 carries them.
change::v1::ChangeBatch SchemaBatch(
    const std::vector<std::tuple<change::v1::SchemaChange::Kind, std::string, std::string,
                                 std::string>>& changes) {
  change::v1::ChangeBatch batch;
  batch.set_origin_node(9);
  for (const auto& [kind, type, name, sql] : changes) {
    change::v1::SchemaChange* c = batch.add_schema_changes();
    c->set_kind(kind);
    c->set_type(type);
    c->set_name(name);
    c->set_sql(sql);
  }
  return batch;
}

// Found by schema_hunt3_test (a node back from snapshots after a migration it missed): a
// snapshot carries its maker's baseline as CREATEs, which made what the installing node lacked
// and left what its maker no longer had, for good.
TEST(ChangeApplierTest, ASnapshotOfShardZeroDropsWhatItsMakerDroppedWhileThisNodeWasAway) {
  // Given nodes A and B, each with another node's table `gone` (rows in both shards), an index
  // and a trigger,
  Node a("snap-drops-a", /*shards=*/2), b("snap-drops-b", /*shards=*/2);
  using Kind = change::v1::SchemaChange;
  const change::v1::ChangeBatch made = SchemaBatch(
      {{Kind::CREATE, "table", "gone", "CREATE TABLE gone (id INTEGER PRIMARY KEY, v TEXT)"},
       {Kind::CREATE, "index", "loose_x", "CREATE INDEX loose_x ON loose (x)"},
       {Kind::CREATE, "trigger", "pair_stamp",
        "CREATE TRIGGER pair_stamp AFTER UPDATE ON pair BEGIN SELECT 1; END"}});
  for (Node* n : {&a, &b}) {
    ASSERT_TRUE(n->applier->Apply(0, 2, made).ok());
    n->Exec("INSERT INTO gone VALUES (1, 'a'), (2, 'b');");
  }
  // and B's own index, whose CREATE committed at shard-0 index 12 and is not applied yet,
  b.Exec("CREATE INDEX mine ON pair (v);");
  change::v1::SchemaChange mine;
  mine.set_kind(change::v1::SchemaChange::CREATE);
  mine.set_type("index");
  mine.set_name("mine");
  mine.set_sql("CREATE INDEX mine ON pair (v)");
  ASSERT_TRUE(RecordSentInBaseline(*b.db, {mine}, 12).ok());
  // when A drops the three at shard-0 index 4, which B misses,
  ASSERT_TRUE(a.applier
                  ->Apply(0, 4,
                          SchemaBatch({{Kind::DROP, "trigger", "pair_stamp", ""},
                                       {Kind::DROP, "index", "loose_x", ""},
                                       {Kind::DROP, "table", "gone", ""}}))
                  .ok());
  // then A's snapshot of shard 1 leaves them on B (a snapshot of shard 0 decides the schema),
  auto one = testing::CopySnapshot(*a.applier, *b.applier, 1, 10);
  ASSERT_TRUE(one.ok()) << one.status();
  const std::string objects =
      "SELECT type, name FROM sqlite_master WHERE name IN ('gone', 'loose_x', 'pair_stamp', "
      "'mine') ORDER BY name";
  EXPECT_EQ(QueryText(b, objects),
            "'table' 'gone' \n'index' 'loose_x' \n'index' 'mine' \n'trigger' 'pair_stamp' \n");
  // and its snapshot of shard 0 at index 10 drops them on B, `gone` with its rows of every
  // shard; B's own index, which shard 0 orders after the snapshot, stays.
  auto zero = testing::CopySnapshot(*a.applier, *b.applier, 0, 10);
  ASSERT_TRUE(zero.ok()) << zero.status();
  EXPECT_EQ(QueryText(b, objects), "'index' 'mine' \n");
  auto schema_a = BaselineSchema(*a.db);
  auto schema_b = BaselineSchema(*b.db);
  ASSERT_TRUE(schema_a.ok() && schema_b.ok());
  std::vector<std::string> names_a, names_b;
  for (const auto& c : *schema_a) names_a.push_back(c.name());
  for (const auto& c : *schema_b) {
    if (c.name() != "mine") names_b.push_back(c.name());
  }
  EXPECT_EQ(names_b, names_a);
  EXPECT_EQ(DeadLetters(b), "");
}

// Another node's table `gone` and index `loose_x` made on `nodes` at shard-0 index 2, then
// `rows` written into `gone` on each.
void MakeGoneAndLooseX(std::initializer_list<Node*> nodes, const std::string& rows) {
  using Kind = change::v1::SchemaChange;
  const change::v1::ChangeBatch made = SchemaBatch(
      {{Kind::CREATE, "table", "gone", "CREATE TABLE gone (id INTEGER PRIMARY KEY, v TEXT)"},
       {Kind::CREATE, "index", "loose_x", "CREATE INDEX loose_x ON loose (x)"}});
  for (Node* n : nodes) {
    ASSERT_TRUE(n->applier->Apply(0, 2, made).ok());
    n->Exec(rows);
  }
}

// `n`'s snapshot of `shard` as its maker at schema epoch `epoch` writes it.
std::string SnapshotAtEpoch(Node& n, int shard, uint64_t epoch) {
  raft::host::StringSnapshotSink sink;
  ShardSnapshotWriter writer(sink);
  writer.set_schema_epoch(epoch);
  absl::Status s = n.applier->CreateSnapshot(shard, writer);
  EXPECT_TRUE(s.ok()) << s;
  return sink.Take();
}

// A snapshot of another shard carries its maker's baseline as it was when it was taken: one
// taken before a drop this node applied since made the object again (with that shard's rows
// of a table), for good.
TEST(ChangeApplierTest, AnOlderSnapshotOfAnotherShardDoesNotBringBackWhatWasDroppedSince) {
  // Given nodes A and B with another node's table `gone` (rows in both shards) and index
  // `loose_x`, made at shard-0 index 2,
  Node a("older-snap-a", /*shards=*/2), b("older-snap-b", /*shards=*/2);
  using Kind = change::v1::SchemaChange;
  ASSERT_NO_FATAL_FAILURE(MakeGoneAndLooseX(
      {&a, &b}, "INSERT INTO gone VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e');"));
  // and A's snapshot of shard 1 taken then (its schema epoch 2),
  const std::string older = SnapshotAtEpoch(a, 1, 2);
  ASSERT_TRUE(a.Dump("gone").find("'c'") != std::string::npos);
  // when both drop them at shard-0 index 4
  for (Node* n : {&a, &b}) {
    ASSERT_TRUE(n->applier
                    ->Apply(0, 4,
                            SchemaBatch({{Kind::DROP, "index", "loose_x", ""},
                                         {Kind::DROP, "table", "gone", ""}}))
                    .ok());
  }
  // and B then installs A's older snapshot of shard 1 (its log went on without B),
  raft::host::StringSnapshotSource source(older);
  ShardSnapshotReader reader(source);
  auto installed = b.applier->InstallSnapshot(reader, 10);
  ASSERT_TRUE(installed.ok()) << installed.status();
  // then B has neither, as A, and no dead letter of their rows.
  const std::string objects =
      "SELECT type, name FROM sqlite_master WHERE name IN ('gone', 'loose_x') ORDER BY name";
  EXPECT_EQ(QueryText(b, objects), "");
  EXPECT_EQ(QueryText(a, objects), "");
  EXPECT_EQ(DeadLetters(b), "");
  EXPECT_EQ(QueryText(b, "SELECT count(*) FROM \"__marmot__versions\" WHERE tbl = 'gone'"), "0 \n");
  // A newer snapshot, whose maker made a table of that name again after the drop, brings it.
  const change::v1::ChangeBatch again = SchemaBatch(
      {{Kind::CREATE, "table", "gone", "CREATE TABLE gone (id INTEGER PRIMARY KEY, w TEXT)"}});
  ASSERT_TRUE(a.applier->Apply(0, 6, again).ok());
  raft::host::StringSnapshotSource newer_source(SnapshotAtEpoch(a, 1, 6));
  ShardSnapshotReader newer(newer_source);
  auto installed_newer = b.applier->InstallSnapshot(newer, 12);
  ASSERT_TRUE(installed_newer.ok()) << installed_newer.status();
  EXPECT_EQ(QueryText(b, objects), "'table' 'gone' \n");
}

// A snapshot's CREATE made again what a local process dropped while marmot was stopped (or
// before it looked): the drop was then lost, never proposed.
TEST(ChangeApplierTest, ASnapshotDoesNotUndoWhatThisNodesApplicationDroppedBeforeItIsProposed) {
  // Given nodes A and B with another node's table `gone` and index `loose_x`,
  Node a("undone-drop-a", /*shards=*/2), b("undone-drop-b", /*shards=*/2);
  ASSERT_NO_FATAL_FAILURE(
      MakeGoneAndLooseX({&a, &b}, "INSERT INTO gone VALUES (1, 'a'), (2, 'b'), (3, 'c');"));
  // when B's application drops them, and B installs A's snapshots before it proposed that,
  b.Exec("DROP INDEX loose_x; DROP TABLE gone;");
  for (int shard : {1, 0}) {
    auto installed = testing::CopySnapshot(*a.applier, *b.applier, shard, 10);
    ASSERT_TRUE(installed.ok()) << installed.status();
  }
  // then they stay dropped on B, no dead letter kept, and the drops are B's to propose still.
  EXPECT_EQ(QueryText(b, "SELECT name FROM sqlite_master WHERE name IN ('gone', 'loose_x')"), "");
  EXPECT_EQ(DeadLetters(b), "");
  absl::StatusOr<SchemaDiff> diff = DiffSchema(*b.db);
  ASSERT_TRUE(diff.ok()) << diff.status();
  std::vector<std::string> drops;
  for (const change::v1::SchemaChange& c : diff->replicate) {
    drops.push_back(absl::StrCat(DescribeSchemaChange(c)));
  }
  EXPECT_THAT(drops,
              ::testing::UnorderedElementsAre("drop of table gone", "drop of index loose_x"));
}

}  // namespace
}  // namespace marmot::replicator
