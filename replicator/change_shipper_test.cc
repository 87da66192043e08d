// Shipping captured changes through an ordered log per shard to other nodes. The stand-in for
// Raft below keeps one totally ordered log per shard and applies each entry on every node, which
// is the contract the multi-Raft host provides.
#include "replicator/change_shipper.h"

#include <glog/logging.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "raft/host/env_manual_clock.h"
#include "replicator/change_applier.h"
#include "sqlite/change_log.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

using sqlite::testing::RunSqliteCli;

constexpr char kSchema[] =
    "CREATE TABLE kv (k TEXT PRIMARY KEY, v);"
    "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER);"
    "CREATE TABLE uniq (k INTEGER PRIMARY KEY, u TEXT UNIQUE, v);";

struct Node {
  Node(const std::string& label, const ShardRouter& router) {
    path = sqlite::testing::NewDatabase(label, kSchema);
    auto db = sqlite::Database::Open(path);
    CHECK(db.ok());
    CHECK(sqlite::InstallCapture(*db).ok());
    auto a = ChangeApplier::Open(path, router);
    CHECK(a.ok()) << a.status();
    applier = *std::move(a);
  }
  std::string Dump() {
    return *RunSqliteCli(path,
                         "SELECT 'kv', k, v, typeof(v) FROM kv ORDER BY k;"
                         "SELECT 'items', * FROM items ORDER BY id;");
  }
  std::string path;
  std::unique_ptr<ChangeApplier> applier;
};

// An ordered log per shard; entries apply on every node in log order.
class LogPerShard : public Proposer {
 public:
  explicit LogPerShard(std::vector<Node*> nodes) : nodes_(std::move(nodes)) {}

  void Propose(int shard, std::string payload, Proposer::Done done) override {
    ++proposals_;
    if (fail_every_ > 0 && proposals_ % fail_every_ == 0) {
      done(absl::UnavailableError("no leader"), 0);
      return;
    }
    if (hold_ || shard == hold_shard_) {
      held_.emplace_back(shard, std::move(payload), std::move(done));
      return;
    }
    const uint64_t index = Commit(shard, payload);
    done(absl::OkStatus(), index);
  }

  // The index it committed at.
  uint64_t Commit(int shard, const std::string& payload) {
    change::v1::ChangeBatch batch;
    CHECK(batch.ParseFromString(payload));
    uint64_t index = ++next_index_[shard];
    committed_.push_back({.shard = shard, .index = index, .batch = batch});
    for (Node* n : nodes_) {
      auto r = n->applier->Apply(shard, index, batch);
      CHECK(r.ok()) << r.status();
      duplicates_ += r->duplicates;
      dead_letters_ += r->dead_lettered;
      schema_conflicts_ += r->schema_conflicts;
    }
    if (epochs_ != nullptr) epochs_->Applied(shard, index);
    return index;
  }

  // Commits held proposals without telling the proposer (it "crashed" before hearing back).
  void CommitHeldSilently() {
    for (auto& [shard, payload, done] : held_) Commit(shard, payload);
    held_.clear();
  }

  // Commits held proposals and tells the proposer.
  void ReleaseHeld() {
    auto held = std::move(held_);
    held_.clear();
    for (auto& [shard, payload, done] : held) {
      const uint64_t index = Commit(shard, payload);
      done(absl::OkStatus(), index);
    }
  }

  int fail_every_ = 0;
  // Where the proposer's node stands: its shards applied every entry as it committed.
  SchemaEpochs* epochs_ = nullptr;
  bool hold_ = false;
  int hold_shard_ = -1;  // Proposals to this shard are held.
  // What committed, in commit order.
  struct Committed {
    int shard = 0;
    uint64_t index = 0;
    change::v1::ChangeBatch batch;
  };
  std::vector<Committed> committed_;
  int64_t duplicates_ = 0;
  int64_t dead_letters_ = 0;
  int64_t schema_conflicts_ = 0;
  int proposals_ = 0;

 private:
  std::vector<Node*> nodes_;
  std::map<int, uint64_t> next_index_;
  std::vector<std::tuple<int, std::string, Proposer::Done>> held_;
};

// Pumps until nothing is buffered or in flight (or 1000 rounds).
void Drain(ChangeShipper& shipper) {
  for (int i = 0; i < 1000; ++i) {
    auto stats = shipper.Pump();
    ASSERT_TRUE(stats.ok()) << stats.status();
    if (shipper.buffered() == 0 && stats->read == 0 && shipper.in_flight() == 0) return;
  }
  FAIL() << "shipper did not drain: " << shipper.buffered() << " buffered";
}

constexpr char kWorkload[] =
    "INSERT INTO kv VALUES ('a', 1), ('b', 2.5), ('c', x'00ff'), ('d', '2024-01-01');"
    "UPDATE kv SET v = 'changed' WHERE k = 'a';"
    "UPDATE kv SET k = 'moved' WHERE k = 'b';"
    "DELETE FROM kv WHERE k = 'c';"
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)"
    "  INSERT INTO items SELECT i, 'item ' || i, i * 3 FROM n;"
    "UPDATE items SET qty = qty + 1 WHERE id % 7 = 0;"
    "UPDATE items SET id = id + 10000 WHERE id % 11 = 0;"
    "DELETE FROM items WHERE id % 13 = 0;";

TEST(ChangeShipperTest, EveryNodeConvergesToTheOriginsTables) {
  ShardRouter router(16);
  Node a("ship-a", router), b("ship-b", router), c("ship-c", router);
  LogPerShard log({&a, &b, &c});
  // Marking at every round, so that the logs are pruned once the shipper is drained.
  auto shipper = ChangeShipper::Open(a.path, 1, router, &log,
                                     {.max_batch_changes = 50,
                                      .mark_quiet = absl::ZeroDuration(),
                                      .mark_interval = absl::ZeroDuration()});
  ASSERT_TRUE(shipper.ok()) << shipper.status();

  ASSERT_TRUE(RunSqliteCli(a.path, kWorkload).ok());
  Drain(**shipper);

  EXPECT_EQ(b.Dump(), a.Dump());
  EXPECT_EQ(c.Dump(), a.Dump());
  EXPECT_EQ(log.dead_letters_, 0);
  // Logs are pruned down to their newest row, marked done.
  EXPECT_EQ(
      *RunSqliteCli(
          a.path, "SELECT count(*), min(\"__marmot__state\") FROM \"__marmot__items_change_log\";"),
      "1|1\n");
  // Many changes per entry: far fewer proposals than changes.
  EXPECT_LT(log.proposals_, 100);
}

TEST(ChangeShipperTest, ANewTablesRowsFollowItsCreateWhichGoesToShardZeroFirst) {
  ShardRouter router(4);
  Node a("ship-ddl-a", router), b("ship-ddl-b", router);
  LogPerShard log({&a, &b});
  log.hold_shard_ = 0;
  auto shipper = ChangeShipper::Open(a.path, 1, router, &log, {.replicate_schema = true});
  ASSERT_TRUE(shipper.ok()) << shipper.status();
  ASSERT_TRUE(RunSqliteCli(a.path,
                           "CREATE TABLE fresh (id INTEGER PRIMARY KEY, v TEXT);"
                           "CREATE INDEX fresh_v ON fresh (v);"
                           "INSERT INTO fresh VALUES (1, 'x'), (2, 'y'), (3, 'z');")
                  .ok());
  {
    // As the capture keeper does for a table made while marmot runs.
    auto db = sqlite::Database::Open(a.path);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(sqlite::InstallCapture(*db, {.backfill_new_tables = true}).ok());
  }
  for (int i = 0; i < 5; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  // Only the schema change went out (to shard 0, held there); the rows wait for it.
  EXPECT_EQ(log.proposals_, 1);
  EXPECT_EQ(*RunSqliteCli(b.path, "SELECT count(*) FROM sqlite_master WHERE name = 'fresh';"),
            "0\n");
  log.hold_shard_ = -1;
  log.ReleaseHeld();
  Drain(**shipper);
  EXPECT_EQ(*RunSqliteCli(b.path, "SELECT * FROM fresh ORDER BY id;"), "1|x\n2|y\n3|z\n");
  EXPECT_EQ(*RunSqliteCli(b.path, "SELECT sql FROM sqlite_master WHERE name = 'fresh_v';"),
            "CREATE INDEX fresh_v ON fresh (v)\n");
  EXPECT_EQ(log.dead_letters_, 0);
  // Committed once: not proposed again, though the schema is looked at again.
  const int proposals = log.proposals_;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  EXPECT_EQ(log.proposals_, proposals);
  // Regression (hunt): an index dropped and then made again as it was is replicated again.
  const std::string index = "SELECT count(*) FROM sqlite_master WHERE name = 'fresh_v';";
  ASSERT_TRUE(RunSqliteCli(a.path, "DROP INDEX fresh_v;").ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  EXPECT_EQ(*RunSqliteCli(b.path, index), "0\n");
  ASSERT_TRUE(RunSqliteCli(a.path, "CREATE INDEX fresh_v ON fresh (v);").ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  EXPECT_EQ(*RunSqliteCli(b.path, index), "1\n");
}

TEST(ChangeShipperTest, ATableRenamedWithItsRowsInFlightShipsThemOnceAndKeepsTheirShards) {
  // Each node routes renamed tables by what it recorded (table_renames.h).
  ShardRouter router_a(4), router_b(4);
  router_a.set_renames(std::make_shared<TableRenames>());
  router_b.set_renames(std::make_shared<TableRenames>());
  Node a("ship-rename-a", router_a), b("ship-rename-b", router_b);
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  LogPerShard log({&a, &b});
  auto shipper = ChangeShipper::Open(a.path, 1, router_a, &log, {.replicate_schema = true});
  ASSERT_TRUE(shipper.ok()) << shipper.status();
  // Given rows of items in flight (held, not committed),
  log.hold_ = true;
  ASSERT_TRUE(RunSqliteCli(
                  a.path, "INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3);")
                  .ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  ASSERT_GT(log.proposals_, 0);
  // when the table is renamed, written under its new name, and its capture follows (as the
  // capture keeper does),
  ASSERT_TRUE(RunSqliteCli(a.path,
                           "ALTER TABLE items RENAME TO goods;"
                           "INSERT INTO goods VALUES (4, 'four', 4);"
                           "UPDATE goods SET qty = 20 WHERE id = 2;")
                  .ok());
  {
    auto db = sqlite::Database::Open(a.path);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(sqlite::InstallCapture(*db, {.backfill_new_tables = true}).ok());
  }
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  log.hold_ = false;
  log.ReleaseHeld();
  Drain(**shipper);
  // then the other node has the table renamed with every row, once each, and no dead letter;
  EXPECT_EQ(*RunSqliteCli(b.path, "SELECT * FROM goods ORDER BY id;"),
            "1|one|1\n2|two|20\n3|three|3\n4|four|4\n");
  EXPECT_EQ(*RunSqliteCli(a.path, "SELECT * FROM goods ORDER BY id;"),
            "1|one|1\n2|two|20\n3|three|3\n4|four|4\n");
  EXPECT_EQ(*RunSqliteCli(b.path, "SELECT count(*) FROM sqlite_master WHERE name = 'items';"),
            "0\n");
  EXPECT_EQ(log.dead_letters_, 0);
  EXPECT_EQ(log.duplicates_, 0);
  int changes = 0;
  // the rows read before the rename went once, under the old name, and the rows' changes after
  // it under the new one, in the shards of the old name;
  const ShardRouter plain(4);
  for (const LogPerShard::Committed& c : log.committed_) {
    for (const change::v1::TableChanges& t : c.batch.tables()) {
      for (const change::v1::Change& change : t.changes()) {
        ++changes;
        ASSERT_GT(change.row_size(), 0);
        const int64_t id = change.row(0).integer();
        EXPECT_EQ(t.table(), id <= 3 && change.op() == change::v1::OP_INSERT ? "items" : "goods")
            << id;
        EXPECT_EQ(c.shard, plain.ShardOf("items", {sqlite::Value::Integer(id)})) << id;
      }
    }
  }
  EXPECT_EQ(changes, 5);
  // and the log, under the new name, is marked done.
  ASSERT_TRUE((*shipper)->Finish().ok());
  EXPECT_EQ(*RunSqliteCli(a.path,
                          "SELECT count(*) FROM \"__marmot__goods_change_log\" WHERE "
                          "\"__marmot__state\" = 0;"),
            "0\n");
}

TEST(ChangeShipperTest, ATableRenamedAwayWithItsRowsInFlightAndMadeAgainShipsBothTables) {
  ShardRouter router_a(4), router_b(4);
  router_a.set_renames(std::make_shared<TableRenames>());
  router_b.set_renames(std::make_shared<TableRenames>());
  Node a("ship-away-a", router_a), b("ship-away-b", router_b);
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  LogPerShard log({&a, &b});
  // Batches carry their schema epoch: rows of the new items, read after the rename committed,
  // name the new table everywhere.
  SchemaEpochs epochs(4);
  log.epochs_ = &epochs;
  auto shipper =
      ChangeShipper::Open(a.path, 1, router_a, &log, {.replicate_schema = true, .epochs = &epochs});
  ASSERT_TRUE(shipper.ok()) << shipper.status();
  // Given rows of items in flight (held, not committed),
  log.hold_ = true;
  ASSERT_TRUE(RunSqliteCli(
                  a.path, "INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3);")
                  .ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  ASSERT_GT(log.proposals_, 0);
  // when items is renamed away and made again in one transaction, both written after, and
  // capture follows (as the capture keeper does: the old log goes with items_old, and the new
  // log's ids start above every id handed out before),
  ASSERT_TRUE(RunSqliteCli(a.path,
                           "BEGIN; ALTER TABLE items RENAME TO items_old;"
                           "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER);"
                           "COMMIT; INSERT INTO items VALUES (100, 'new', 1);"
                           "INSERT INTO items_old VALUES (4, 'four', 4);"
                           "UPDATE items_old SET qty = 20 WHERE id = 2;")
                  .ok());
  {
    auto db = sqlite::Database::Open(a.path);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(
        sqlite::InstallCapture(*db, {.backfill_new_tables = true, .log_ids_above = 1000}).ok());
  }
  ASSERT_TRUE(RunSqliteCli(a.path, "INSERT INTO items VALUES (101, 'newer', 1);").ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  log.hold_ = false;
  log.ReleaseHeld();
  Drain(**shipper);
  // then the other node has both tables as the origin, each row once, and no dead letter;
  for (const std::string& path : {a.path, b.path}) {
    EXPECT_EQ(*RunSqliteCli(path, "SELECT * FROM items_old ORDER BY id;"),
              "1|one|1\n2|two|20\n3|three|3\n4|four|4\n")
        << path;
    EXPECT_EQ(*RunSqliteCli(path, "SELECT * FROM items ORDER BY id;"), "100|new|1\n101|newer|1\n")
        << path;
  }
  EXPECT_EQ(log.dead_letters_, 0);
  EXPECT_EQ(log.duplicates_, 0);
  EXPECT_EQ(log.schema_conflicts_, 0);
  // and both logs are marked done.
  ASSERT_TRUE((*shipper)->Finish().ok());
  EXPECT_EQ(*RunSqliteCli(a.path,
                          "SELECT count(*) FROM \"__marmot__items_old_change_log\" WHERE "
                          "\"__marmot__state\" = 0; SELECT count(*) FROM "
                          "\"__marmot__items_change_log\" WHERE \"__marmot__state\" = 0;"),
            "0\n0\n");
}

// Node 2 made table `item` and its CREATE came first in shard 0; node `a` (id 1) makes it as
// `Item` with three rows whose shard differs by the spelling hashed (MakeItem), and its CREATE
// commits after, before `a` applied either: entries apply on `b` as they commit, and on `a`
// only when it catches up (CatchUp).
struct CaseRace {
  CaseRace(const std::string& label, raft::host::Env* env) : env(env) {
    router_a.set_renames(std::make_shared<TableRenames>());
    router_b.set_renames(std::make_shared<TableRenames>());
    a = std::make_unique<Node>(label + "-a", router_a);
    b = std::make_unique<Node>(label + "-b", router_b);
    a->applier->set_local_node(1);
    b->applier->set_local_node(2);
    log = std::make_unique<LogPerShard>(std::vector<Node*>{b.get()});
    change::v1::ChangeBatch theirs;
    theirs.set_origin_node(2);
    change::v1::SchemaChange& create = *theirs.add_schema_changes();
    create.set_kind(change::v1::SchemaChange::CREATE);
    create.set_type("table");
    create.set_name("item");
    create.set_sql("CREATE TABLE item (id INTEGER PRIMARY KEY, v TEXT)");
    CHECK_EQ(log->Commit(0, theirs.SerializeAsString()), 1u);
    for (int64_t id = 1; ids.size() < 3; ++id) {
      if (by_name.ShardOf("item", {sqlite::Value::Integer(id)}) !=
          by_name.ShardOf("Item", {sqlite::Value::Integer(id)})) {
        ids.push_back(id);
      }
    }
  }
  absl::StatusOr<std::unique_ptr<ChangeShipper>> OpenShipper(SchemaEpochs* epochs) {
    return ChangeShipper::Open(a->path, 1, router_a, log.get(),
                               {.env = env, .replicate_schema = true, .epochs = epochs});
  }
  void MakeItem() {
    ASSERT_TRUE(
        RunSqliteCli(a->path,
                     absl::StrCat("CREATE TABLE Item (id INTEGER PRIMARY KEY, v TEXT);"
                                  "INSERT INTO Item VALUES (",
                                  ids[0], ", 'x'), (", ids[1], ", 'y'), (", ids[2], ", 'z');"))
            .ok());
    auto db = sqlite::Database::Open(a->path);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(sqlite::InstallCapture(*db, {.backfill_new_tables = true}).ok());
  }
  // `a`'s shards apply what committed and they have not.
  void CatchUp(SchemaEpochs& epochs) {
    for (const LogPerShard::Committed& c : log->committed_) {
      if (c.index <= epochs.applied(c.shard)) continue;
      auto applied = a->applier->Apply(c.shard, c.index, c.batch);
      ASSERT_TRUE(applied.ok()) << applied.status();
      epochs.Applied(c.shard, c.index);
    }
  }
  // Row batches committed so far.
  int RowBatches() const {
    int n = 0;
    for (const LogPerShard::Committed& c : log->committed_) n += c.batch.tables_size() > 0;
    return n;
  }
  // Every row of the table went where `item` routes it, and reached node 2.
  void ExpectRoutedByItem() {
    EXPECT_EQ(*RunSqliteCli(b->path, "SELECT v FROM item ORDER BY id;"), "x\ny\nz\n");
    EXPECT_EQ(log->dead_letters_, 0);
    for (const LogPerShard::Committed& c : log->committed_) {
      if (c.batch.tables_size() == 0) continue;
      for (const change::v1::Change& change : c.batch.tables(0).changes()) {
        const sqlite::Value id = sqlite::Value::Integer(change.row(0).integer());
        EXPECT_EQ(c.shard, by_name.ShardOf("item", {id})) << id.DebugString();
      }
    }
  }
  raft::host::Env* const env;
  ShardRouter router_a{4}, router_b{4};
  std::unique_ptr<Node> a, b;
  std::unique_ptr<LogPerShard> log;
  ShardRouter by_name{4};  // Routes by the name given.
  std::vector<int64_t> ids;
};

TEST(ChangeShipperTest, RowsOfATableMadeHereWaitForItsCreateToApplyHereAndRouteAsEverywhere) {
  // The table routes by `item` on every node (table_renames.h): rows `a` read before node 2's
  // CREATE applied there would have gone by `Item`, to other shards.
  CaseRace race("ship-case", raft::host::Env::Default());
  SchemaEpochs epochs(4);
  auto shipper = race.OpenShipper(&epochs);
  ASSERT_TRUE(shipper.ok()) << shipper.status();
  race.MakeItem();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  // Its CREATE committed (already so on node 2); its rows wait for this node's shard 0.
  ASSERT_EQ(race.log->committed_.size(), 2u);
  EXPECT_EQ(race.log->proposals_, 1);
  EXPECT_EQ(race.log->schema_conflicts_, 0);
  race.CatchUp(epochs);
  Drain(**shipper);
  race.ExpectRoutedByItem();
}

TEST(ChangeShipperTest, RowsOfATableMadeHereWaitForItsCreateToApplyHerePastTheEpochWaitBound) {
  // Shard 0 lags here longer than other waits are bounded (halted, say): the table's route is
  // still not known here, and rows sent by this node's spelling would sit in other shards than
  // the same keys written elsewhere. They wait for as long, and the wait is told.
  raft::host::ManualClockEnv clock;
  CaseRace race("ship-case-lag", &clock);
  SchemaEpochs epochs(4);
  auto shipper = race.OpenShipper(&epochs);
  ASSERT_TRUE(shipper.ok()) << shipper.status();
  race.MakeItem();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  ASSERT_EQ(race.log->committed_.size(), 2u);  // Both CREATEs.
  clock.Advance(kEpochWaitBound + absl::Minutes(5));
  absl::StatusOr<PumpStats> stats;
  for (int i = 0; i < 5; ++i) {
    stats = (*shipper)->Pump();
    ASSERT_TRUE(stats.ok()) << stats.status();
  }
  EXPECT_EQ(race.RowBatches(), 0);
  EXPECT_EQ(stats->tables_waiting_for_route, 1);
  race.CatchUp(epochs);
  Drain(**shipper);
  EXPECT_EQ((*shipper)->Pump()->tables_waiting_for_route, 0);
  race.ExpectRoutedByItem();
}

TEST(ChangeShipperTest, RowsOfATableMadeHereWaitForItsCreateToApplyHereAcrossARestart) {
  // This node stops after its CREATE committed (and went into the baseline) and before its
  // shard 0 applied it: the restarted shipper finds no schema change to make, and must still
  // not read the table's rows until shard 0 applied that CREATE here.
  CaseRace race("ship-case-restart", raft::host::Env::Default());
  {
    SchemaEpochs epochs(4);
    auto shipper = race.OpenShipper(&epochs);
    ASSERT_TRUE(shipper.ok()) << shipper.status();
    race.MakeItem();
    for (int i = 0; i < 5; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
    ASSERT_EQ(race.log->committed_.size(), 2u);
    ASSERT_EQ(race.RowBatches(), 0);
    ASSERT_TRUE((*shipper)->Finish().ok());
  }
  SchemaEpochs epochs(4);  // Shard 0 applied nothing here.
  auto shipper = race.OpenShipper(&epochs);
  ASSERT_TRUE(shipper.ok()) << shipper.status();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  EXPECT_EQ(race.log->committed_.size(), 2u) << "no schema change again";
  EXPECT_EQ(race.RowBatches(), 0);
  race.CatchUp(epochs);
  Drain(**shipper);
  race.ExpectRoutedByItem();
}

TEST(ChangeShipperTest, ItsOwnCommittedSchemaChangeIsKeptAsTheSchemaEpoch) {
  // A restart reads rows under the epoch kept (schema_epochs.h): this node's own schema change
  // that committed is kept in the transaction that takes it into the baseline, before its shard
  // 0 applied it here (the stand-in log below applies without a state machine).
  ShardRouter router(4);
  Node a("ship-epoch-a", router), b("ship-epoch-b", router);
  LogPerShard log({&a, &b});
  SchemaEpochs epochs(4);
  auto shipper =
      ChangeShipper::Open(a.path, 1, router, &log, {.replicate_schema = true, .epochs = &epochs});
  ASSERT_TRUE(shipper.ok()) << shipper.status();
  log.Commit(0, "");  // shard 0 holds an entry before it
  ASSERT_TRUE(RunSqliteCli(a.path, "CREATE TABLE fresh (id INTEGER PRIMARY KEY, v TEXT);").ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  ASSERT_EQ(log.proposals_, 1);
  EXPECT_EQ(epochs.current(), 2u);
  EXPECT_EQ(*RunSqliteCli(a.path, "SELECT shard0_index FROM \"__marmot__schema_epoch\";"), "2\n");
}

// What a schema change lists as its origin's rows committed before it (shard -> index).
std::map<uint32_t, uint64_t> Listed(const change::v1::ChangeBatch& schema) {
  return {schema.rows_committed_through().begin(), schema.rows_committed_through().end()};
}

TEST(ChangeShipperTest, ASchemaChangeWaitsForTheRowsReadBeforeItAndListsWhereTheyCommitted) {
  // Issue 21 (B): rows this node committed before its schema change apply before it everywhere.
  ShardRouter router(4);
  Node a("ship-before-a", router), b("ship-before-b", router);
  LogPerShard log({&a, &b});
  SchemaEpochs epochs(4);
  auto shipper =
      ChangeShipper::Open(a.path, 1, router, &log, {.replicate_schema = true, .epochs = &epochs});
  ASSERT_TRUE(shipper.ok()) << shipper.status();
  // Given rows of items in flight (held, not committed),
  log.hold_ = true;
  ASSERT_TRUE(RunSqliteCli(a.path,
                           "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                           "WHERE i < 40) INSERT INTO items SELECT i, 'item ' || i, i FROM n;")
                  .ok());
  ASSERT_TRUE((*shipper)->Pump().ok());
  const int rows_proposed = log.proposals_;
  ASSERT_GT(rows_proposed, 1);
  // when a column of items is dropped, and rows written after it,
  ASSERT_TRUE(RunSqliteCli(a.path,
                           "ALTER TABLE items DROP COLUMN qty;"
                           "INSERT INTO kv VALUES ('after', 1);")
                  .ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  // the schema change is not proposed while they are in flight, nor are rows read after it;
  EXPECT_EQ(log.proposals_, rows_proposed);
  // once they committed it goes (alone),
  log.ReleaseHeld();
  ASSERT_TRUE((*shipper)->Pump().ok());
  EXPECT_EQ(log.proposals_, rows_proposed + 1);
  std::map<uint32_t, uint64_t> expected;  // shard -> the index of the rows there
  for (const LogPerShard::Committed& c : log.committed_) {
    ASSERT_TRUE(c.batch.schema_changes().empty());
    if (c.shard != 0) expected[static_cast<uint32_t>(c.shard)] = c.index;
  }
  ASSERT_FALSE(expected.empty());
  log.hold_ = false;
  log.ReleaseHeld();
  Drain(**shipper);
  // listing, per shard but 0, the index of the last rows of this node committed there; the rows
  // read after it follow it.
  ASSERT_GT(log.committed_.size(), static_cast<size_t>(rows_proposed));
  const change::v1::ChangeBatch& schema = log.committed_[rows_proposed].batch;
  ASSERT_EQ(schema.schema_changes_size(), 1);
  EXPECT_EQ(Listed(schema), expected);
  ASSERT_EQ(log.committed_.size(), static_cast<size_t>(rows_proposed + 2));
  EXPECT_EQ(log.committed_.back().batch.tables(0).table(), "kv");
  EXPECT_EQ(*RunSqliteCli(b.path, "SELECT count(*) FROM items; SELECT * FROM kv;"),
            "40\nafter|1\n");
}

TEST(ChangeShipperTest, ASchemaChangeWaitsForRowsThatDoNotCommitAtMostTheEpochWaitBound) {
  raft::host::ManualClockEnv clock;
  ShardRouter router(4);
  Node a("ship-before-bound-a", router), b("ship-before-bound-b", router);
  LogPerShard log({&a, &b});
  SchemaEpochs epochs(4);
  auto shipper = ChangeShipper::Open(a.path, 1, router, &log,
                                     {.env = &clock, .replicate_schema = true, .epochs = &epochs});
  ASSERT_TRUE(shipper.ok()) << shipper.status();
  // Given a row of a shard other than 0 that does not commit (its shard has no leader),
  int64_t id = 1;
  while (router.ShardOf("items", {sqlite::Value::Integer(id)}) == 0) ++id;
  log.hold_shard_ = router.ShardOf("items", {sqlite::Value::Integer(id)});
  ASSERT_TRUE(
      RunSqliteCli(a.path, absl::StrCat("INSERT INTO items VALUES (", id, ", 'x', 1);")).ok());
  ASSERT_TRUE((*shipper)->Pump().ok());
  ASSERT_EQ(log.proposals_, 1);
  // a schema change made then waits for it,
  ASSERT_TRUE(RunSqliteCli(a.path, "CREATE TABLE fresh (id INTEGER PRIMARY KEY);").ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  clock.Advance(kEpochWaitBound - absl::Milliseconds(1));
  ASSERT_TRUE((*shipper)->Pump().ok());
  EXPECT_EQ(log.proposals_, 1);
  // but no longer than the bound other nodes wait for rows too.
  clock.Advance(absl::Milliseconds(1));
  ASSERT_TRUE((*shipper)->Pump().ok());
  EXPECT_EQ(log.proposals_, 2);
  EXPECT_EQ(*RunSqliteCli(b.path, "SELECT count(*) FROM sqlite_master WHERE name = 'fresh';"),
            "1\n");
}

TEST(ChangeShipperTest, ASchemaChangeListsWhatEveryShardHadAppliedHere) {
  // The commit indexes of the rows a run before committed are not kept: what the shards applied
  // here by the first schema change after the start stands for them.
  ShardRouter router(4);
  Node a("ship-restart-a", router), b("ship-restart-b", router);
  LogPerShard log({&a, &b});
  SchemaEpochs epochs(4);
  epochs.Applied(1, 7);
  auto shipper =
      ChangeShipper::Open(a.path, 1, router, &log, {.replicate_schema = true, .epochs = &epochs});
  ASSERT_TRUE(shipper.ok()) << shipper.status();
  epochs.Applied(3, 12);  // the host replays its log
  ASSERT_TRUE(RunSqliteCli(a.path, "CREATE TABLE fresh (id INTEGER PRIMARY KEY);").ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  ASSERT_EQ(log.committed_.size(), 1u);
  EXPECT_EQ(Listed(log.committed_[0].batch), (std::map<uint32_t, uint64_t>{{1, 7}, {3, 12}}));
  // Later, other nodes' entries applied here are listed too (schema hunt): a node where their
  // shard lags applies them before the change, as this node did (a row of a table dropped and
  // made again must not land in the new table there).
  epochs.Applied(2, 50);
  ASSERT_TRUE(RunSqliteCli(a.path, "CREATE TABLE fresher (id INTEGER PRIMARY KEY);").ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  ASSERT_EQ(log.committed_.size(), 2u);
  EXPECT_EQ(Listed(log.committed_[1].batch),
            (std::map<uint32_t, uint64_t>{{1, 7}, {2, 50}, {3, 12}}));
}

TEST(ChangeShipperTest, ATableChangedWhileItsCreateIsInFlightGoesAsAChangeOfWhatWasSent) {
  // Regression (Django's migrate, hunt): a table made and then changed again before its CREATE
  // committed went as a second CREATE; every node, its origin too, reported a conflict.
  ShardRouter router(4);
  Node a("ship-inflight-a", router), b("ship-inflight-b", router);
  a.applier->set_local_node(1);
  LogPerShard log({&a, &b});
  log.hold_shard_ = 0;
  auto shipper = ChangeShipper::Open(a.path, 1, router, &log, {.replicate_schema = true});
  ASSERT_TRUE(shipper.ok()) << shipper.status();
  ASSERT_TRUE(RunSqliteCli(a.path, "CREATE TABLE fresh (id INTEGER PRIMARY KEY, v TEXT);").ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  ASSERT_EQ(log.proposals_, 1);
  // While it is in flight, the table is made again with another type of column, as Django's
  // migrations do.
  ASSERT_TRUE(RunSqliteCli(a.path,
                           "BEGIN; CREATE TABLE new_fresh (id INTEGER PRIMARY KEY, v BLOB);"
                           "DROP TABLE fresh; ALTER TABLE new_fresh RENAME TO fresh; COMMIT;")
                  .ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  EXPECT_EQ(log.proposals_, 1);
  log.hold_shard_ = -1;
  log.ReleaseHeld();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  // No second CREATE: the table made again goes as that, from what was sent.
  EXPECT_EQ(log.proposals_, 2);
  EXPECT_EQ(*RunSqliteCli(b.path, "SELECT sql FROM sqlite_master WHERE name = 'fresh';"),
            "CREATE TABLE \"fresh\" (id INTEGER PRIMARY KEY, v BLOB)\n");
  EXPECT_EQ(log.schema_conflicts_, 0);
  EXPECT_EQ(log.dead_letters_, 0);
}

TEST(ChangeShipperTest, AMigrationGoesOnceTheSchemaStoodStillAsWhatItMadeAndItsRowsAfter) {
  // Every pod running the same migration at once (Django's migrate on every node): each step
  // sent as it was made met the other nodes' later steps of the same migration there.
  raft::host::ManualClockEnv clock;
  ShardRouter router(4);
  Node a("ship-quiet-a", router), b("ship-quiet-b", router);
  LogPerShard log({&a, &b});
  auto shipper = ChangeShipper::Open(
      a.path, 1, router, &log,
      {.env = &clock, .replicate_schema = true, .schema_quiet = absl::Seconds(1)});
  ASSERT_TRUE(shipper.ok()) << shipper.status();
  auto capture = [&] {
    // As the capture keeper does for a table made while marmot runs.
    auto db = sqlite::Database::Open(a.path);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(sqlite::InstallCapture(*db, {.backfill_new_tables = true}).ok());
  };
  // Given a migration that makes a table, and a row of another table written meanwhile
  ASSERT_TRUE(RunSqliteCli(a.path,
                           "CREATE TABLE fresh (id INTEGER PRIMARY KEY, v TEXT);"
                           "INSERT INTO kv VALUES ('during', 1);")
                  .ok());
  capture();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  // When it makes the table again 600 ms later, and writes its rows
  clock.Advance(absl::Milliseconds(600));
  ASSERT_TRUE(RunSqliteCli(a.path,
                           "BEGIN; CREATE TABLE new_fresh (id INTEGER PRIMARY KEY, v BLOB);"
                           "DROP TABLE fresh; ALTER TABLE new_fresh RENAME TO fresh; COMMIT;")
                  .ok());
  capture();
  ASSERT_TRUE(RunSqliteCli(a.path, "INSERT INTO fresh VALUES (1, x'01');").ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  clock.Advance(absl::Milliseconds(900));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  // Then nothing went until the schema stood still for a second, rows neither
  EXPECT_EQ(log.proposals_, 0);
  // And then the table went as the migration left it, with the rows after it
  clock.Advance(absl::Milliseconds(100));
  Drain(**shipper);
  EXPECT_EQ(*RunSqliteCli(b.path, "SELECT sql FROM sqlite_master WHERE name = 'fresh';"),
            "CREATE TABLE \"fresh\" (id INTEGER PRIMARY KEY, v BLOB)\n");
  EXPECT_EQ(*RunSqliteCli(b.path, "SELECT id, hex(v) FROM fresh; SELECT v FROM kv;"), "1|01\n1\n");
  EXPECT_EQ(log.schema_conflicts_, 0);
  EXPECT_EQ(log.dead_letters_, 0);
}

TEST(ChangeShipperTest, ASchemaThatNeverStandsStillGoesAfterSchemaQuietAtMost) {
  raft::host::ManualClockEnv clock;
  ShardRouter router(4);
  Node a("ship-quiet-most-a", router), b("ship-quiet-most-b", router);
  LogPerShard log({&a, &b});
  auto shipper = ChangeShipper::Open(a.path, 1, router, &log,
                                     {.env = &clock,
                                      .replicate_schema = true,
                                      .schema_quiet = absl::Seconds(1),
                                      .schema_quiet_at_most = absl::Seconds(3)});
  ASSERT_TRUE(shipper.ok()) << shipper.status();
  ASSERT_TRUE(RunSqliteCli(a.path, "INSERT INTO kv VALUES ('row', 1);").ok());
  // Given an application that makes a table every 600 ms
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(RunSqliteCli(a.path, absl::StrCat("CREATE TABLE t", i, " (id INTEGER);")).ok());
    for (int j = 0; j < 3; ++j) ASSERT_TRUE((*shipper)->Pump().ok());
    EXPECT_EQ(log.proposals_, 0) << i;
    clock.Advance(absl::Milliseconds(600));
  }
  // When 3 s passed since it began
  ASSERT_TRUE(RunSqliteCli(a.path, "CREATE TABLE t5 (id INTEGER);").ok());
  Drain(**shipper);
  // Then its tables went all the same, and its rows
  EXPECT_EQ(*RunSqliteCli(b.path,
                          "SELECT count(*) FROM sqlite_master WHERE name LIKE 't_';"
                          "SELECT v FROM kv;"),
            "6\n1\n");
}

TEST(ChangeShipperTest, ATableMadeAndDroppedOverAndOverGoesAfterSchemaQuietAtMost) {
  // Regression (schema hunt): a scratch table made and dropped every second: each look that
  // found it gone ended the settling, and the next one began the bound anew, so the node held
  // the other nodes' changes for as long as the application went on.
  raft::host::ManualClockEnv clock;
  ShardRouter router(4);
  Node a("ship-churn-a", router), b("ship-churn-b", router);
  LogPerShard log({&a, &b});
  auto shipper = ChangeShipper::Open(a.path, 1, router, &log,
                                     {.env = &clock,
                                      .replicate_schema = true,
                                      .schema_quiet = absl::Seconds(1),
                                      .schema_quiet_at_most = absl::Seconds(3)});
  ASSERT_TRUE(shipper.ok()) << shipper.status();
  // Given an application that makes a table and drops it 500 ms later, every second
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(RunSqliteCli(a.path, "CREATE TABLE scratch (id INTEGER);").ok());
    for (int j = 0; j < 3; ++j) ASSERT_TRUE((*shipper)->Pump().ok());
    clock.Advance(absl::Milliseconds(500));
    ASSERT_TRUE(RunSqliteCli(a.path, "DROP TABLE scratch;").ok());
    for (int j = 0; j < 3; ++j) ASSERT_TRUE((*shipper)->Pump().ok());
    clock.Advance(absl::Milliseconds(500));
  }
  EXPECT_EQ(log.proposals_, 0);
  // When it makes it again, 3 s after it first did
  ASSERT_TRUE(RunSqliteCli(a.path, "CREATE TABLE scratch (id INTEGER);").ok());
  Drain(**shipper);
  // Then it goes as it is then, without waiting for a second of stillness
  EXPECT_GT(log.proposals_, 0);
  EXPECT_EQ(*RunSqliteCli(b.path, "SELECT count(*) FROM sqlite_master WHERE name = 'scratch';"),
            "1\n");
}

TEST(ChangeShipperTest, ARowMovedToAKeyOfAnotherShardAndThenReplacedAwayIsDeletedInBothShards) {
  // Regression (hunt): node 1 moved a row from key k1 to k2, then an INSERT OR REPLACE of row 5
  // removed it through the UNIQUE column (no trigger fires for that). Its change reads as a
  // delete; shipped only to k1's shard, node 1 kept k2 as "changed here, not applied yet" and
  // skipped every later change of k2 from other nodes.
  ShardRouter router(16);
  Node a("moved-away-a", router), b("moved-away-b", router);
  a.applier->set_local_node(1);
  b.applier->set_local_node(2);
  LogPerShard log({&a, &b});
  int k1 = 1, k2 = 2;
  while (router.ShardOf("uniq", {sqlite::Value::Integer(k2)}) ==
         router.ShardOf("uniq", {sqlite::Value::Integer(k1)}))
    ++k2;
  auto from_a = ChangeShipper::Open(a.path, 1, router, &log);
  auto from_b = ChangeShipper::Open(b.path, 2, router, &log);
  ASSERT_TRUE(from_a.ok() && from_b.ok());
  ASSERT_TRUE(
      RunSqliteCli(a.path,
                   absl::StrCat("BEGIN; INSERT INTO uniq VALUES (", k1,
                                ", 'a', 'one');"
                                "UPDATE uniq SET k = ",
                                k2, " WHERE k = ", k1,
                                ";"
                                "INSERT OR REPLACE INTO uniq VALUES (50, 'a', 'fifty'); COMMIT;"))
          .ok());
  Drain(**from_a);
  ASSERT_TRUE(
      RunSqliteCli(b.path, absl::StrCat("INSERT INTO uniq VALUES (", k2, ", 'b', 'from b');"))
          .ok());
  Drain(**from_b);
  const std::string dump = ".mode quote\nSELECT * FROM uniq ORDER BY k;";
  EXPECT_EQ(*RunSqliteCli(a.path, dump), absl::StrCat(k2, ",'b','from b'\n50,'a','fifty'\n"));
  EXPECT_EQ(*RunSqliteCli(b.path, dump), *RunSqliteCli(a.path, dump));
}

TEST(ChangeShipperTest, RowsAreMarkedDoneUpToTheFirstChangeNotCommitted) {
  // The shards' batches commit in any order; a row of the change log may go only once every
  // change read before it committed too, so that the log's committed prefix goes in one range.
  ShardRouter router(4);
  Node a("mark-prefix-a", router), b("mark-prefix-b", router);
  LogPerShard log({&a, &b});
  // Held: the shard of the first row that is not in row 1's shard. Its smallest id is also the
  // first change id that does not commit.
  auto shard_of = [&](int64_t id) { return router.ShardOf("items", {sqlite::Value::Integer(id)}); };
  int64_t first_held = 2;
  while (shard_of(first_held) == shard_of(1)) ++first_held;
  const int held = shard_of(first_held);
  log.hold_shard_ = held;
  auto shipper = ChangeShipper::Open(
      a.path, 1, router, &log,
      {.mark_quiet = absl::ZeroDuration(), .mark_interval = absl::ZeroDuration()});
  ASSERT_TRUE(shipper.ok());
  ASSERT_TRUE(
      RunSqliteCli(a.path,
                   "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)"
                   "  INSERT INTO items SELECT i, 'item ' || i, i FROM n;")
          .ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  const std::string count =
      "SELECT count(*), min(\"__marmot__id\") FROM \"__marmot__items_change_log\";";
  EXPECT_EQ(*RunSqliteCli(a.path, count),
            absl::StrCat(100 - first_held + 1, "|", first_held, "\n"));

  log.hold_shard_ = -1;
  log.ReleaseHeld();
  Drain(**shipper);
  EXPECT_EQ(*RunSqliteCli(a.path, count), "1|100\n");
  EXPECT_EQ(b.Dump(), a.Dump());
}

constexpr char kItemsLog[] = "SELECT count(*) FROM \"__marmot__items_change_log\";";
constexpr char kHundredItems[] =
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)"
    "  INSERT INTO items SELECT i, 'item ' || i, i FROM n;";

TEST(ChangeShipperTest, MarkingWaitsWhileTheApplicationWrites) {
  // The logs grew at the last look and no commit is old enough: deleting now would compete
  // with the application for the write lock. Finish (at stop) marks regardless.
  ShardRouter router(4);
  Node a("mark-wait-a", router), b("mark-wait-b", router);
  LogPerShard log({&a, &b});
  auto shipper = ChangeShipper::Open(a.path, 1, router, &log,
                                     {.mark_quiet = absl::Hours(1),
                                      .mark_delay = absl::Hours(1),
                                      .mark_interval = absl::ZeroDuration()});
  ASSERT_TRUE(shipper.ok());
  ASSERT_TRUE(RunSqliteCli(a.path, kHundredItems).ok());
  Drain(**shipper);
  EXPECT_EQ(b.Dump(), a.Dump());
  EXPECT_EQ(*RunSqliteCli(a.path, kItemsLog), "100\n");
  // What the control pane does not count as pending.
  EXPECT_EQ(
      absl::StrCat((*shipper)->CommittedThrough("items"), "\n"),
      *RunSqliteCli(a.path, "SELECT max(\"__marmot__id\") FROM \"__marmot__items_change_log\";"));
  EXPECT_EQ((*shipper)->CommittedThrough("kv"), 0);
  ASSERT_TRUE((*shipper)->Finish().ok());
  EXPECT_EQ(*RunSqliteCli(a.path, kItemsLog), "1\n");
}

// One node whose application wrote kHundredItems, and a shipper of it with `options`.
struct HundredItems {
  HundredItems(const std::string& label, ShipperOptions options) : a(label, router), log({&a}) {
    auto opened = ChangeShipper::Open(a.path, 1, router, &log, options);
    CHECK(opened.ok()) << opened.status();
    shipper = *std::move(opened);
    CHECK(RunSqliteCli(a.path, kHundredItems).ok());
  }
  std::string LogRows() { return *RunSqliteCli(a.path, kItemsLog); }
  ShardRouter router{4};
  Node a;
  LogPerShard log;
  std::unique_ptr<ChangeShipper> shipper;
};

TEST(ChangeShipperTest, ACommittedRowWaitsAtMostMarkDelay) {
  HundredItems n("mark-delay", {.mark_quiet = absl::Hours(1),
                                .mark_delay = absl::ZeroDuration(),
                                .mark_interval = absl::ZeroDuration()});
  Drain(*n.shipper);
  EXPECT_EQ(n.LogRows(), "1\n");
}

TEST(ChangeShipperTest, OneMarkingDeletesAtMostMarkRowsOfATable) {
  HundredItems n(
      "mark-rows",
      {.mark_quiet = absl::ZeroDuration(), .mark_interval = absl::ZeroDuration(), .mark_rows = 30});
  ASSERT_TRUE(n.shipper->Pump().ok());  // read, proposed, committed
  EXPECT_EQ(n.LogRows(), "100\n");
  ASSERT_TRUE(n.shipper->Pump().ok());  // the commits taken: one marking
  EXPECT_EQ(n.LogRows(), "70\n");
  ASSERT_TRUE(n.shipper->Pump().ok());  // the rest stays due
  EXPECT_EQ(n.LogRows(), "40\n");
  Drain(*n.shipper);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(n.shipper->Pump().ok());
  EXPECT_EQ(n.LogRows(), "1\n");
}

TEST(ChangeShipperTest, FailedProposalsAreRetriedInOrder) {
  ShardRouter router(4);
  Node a("retry-a", router), b("retry-b", router);
  LogPerShard log({&a, &b});
  log.fail_every_ = 3;
  auto shipper = ChangeShipper::Open(a.path, 1, router, &log,
                                     {.max_batch_changes = 7, .retry_delay = absl::ZeroDuration()});
  ASSERT_TRUE(shipper.ok());
  ASSERT_TRUE(RunSqliteCli(a.path, kWorkload).ok());
  Drain(**shipper);
  EXPECT_EQ(b.Dump(), a.Dump());
}

TEST(ChangeShipperTest, AFailedProposalWaitsRetryDelayBeforeItIsProposedAgain) {
  // Regression (issue 16): a shard without a leader refuses proposals at once, and the pump
  // proposed the same batch again at every round, over a million times in 20 s.
  raft::host::ManualClockEnv clock;
  ShardRouter router(1);
  Node a("retry-delay-a", router);
  LogPerShard log({&a});
  log.fail_every_ = 1;  // every proposal fails at once
  auto shipper = ChangeShipper::Open(a.path, 1, router, &log,
                                     {.retry_delay = absl::Milliseconds(300), .env = &clock});
  ASSERT_TRUE(shipper.ok());
  ASSERT_TRUE(RunSqliteCli(a.path, "INSERT INTO kv VALUES ('x', 1);").ok());
  // When the pump runs many rounds within the delay
  for (int i = 0; i < 50; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  clock.Advance(absl::Milliseconds(299));
  ASSERT_TRUE((*shipper)->Pump().ok());
  // Then the batch was proposed once
  EXPECT_EQ(log.proposals_, 1);
  // And once the delay passed, it is proposed again, and commits when a leader takes it
  clock.Advance(absl::Milliseconds(1));
  log.fail_every_ = 0;
  ASSERT_TRUE((*shipper)->Pump().ok());
  EXPECT_EQ(log.proposals_, 2);
  Drain(**shipper);
  EXPECT_EQ((*shipper)->buffered(), 0);
}

TEST(ChangeShipperTest, MarkingWaitsForAPauseOfMarkQuietOrAtMostMarkDelayAfterACommit) {
  raft::host::ManualClockEnv clock;
  HundredItems n("mark-quiet", {.mark_quiet = absl::Milliseconds(25),
                                .mark_delay = absl::Seconds(1),
                                .mark_interval = absl::ZeroDuration(),
                                .env = &clock});
  ASSERT_TRUE(n.shipper->Pump().ok());  // read, proposed, committed
  ASSERT_TRUE(n.shipper->Pump().ok());  // the commits taken; the logs grew a moment ago
  EXPECT_EQ(n.LogRows(), "100\n");
  // Given an application that pauses, marking waits for mark_quiet of it.
  clock.Advance(absl::Milliseconds(24));
  ASSERT_TRUE(n.shipper->Pump().ok());
  EXPECT_EQ(n.LogRows(), "100\n");
  clock.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(n.shipper->Pump().ok());
  EXPECT_EQ(n.LogRows(), "1\n");  // the newest row stays (change_shipper.h)
  // Given an application that writes at every round, marking waits mark_delay after the first
  // commit not marked, then marks regardless.
  for (int round = 1; round <= 12; ++round) {
    ASSERT_TRUE(RunSqliteCli(n.a.path,
                             absl::StrCat("INSERT INTO items VALUES (", 1000 + round, ", 'w', 1);"))
                    .ok());
    ASSERT_TRUE(n.shipper->Pump().ok());
    // The first round's commit is taken at round 2: due from then on.
    if (round < 12) {
      EXPECT_EQ(n.LogRows(), absl::StrCat(1 + round, "\n")) << "marked at round " << round;
    } else {
      // Every row but this round's (not committed yet) is marked.
      EXPECT_EQ(n.LogRows(), "1\n") << "the committed rows wait no longer than mark_delay";
    }
    clock.Advance(absl::Milliseconds(100));
  }
}

TEST(ChangeShipperTest, ChangesCommittedBeforeACrashAreNotAppliedTwice) {
  ShardRouter router(8);
  Node a("crash-a", router), b("crash-b", router);
  LogPerShard log({&a, &b});
  ASSERT_TRUE(RunSqliteCli(a.path, "INSERT INTO kv VALUES ('x', 1), ('y', 2);").ok());
  {
    // The shipper proposes; the entries commit, but it dies before hearing so.
    log.hold_ = true;
    auto shipper = ChangeShipper::Open(a.path, 1, router, &log);
    ASSERT_TRUE(shipper.ok());
    ASSERT_TRUE((*shipper)->Pump().ok());
    ASSERT_GT((*shipper)->in_flight(), 0);
    log.CommitHeldSilently();
    log.hold_ = false;
  }
  // Meanwhile B's application changes x; then A's marmot restarts and proposes again.
  ASSERT_TRUE(RunSqliteCli(b.path, "UPDATE kv SET v = 'b' WHERE k = 'x';").ok());
  auto restarted = ChangeShipper::Open(a.path, 1, router, &log);
  ASSERT_TRUE(restarted.ok());
  Drain(**restarted);
  EXPECT_EQ(log.duplicates_, 4);  // Two changes, skipped on both nodes.
  // B's later write was not overwritten by the replayed older one.
  EXPECT_EQ(*RunSqliteCli(b.path, "SELECT v FROM kv WHERE k = 'x';"), "b\n");
}

TEST(ChangeShipperTest, MemoryIsBoundedWhileProposalsDoNotCommit) {
  ShardRouter router(4);
  Node a("bound-a", router);
  LogPerShard log({&a});
  log.hold_ = true;  // Nothing ever commits.
  auto shipper = ChangeShipper::Open(a.path, 1, router, &log,
                                     {.max_batch_changes = 10, .max_buffered_changes = 100});
  ASSERT_TRUE(shipper.ok());
  ASSERT_TRUE(RunSqliteCli(a.path, kWorkload).ok());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE((*shipper)->Pump().ok());
  EXPECT_LE((*shipper)->buffered(), 100);
  EXPECT_GT((*shipper)->buffered(), 0);
  EXPECT_EQ((*shipper)->in_flight(), 4);  // One batch per shard, no more.
}

}  // namespace
}  // namespace marmot::replicator
