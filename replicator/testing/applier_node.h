// A node for the applier's tests: its own database with a schema of every kind of table,
// marmot's capture installed, and a ChangeApplier on it; plus the helpers those tests share
// (snapshots made and installed as streams, batches cut down to one change, the dead letters).
#ifndef MARMOT_REPLICATOR_TESTING_APPLIER_NODE_H_
#define MARMOT_REPLICATOR_TESTING_APPLIER_NODE_H_

#include <glog/logging.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "replicator/change_applier.h"
#include "replicator/change_batch.h"
#include "replicator/snapshot_stream.h"
#include "replicator/value_codec.h"
#include "sqlite/change_log.h"
#include "sqlite/schema.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::replicator::testing {

using sqlite::Value;

// What a node writes as its snapshot of `shard` (a stream of pieces), read back whole.
inline absl::StatusOr<change::v1::ShardSnapshot> CreateSnapshot(
    ChangeApplier& applier, int shard, size_t piece_bytes = kDefaultPieceBytes) {
  raft::host::StringSnapshotSink sink;
  ShardSnapshotWriter writer(sink, piece_bytes);
  if (absl::Status s = applier.CreateSnapshot(shard, writer); !s.ok()) return s;
  return ReadShardSnapshot(raft::host::StringSnapshotSource(sink.Take()));
}

// `from`'s snapshot of `shard` installed by `to` at `index`, as the stream it writes (what a
// ShardSnapshot message does not hold travels too: row versions, conflicts).
inline absl::StatusOr<InstallResult> CopySnapshot(ChangeApplier& from, ChangeApplier& to, int shard,
                                                  uint64_t index) {
  raft::host::StringSnapshotSink sink;
  ShardSnapshotWriter writer(sink);
  if (absl::Status s = from.CreateSnapshot(shard, writer); !s.ok()) return s;
  raft::host::StringSnapshotSource source(sink.Take());
  ShardSnapshotReader reader(source);
  return to.InstallSnapshot(reader, index);
}

// Installs `snap` as a node does: written as a stream of pieces, read from it.
inline absl::StatusOr<InstallResult> InstallSnapshot(ChangeApplier& applier,
                                                     const change::v1::ShardSnapshot& snap,
                                                     std::optional<uint64_t> index = std::nullopt,
                                                     size_t piece_bytes = kDefaultPieceBytes) {
  raft::host::StringSnapshotSink sink;
  if (absl::Status s = WriteShardSnapshot(snap, sink, piece_bytes); !s.ok()) return s;
  raft::host::StringSnapshotSource source(sink.Take());
  ShardSnapshotReader reader(source);
  return applier.InstallSnapshot(reader, index);
}

inline constexpr char kSchema[] =
    "CREATE TABLE \"order\" (id INTEGER PRIMARY KEY, name TEXT UNIQUE, price REAL, img BLOB);"
    "CREATE TABLE pair (a TEXT, b INTEGER, v, PRIMARY KEY (a, b)) WITHOUT ROWID;"
    "CREATE TABLE loose (x, y);"
    "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
    "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id));";

// `batch` as a node of an older version sends it: its changes name no version of their rows, so
// each applies over whatever its row holds (the later in the shard wins, no conflict).
inline change::v1::ChangeBatch WithoutVersions(change::v1::ChangeBatch batch) {
  for (change::v1::TableChanges& t : *batch.mutable_tables()) {
    for (change::v1::Change& c : *t.mutable_changes()) c.clear_prev();
  }
  return batch;
}

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
      for (sqlite::ChangeRecord& c : *changes) {
        // As the shipper sends it: a write over this node's own write names this node.
        if (c.prev.has_value() && c.prev->origin < 0) {
          c.prev = sqlite::RowVersionSeen{.origin = static_cast<int64_t>(origin)};
        }
        *out->add_changes() = ToWire(t, c);
      }
    }
    return batch;
  }

  // How many changes are kept as conflicts here.
  int64_t Conflicts() {
    auto n = db->QueryValue("SELECT count(*) FROM \"__marmot__conflicts\"");
    CHECK(n.ok()) << n.status();
    return n->integer();
  }

  // All rows of a table with their storage classes, for comparisons.
  std::string Dump(const std::string& table) {
    auto rows = db->QueryRows(
        absl::StrCat("SELECT rowid, * FROM ", sqlite::QuoteIdentifier(table), " ORDER BY 2, 3"));
    if (!rows.ok()) {  // WITHOUT ROWID
      rows = db->QueryRows(
          absl::StrCat("SELECT * FROM ", sqlite::QuoteIdentifier(table), " ORDER BY 1, 2"));
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
    return db
        ->QueryValue(absl::StrCat("SELECT count(*) FROM ",
                                  sqlite::QuoteIdentifier(sqlite::ChangeLogTableName(table))))
        ->integer();
  }

  ShardRouter router;
  std::string path;
  std::unique_ptr<sqlite::Database> db;
  std::unique_ptr<ChangeApplier> applier;
};

// The shard of row `id` of table `order` on `n`.
inline int OrderShard(const Node& n, int64_t id) {
  return n.router.ShardOf("order", {sqlite::Value::Integer(id)});
}

// The first id above `id` whose row of table `order` routes to another shard than row `id`'s.
inline int64_t OrderIdOfAnotherShard(const Node& n, int64_t id) {
  int64_t other = id + 1;
  while (OrderShard(n, other) == OrderShard(n, id)) ++other;
  return other;
}

// The batch with only change `id` of `table`.
inline change::v1::ChangeBatch OnlyChange(const change::v1::ChangeBatch& batch, int64_t id,
                                          const std::string& table = "pair") {
  change::v1::ChangeBatch one = batch;
  for (int i = one.tables_size() - 1; i >= 0; --i) {
    if (one.tables(i).table() != table) one.mutable_tables()->DeleteSubrange(i, 1);
  }
  CHECK_EQ(one.tables_size(), 1);
  auto* changes = one.mutable_tables(0)->mutable_changes();
  for (int i = changes->size() - 1; i >= 0; --i) {
    if (changes->Get(i).change_id() != id) changes->DeleteSubrange(i, 1);
  }
  CHECK_EQ(changes->size(), 1);
  return one;
}

// The rows `sql` reads on `n`: each value's DebugString and a space, a line per row.
inline std::string QueryText(Node& n, const std::string& sql) {
  auto rows = n.db->QueryRows(sql);
  CHECK(rows.ok()) << rows.status();
  std::string out;
  for (const auto& r : *rows) {
    for (const sqlite::Value& v : r) absl::StrAppend(&out, v.DebugString(), " ");
    out += "\n";
  }
  return out;
}

// The dead letters of a node, oldest first: "id tbl change_id error" per line.
inline std::string DeadLetters(Node& n) {
  return QueryText(n,
                   "SELECT id, tbl, change_id, error FROM \"__marmot__dead_letters\" ORDER BY id");
}

inline std::vector<int64_t> DeadLetterIds(Node& n) {
  auto rows = n.db->QueryRows("SELECT id FROM \"__marmot__dead_letters\" ORDER BY id");
  CHECK(rows.ok()) << rows.status();
  std::vector<int64_t> ids;
  for (const auto& r : *rows) ids.push_back(r[0].integer());
  return ids;
}

}  // namespace marmot::replicator::testing

#endif  // MARMOT_REPLICATOR_TESTING_APPLIER_NODE_H_
