// Dead letters tried again through ChangeApplier (DeadLetterRetrier under it): an operator's
// retry, in id order and never past an earlier dead letter of the same row, and the dead
// letters a snapshot carries, applied after its rows or kept here in their order.
#include "replicator/dead_letter_retrier.h"

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

// Dead letters, retried. A dead letter holds its row back: every later change of the same row
// queues behind it, so that a retry can never write an older version over a newer one.

TEST(DeadLetterRetryTest, AChangeForAMissingTableAppliesOnceTheTableExists) {
  // Given changes of `pair` that node B cannot apply: B has no such table
  Node a("retry-a"), b("retry-b");
  b.Exec("DROP TABLE pair");
  a.Exec(
      "INSERT INTO pair VALUES ('k', 1, 'v1'), ('k', 2, 2.5); UPDATE pair SET v = 'v2' WHERE b = 1;"
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
  b.Exec(
      "DROP TABLE \"order\"; CREATE TABLE \"order\" (id INTEGER PRIMARY KEY, name TEXT UNIQUE, "
      "price REAL CHECK (price < 100), img BLOB);");
  // Entry 1: row 1 gets a price B rejects (change A); row 2 is fine
  a.Exec("INSERT INTO \"order\" (id, name, price) VALUES (1, 'r1', 500), (2, 'r2', 1)");
  auto r1 = b.applier->Apply(0, 1, a.CapturedBatch(1));
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_EQ(r1->dead_lettered, 1);
  EXPECT_EQ(r1->applied, 1);
  const int64_t first = DeadLetterIds(b).at(0);

  // When entry 2 brings change B of row 1, which B could apply on its own, and a change of row 2
  a.Exec(
      "UPDATE \"order\" SET price = 5 WHERE id = 1; UPDATE \"order\" SET price = 7 WHERE id = 2");
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
  EXPECT_THAT(DeadLetters(b),
              HasSubstr(absl::StrCat("queued behind dead letter ", first, " of the same row")));

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
  b.Exec(
      "CREATE TABLE o2 (id INTEGER PRIMARY KEY, name TEXT UNIQUE, price REAL, img BLOB);"
      "INSERT INTO o2 SELECT * FROM \"order\"; DROP TABLE \"order\";"
      "ALTER TABLE o2 RENAME TO \"order\";");
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
  b.Exec(
      "DROP TABLE \"order\"; CREATE TABLE \"order\" (id INTEGER PRIMARY KEY, name TEXT UNIQUE, "
      "price REAL CHECK (price < 100), img BLOB);");
  a.Exec("INSERT INTO \"order\" (id, name, price) VALUES (1, 'r1', 500)");
  ASSERT_TRUE(b.applier->Apply(0, 1, a.CapturedBatch(1)).ok());  // Row 1: dead letter.
  // Row 1 moves to key 10 (queued behind row 1), then row 10 changes (queued behind the rekey).
  a.Exec(
      "UPDATE \"order\" SET id = 10, price = 1 WHERE id = 1;"
      "UPDATE \"order\" SET name = 'r10' WHERE id = 10");
  auto r = b.applier->Apply(0, 2, a.CapturedBatch(1));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->dead_lettered, 2);
  EXPECT_EQ(r->applied, 0);
  std::vector<int64_t> ids = DeadLetterIds(b);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_THAT(DeadLetters(b), HasSubstr(absl::StrCat("queued behind dead letter ", ids[1])));

  b.Exec(
      "CREATE TABLE o2 (id INTEGER PRIMARY KEY, name TEXT UNIQUE, price REAL, img BLOB);"
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
  b.Exec(
      "CREATE TABLE pair (a TEXT, b INTEGER, v, PRIMARY KEY (a, b)) WITHOUT ROWID;"
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
      const change::v1::Value& b = c.op() == change::v1::OP_DELETE ? c.old_key(1) : c.row(1);
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
  a.Exec(absl::StrCat("INSERT INTO pair VALUES ('k', ", in_zero, ", 'zero'), ('k', ", in_one,
                      ", 'one')"));
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
  EXPECT_EQ(*b.db->QueryValue(absl::StrCat("SELECT v FROM pair WHERE b = ", in_zero)),
            Value::Text("zero"));
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
  return testing::QueryText(
      n, "SELECT raft_index, origin, tbl, change_id FROM \"__marmot__dead_letters\" ORDER BY id");
}

// Two entries of writes on `src` (origin 1), applied at indexes 1 and 2 by each of `nodes`:
// row 1 of `order` gets a price of 500, then 5; `pair` gets two rows, then an update of one.
// Each entry holds every change captured so far (the earlier ones are duplicates).
std::vector<change::v1::ChangeBatch> WriteTwoEntries(Node& src) {
  src.Exec(
      "INSERT INTO \"order\" (id, name, price) VALUES (1, 'r1', 500), (2, 'r2', 1);"
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
  b.Exec(
      "INSERT INTO \"order\" (id, name) VALUES (7, 'only on b');"
      "INSERT INTO pair VALUES ('b', 1, 'b')");
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
  EXPECT_EQ(ValueOf(a, "SELECT count(*) FROM \"order\" WHERE id = 1"),
            Value::Integer(0).DebugString());
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
  EXPECT_EQ(ValueOf(b, "SELECT count(*) FROM \"order\" WHERE id = 1"),
            Value::Integer(0).DebugString());
  EXPECT_EQ(ValueOf(b, "SELECT price FROM \"order\" WHERE id = 2"), Value::Real(1).DebugString());
  // And once the CHECK is gone, a retry applies both in order
  b.Exec(
      "CREATE TABLE o2 (id INTEGER PRIMARY KEY, name TEXT UNIQUE, price REAL, img BLOB);"
      "INSERT INTO o2 SELECT * FROM \"order\"; DROP TABLE \"order\";"
      "ALTER TABLE o2 RENAME TO \"order\";");
  auto retried = b.applier->RetryDeadLetters({});
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->applied, 2);
  EXPECT_EQ(b.Dump("order"), c.Dump("order"));
}

TEST(SnapshotDeadLetterTest, CarriedDeadLettersAreKeptUnderTheTableAsNamedHere) {
  // Given A's snapshot carrying both changes of row 1 of `order` (A lacks the table)
  Node src("case-carry-src"), a("case-carry-a"), b("case-carry-b");
  a.Exec("DROP TABLE \"order\";");
  const std::vector<change::v1::ChangeBatch> entries = WriteTwoEntries(src);
  ApplyAll(a, entries);
  auto snapshot = CreateSnapshot(*a.applier, 0);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();

  // When B, which spells the table `ORDER` (one name to SQLite) and rejects the first change
  // (price 500), installs it
  b.Exec(
      "DROP TABLE \"order\"; CREATE TABLE \"ORDER\" (id INTEGER PRIMARY KEY, name TEXT UNIQUE, "
      "price REAL CHECK (price < 100), img BLOB);");
  auto installed = InstallSnapshot(*b.applier, *snapshot);
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_EQ(installed->carried_kept, 2);

  // Then B keeps them under its own name of the table
  EXPECT_EQ(testing::QueryText(b, "SELECT DISTINCT tbl FROM \"__marmot__dead_letters\""),
            "'ORDER' \n");
  // And a later change of that row queues behind them, as any change of a row whose earlier
  // change is a dead letter here
  src.Exec("UPDATE \"order\" SET name = 'r1 again' WHERE id = 1;");
  auto later = b.applier->Apply(0, 3, src.CapturedBatch(1));
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(ValueOf(b, "SELECT count(*) FROM \"ORDER\" WHERE id = 1"),
            Value::Integer(0).DebugString());
  EXPECT_EQ(*b.applier->DeadLetterCount(), 3);
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
