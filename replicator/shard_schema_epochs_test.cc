// Schema epochs (schema_epochs.h) through ShardStateMachine, on real SQLite files: the epoch a
// node starts from after a restart is the newest schema change it kept, not shard 0's whole
// applied index; a snapshot carries its maker's epoch to the node that installs it (kept there
// too), and an older snapshot without one is read as before; a shard that waits for a schema
// epoch is counted in the metrics while it waits, and a wait that gave up after the bound is
// counted too.
#include <glog/logging.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "raft/host/env_manual_clock.h"
#include "replicator/change_applier.h"
#include "replicator/database_writer.h"
#include "replicator/replicator_metrics.h"
#include "replicator/schema_epochs.h"
#include "replicator/shard_router.h"
#include "replicator/shard_state_machine.h"
#include "replicator/snapshot_stream.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator {
namespace {

constexpr int kShards = 2;

// One node's database, writer and state machines of shards 0 and 1, with its schema epochs and
// metrics; Restart() makes them again on the same file, as a new process would.
class Node {
 public:
  explicit Node(const std::string& name)
      : path_(sqlite::testing::NewDatabase(name, "CREATE TABLE t (id INTEGER PRIMARY KEY, v)")) {
    Start();
  }

  void Start() {
    machines_.clear();
    rounds_.reset();
    writer_.reset();
    auto applier = ChangeApplier::Open(path_, router_);
    CHECK(applier.ok()) << applier.status();
    writer_ = std::make_shared<DatabaseWriter>(*std::move(applier));
    rounds_ = std::make_unique<ShardApplyRounds>(writer_.get());
    epochs_ = std::make_unique<SchemaEpochs>(kShards);
    metrics_ = std::make_unique<ReplicatorMetrics>(kShards);
    for (int shard = 0; shard < kShards; ++shard) {
      machines_.push_back(std::make_unique<ShardStateMachine>(
          shard, writer_,
          ShardStateMachine::Options{
              .metrics = metrics_.get(), .epochs = epochs_.get(), .env = &clock_}));
      machines_.back()->Open();
    }
  }
  void Restart() { Start(); }

  // One apply round of `entries` in `shard`, as the host runs it.
  absl::Status Apply(int shard, const std::vector<raft::host::AppliedEntry>& entries) {
    std::unique_ptr<raft::host::ApplyRound> round = rounds_->BeginRound();
    return machines_[shard]->Apply(entries, round.get());
  }
  std::string Snapshot(int shard) {
    raft::host::StringSnapshotSink out;
    std::unique_ptr<raft::host::ApplyRound> round = rounds_->BeginRound();
    absl::Status s = machines_[shard]->SaveSnapshot(out, round.get());
    CHECK(s.ok()) << s;
    return out.Take();
  }
  absl::Status Install(int shard, uint64_t index, const raft::host::SnapshotSource& snapshot) {
    std::unique_ptr<raft::host::ApplyRound> round = rounds_->BeginRound();
    return machines_[shard]->RecoverFromSnapshot(index, snapshot, round.get());
  }
  absl::Status Install(int shard, uint64_t index, const std::string& snapshot) {
    return Install(shard, index, raft::host::StringSnapshotSource(snapshot));
  }

  SchemaEpochs& epochs() { return *epochs_; }
  ReplicatorMetrics& metrics() { return *metrics_; }
  raft::host::ManualClockEnv& clock() { return clock_; }
  std::string Sql(const std::string& sql) {
    absl::StatusOr<std::string> out = sqlite::testing::RunSqliteCli(path_, sql);
    CHECK(out.ok()) << out.status();
    return *out;
  }

 private:
  const std::string path_;
  ShardRouter router_{kShards};
  raft::host::ManualClockEnv clock_;
  std::shared_ptr<DatabaseWriter> writer_;
  std::unique_ptr<ShardApplyRounds> rounds_;
  std::unique_ptr<SchemaEpochs> epochs_;
  std::unique_ptr<ReplicatorMetrics> metrics_;
  std::vector<std::unique_ptr<ShardStateMachine>> machines_;
};

// A snapshot that notes the installing node's epoch at every read: its last read is in the
// install's transaction, before it commits.
class WatchedSource : public raft::host::SnapshotSource {
 public:
  WatchedSource(std::string payload, const SchemaEpochs& epochs)
      : inner_(std::move(payload)), epochs_(epochs) {}
  uint64_t size() const override { return inner_.size(); }
  absl::Status ReadAt(uint64_t offset, size_t n, std::string* out) const override {
    last_seen_ = epochs_.current();
    return inner_.ReadAt(offset, n, out);
  }
  uint64_t last_seen() const { return last_seen_; }

 private:
  raft::host::StringSnapshotSource inner_;
  const SchemaEpochs& epochs_;
  mutable uint64_t last_seen_ = 0;
};

raft::host::AppliedEntry Entry(uint64_t index, const change::v1::ChangeBatch& batch) {
  return {.index = index, .term = 1, .data = batch.SerializeAsString()};
}

// Node 2 creates table `name` (a schema change, as shard 0 carries it).
change::v1::ChangeBatch CreateTable(const std::string& name) {
  change::v1::ChangeBatch batch;
  batch.set_origin_node(2);
  change::v1::SchemaChange* c = batch.add_schema_changes();
  c->set_kind(change::v1::SchemaChange::CREATE);
  c->set_type("table");
  c->set_name(name);
  c->set_sql("CREATE TABLE " + name + " (id INTEGER PRIMARY KEY, w)");
  return batch;
}

// Node 3 inserts row `id` into t, read under `epoch`.
change::v1::ChangeBatch Row(int64_t id, uint64_t epoch) {
  change::v1::ChangeBatch batch;
  batch.set_origin_node(3);
  batch.set_schema_epoch(epoch);
  change::v1::TableChanges* t = batch.add_tables();
  t->set_table("t");
  t->add_columns("id");
  t->add_columns("v");
  t->add_key_columns("id");
  change::v1::Change* c = t->add_changes();
  c->set_change_id(id);
  c->set_op(change::v1::OP_INSERT);
  c->add_row()->set_integer(id);
  c->add_row()->set_text("row");
  return batch;
}

// Entries from..to of shard 0 that carry no schema change (rows of t).
std::vector<raft::host::AppliedEntry> Rows(uint64_t from, uint64_t to) {
  std::vector<raft::host::AppliedEntry> entries;
  for (uint64_t i = from; i <= to; ++i) entries.push_back(Entry(i, Row(100 + i, 0)));
  return entries;
}

TEST(ShardSchemaEpochsTest, ARestartStartsFromTheNewestSchemaChangeNotFromTheWholeLog) {
  Node node("restart");
  // Given shard 0 applied a schema change at index 3, then rows up to index 9,
  ASSERT_TRUE(node.Apply(0, {Entry(2, Row(1, 0)), Entry(3, CreateTable("u"))}).ok());
  ASSERT_TRUE(node.Apply(0, Rows(4, 9)).ok());
  EXPECT_EQ(node.epochs().current(), 3u);
  // after a restart the node's rows carry the schema change's index, not shard 0's 9 entries.
  node.Restart();
  EXPECT_EQ(node.epochs().current(), 3u);
  EXPECT_EQ(node.Sql("SELECT shard0_index FROM \"__marmot__schema_epoch\";"), "3\n");
}

TEST(ShardSchemaEpochsTest, ADatabaseThatKeptNoEpochStartsFromTheAppliedIndexOnceAndKeepsIt) {
  Node node("upgrade");
  ASSERT_TRUE(node.Apply(0, {Entry(3, CreateTable("u"))}).ok());
  ASSERT_TRUE(node.Apply(0, Rows(4, 9)).ok());
  // Given a database of a version that kept no epoch,
  node.Sql("DELETE FROM \"__marmot__schema_epoch\";");
  // a start takes shard 0's applied index (every schema change up to it is here) and keeps it;
  node.Restart();
  EXPECT_EQ(node.epochs().current(), 9u);
  EXPECT_EQ(node.Sql("SELECT shard0_index FROM \"__marmot__schema_epoch\";"), "9\n");
  // a newer schema change moves it on.
  ASSERT_TRUE(node.Apply(0, {Entry(12, CreateTable("w"))}).ok());
  node.Restart();
  EXPECT_EQ(node.epochs().current(), 12u);
}

TEST(ShardSchemaEpochsTest, ASnapshotOfAnyShardCarriesItsMakersSchemaEpoch) {
  Node maker("maker");
  Node installer("installer");
  // Given a maker whose shard 0 applied a schema change at index 5 and whose shard 1 holds a
  // row at index 2,
  ASSERT_TRUE(maker.Apply(0, {Entry(5, CreateTable("u"))}).ok());
  ASSERT_TRUE(maker.Apply(1, {Entry(2, Row(1, 5))}).ok());
  const std::string snapshot = maker.Snapshot(1);
  {
    auto read = ReadShardSnapshot(raft::host::StringSnapshotSource(snapshot));
    ASSERT_TRUE(read.ok()) << read.status();
  }
  // when a node that has none of it installs the snapshot of shard 1,
  ASSERT_EQ(installer.epochs().current(), 0u);
  WatchedSource source(snapshot, installer.epochs());
  ASSERT_TRUE(installer.Install(1, 2, source).ok());
  // it has the table the schema change made, reads its rows under the maker's epoch (from
  // before the install committed), and keeps that epoch across a restart (its shard 0 applied
  // nothing).
  EXPECT_EQ(installer.Sql("SELECT count(*) FROM sqlite_master WHERE name = 'u';"), "1\n");
  EXPECT_EQ(source.last_seen(), 5u);
  EXPECT_EQ(installer.epochs().current(), 5u);
  installer.Restart();
  EXPECT_EQ(installer.epochs().current(), 5u);
}

TEST(ShardSchemaEpochsTest, AShard0SnapshotMovesTheEpochBeforeItsInstallCommits) {
  Node maker("maker0");
  Node installer("installer0");
  // Given a maker whose shard 0 applied a schema change at 5, then rows up to 9,
  ASSERT_TRUE(maker.Apply(0, {Entry(5, CreateTable("u"))}).ok());
  ASSERT_TRUE(maker.Apply(0, Rows(6, 9)).ok());
  // a node installing its shard 0 reads rows under the epoch of the schema change, from before
  // the install's transaction committed (a read of the new schema must carry it).
  WatchedSource source(maker.Snapshot(0), installer.epochs());
  ASSERT_TRUE(installer.Install(0, 9, source).ok());
  EXPECT_EQ(source.last_seen(), 5u);
  EXPECT_EQ(installer.epochs().current(), 5u);
}

TEST(ShardSchemaEpochsTest, ASnapshotWithoutAnEpochIsReadAsBefore) {
  // A snapshot of a version that wrote no epoch:
  auto old_snapshot = [](uint32_t shard, uint64_t applied_index) {
    change::v1::ShardSnapshot s;
    s.set_shard(shard);
    s.set_applied_index(applied_index);
    raft::host::StringSnapshotSink out;
    CHECK(WriteShardSnapshot(s, out).ok());
    return out.Take();
  };
  Node node("old-snapshots");
  // of shard 1: no epoch;
  ASSERT_TRUE(node.Install(1, 4, old_snapshot(1, 4)).ok());
  EXPECT_EQ(node.epochs().current(), 0u);
  // of shard 0: its applied index (its schema changes are not known one by one).
  ASSERT_TRUE(node.Install(0, 7, old_snapshot(0, 7)).ok());
  EXPECT_EQ(node.epochs().current(), 7u);
  node.Restart();
  EXPECT_EQ(node.epochs().current(), 7u);
}

TEST(ShardSchemaEpochsTest, AShardWaitingForASchemaEpochIsCountedWhileItWaits) {
  Node node("waits");
  ReplicatorMetrics& m = node.metrics();
  // Given rows read under epoch 4 while shard 0 here stands at 0: shard 1 waits, counted;
  absl::Status s = node.Apply(1, {Entry(1, Row(1, 4))});
  ASSERT_TRUE(raft::host::ShardWaitBound(s).has_value()) << s;
  EXPECT_EQ(m.schema_waiting_shards.Value(), 1);
  s = node.Apply(1, {Entry(1, Row(1, 4))});  // a look again changes nothing
  ASSERT_TRUE(raft::host::ShardWaitBound(s).has_value()) << s;
  EXPECT_EQ(m.schema_waiting_shards.Value(), 1);
  // once shard 0 got there, it applies and is not counted any more;
  ASSERT_TRUE(node.Apply(0, {Entry(4, CreateTable("u"))}).ok());
  ASSERT_TRUE(node.Apply(1, {Entry(1, Row(1, 4))}).ok());
  EXPECT_EQ(m.schema_waiting_shards.Value(), 0);
  EXPECT_EQ(m.schema_waits_given_up.Value(), 0);
  // rows of an epoch shard 0 never gets to here wait the bound, then apply: counted as given up.
  s = node.Apply(1, {Entry(2, Row(2, 9))});
  ASSERT_TRUE(raft::host::ShardWaitBound(s).has_value()) << s;
  EXPECT_EQ(m.schema_waiting_shards.Value(), 1);
  node.clock().Advance(kEpochWaitBound);
  ASSERT_TRUE(node.Apply(1, {Entry(2, Row(2, 9))}).ok());
  EXPECT_EQ(m.schema_waiting_shards.Value(), 0);
  EXPECT_EQ(m.schema_waits_given_up.Value(), 1);
  EXPECT_EQ(node.Sql("SELECT count(*) FROM t;"), "2\n");
}

// CreateTable(name) as its origin proposed it once its rows committed in `through` (shard ->
// index).
change::v1::ChangeBatch CreateTableAfter(const std::string& name,
                                         const std::map<uint32_t, uint64_t>& through) {
  change::v1::ChangeBatch batch = CreateTable(name);
  for (const auto& [shard, index] : through)
    (*batch.mutable_rows_committed_through())[shard] = index;
  return batch;
}

TEST(ShardSchemaEpochsTest, ASchemaChangeWaitsForTheRowsItsOriginCommittedBeforeIt) {
  Node node("rows-before");
  std::vector<int> woken;
  node.epochs().set_wake([&](int shard) { woken.push_back(shard); });
  // Given a schema change whose origin's rows committed in shard 1 up to index 3, and shard 1
  // here at 1,
  ASSERT_TRUE(node.Apply(1, {Entry(1, Row(1, 0))}).ok());
  const raft::host::AppliedEntry schema = Entry(2, CreateTableAfter("u", {{1, 3}}));
  // shard 0 waits, applying nothing of it (counted, and saying why);
  absl::Status s = node.Apply(0, {schema});
  ASSERT_TRUE(raft::host::ShardWaitBound(s).has_value()) << s;
  EXPECT_EQ(raft::host::ShardWaitEntry(s), 2u);
  EXPECT_NE(s.message().find("waits for shard 1 to apply index 3"), std::string::npos) << s;
  EXPECT_NE(s.message().find("rows its origin committed before it"), std::string::npos) << s;
  EXPECT_EQ(node.metrics().schema_waiting_shards.Value(), 1);
  EXPECT_EQ(node.Sql("SELECT count(*) FROM sqlite_master WHERE name = 'u';"), "0\n");
  EXPECT_EQ(node.epochs().applied(0), 0u);
  // once shard 1 applied those rows, shard 0 is woken and applies it.
  ASSERT_TRUE(node.Apply(1, {Entry(2, Row(2, 0))}).ok());
  EXPECT_TRUE(woken.empty());
  ASSERT_TRUE(node.Apply(1, {Entry(3, Row(3, 0))}).ok());
  EXPECT_EQ(woken, std::vector<int>{0});
  ASSERT_TRUE(node.Apply(0, {schema}).ok());
  EXPECT_EQ(node.Sql("SELECT count(*) FROM sqlite_master WHERE name = 'u';"), "1\n");
  EXPECT_EQ(node.Sql("SELECT count(*) FROM t;"), "3\n");
  EXPECT_EQ(node.metrics().schema_waiting_shards.Value(), 0);
  EXPECT_EQ(node.metrics().schema_waits_given_up.Value(), 0);
}

TEST(ShardSchemaEpochsTest, ASchemaChangeWaitsForItsRowsAtMostTheBoundAndOlderOnesNotAtAll) {
  Node node("rows-before-bound");
  // A schema change of an older version lists nothing: it applies at once;
  ASSERT_TRUE(node.Apply(0, {Entry(1, CreateTable("u"))}).ok());
  // one that lists this shard itself, or a shard this node does not have, waits for neither;
  ASSERT_TRUE(node.Apply(0, {Entry(2, CreateTableAfter("v", {{0, 9}, {kShards, 9}}))}).ok());
  // one whose rows never get here waits the bound, then applies: counted as given up.
  const raft::host::AppliedEntry schema = Entry(3, CreateTableAfter("w", {{1, 5}}));
  absl::Status s = node.Apply(0, {schema});
  ASSERT_TRUE(raft::host::ShardWaitBound(s).has_value()) << s;
  node.clock().Advance(kEpochWaitBound);
  ASSERT_TRUE(node.Apply(0, {schema}).ok());
  EXPECT_EQ(node.metrics().schema_waits_given_up.Value(), 1);
  EXPECT_EQ(node.metrics().schema_waiting_shards.Value(), 0);
  EXPECT_EQ(node.Sql("SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_master "
                     "WHERE name IN ('u', 'v', 'w') ORDER BY name);"),
            "u,v,w\n");
  // Review: while shard 1 has not moved since, the next schema change that needs more of it
  // does not wait the bound again (a migration of many changes waited it for each);
  ASSERT_TRUE(node.Apply(0, {Entry(4, CreateTableAfter("x", {{1, 6}}))}).ok());
  EXPECT_EQ(node.metrics().schema_waits_given_up.Value(), 1);
  // once it moved, one that needs more than it has waits again.
  ASSERT_TRUE(node.Apply(1, {Entry(1, Row(1, 0))}).ok());
  absl::Status again = node.Apply(0, {Entry(5, CreateTableAfter("y", {{1, 7}}))});
  EXPECT_TRUE(raft::host::ShardWaitBound(again).has_value()) << again;
}

}  // namespace
}  // namespace marmot::replicator
