// Writes the seed corpus of every fuzz target (tests/fuzz/corpus/<target>/) from encodings the
// code itself produces: Raft traffic of a real three-node group (raft/testing), cut into batches
// and pieces by the real PeerOutbox; change batches captured from real SQLite writes of every
// kind by the real capture, framed by the real proposal codec; shard snapshots made by the real
// applier. Run it again after a wire format changes:
//
//   bazel run //tests/fuzz:make_corpus -- --out=$PWD/tests/fuzz/corpus
//
// It replaces the files it writes and leaves others (inputs added by hand as regression tests of
// findings) alone.
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gflags/gflags.h"
#include "glog/logging.h"
#include "proto/change.pb.h"
#include "raft/host/message_pieces.h"
#include "raft/host/proposal_codec.h"
#include "raft/host/snapshot_io.h"
#include "raft/host/snapshot_receipt.h"
#include "raft/testing/cluster.h"
#include "replicator/change_applier.h"
#include "replicator/change_batch.h"
#include "replicator/snapshot_stream.h"
#include "sqlite/change_log.h"
#include "sqlite/schema.h"
#include "tests/fuzz/fuzz_input.pb.h"
#include "tests/fuzz/fuzz_replica.h"

DEFINE_string(out, "", "folder that gets one subfolder of seeds per fuzz target");

namespace marmot::fuzz {
namespace {

namespace rv1 = ::marmot::raft::v1;
namespace tv1 = ::marmot::raft::transport::v1;
namespace cv1 = ::marmot::change::v1;

void Write(const std::string& target, const std::string& name, const std::string& bytes) {
  const std::filesystem::path dir = std::filesystem::path(FLAGS_out) / target;
  std::filesystem::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out << bytes;
  CHECK(out.good()) << "cannot write " << (dir / name);
}

// ---------------------------------------------------------------------------------------------
// Raft traffic.

// A three-node group in which node 2 receives everything recorded: each message delivered to
// node 2, with the ticks node 2 had since the previous one.
class Recorder {
 public:
  Recorder() {
    cluster_.AddEmptyNode(4);
    Listen();
  }

  raft::testing::Cluster& cluster() { return cluster_; }
  void TickAll(int n) {
    for (int i = 0; i < n; ++i) {
      ++ticks_;
      cluster_.TickAll(1);
    }
  }
  void Heal() {
    cluster_.Heal();
    Listen();
  }
  // What node 2 received since the last Take().
  inputs::RaftStepInput Take() { return std::exchange(steps_, {}); }
  // Every message node 1 sent to node 2, ever.
  const std::vector<rv1::Message>& one_to_two() const { return one_to_two_; }

 private:
  void Listen() {
    cluster_.SetFilter([this](const rv1::Message& m) {
      if (m.to() != 2) return true;
      auto* step = steps_.add_steps();
      step->set_ticks(std::exchange(ticks_, 0));
      *step->mutable_message() = m;
      if (m.from() == 1) one_to_two_.push_back(m);
      return true;
    });
  }

  raft::testing::Cluster cluster_{3};
  inputs::RaftStepInput steps_;
  std::vector<rv1::Message> one_to_two_;
  int ticks_ = 0;
};

// Entry data as NodeHost proposes it: a ChangeBatch framed by the proposal codec.
std::string Proposal(uint64_t id, const std::string& batch) {
  return raft::host::EncodeSingle(1, id, batch);
}

void RaftSeeds(const std::vector<std::string>& batches, std::vector<rv1::Message>* traffic) {
  Recorder r;
  raft::testing::Cluster& c = r.cluster();
  c.ElectLeader(1);
  for (size_t i = 0; i < batches.size(); ++i) CHECK(c.Propose(1, Proposal(i + 1, batches[i])).ok());
  r.TickAll(4);
  Write("raft_step", "election_and_appends", r.Take().SerializeAsString());

  CHECK(c.ProposeConfChange(1, rv1::CONF_CHANGE_ADD_LEARNER, 4).ok());
  r.TickAll(3);
  CHECK(c.ProposeConfChange(1, rv1::CONF_CHANGE_ADD_NODE, 4).ok());
  r.TickAll(3);
  CHECK(c.ProposeConfChange(1, rv1::CONF_CHANGE_REMOVE_NODE, 3).ok());
  r.TickAll(3);
  Write("raft_step", "membership_changes", r.Take().SerializeAsString());

  // Node 2 falls behind a compacted log and catches up from a snapshot.
  c.Isolate(2);
  for (int i = 0; i < 20; ++i) {
    CHECK(c.Propose(1, Proposal(100 + i, batches[i % batches.size()])).ok());
  }
  c.node(1).SnapshotAndCompact(2);
  r.Heal();
  r.TickAll(6);
  Write("raft_step", "snapshot_catch_up", r.Take().SerializeAsString());

  // A large entry, then node 2 asks for a read and takes over the leadership.
  CHECK(c.Propose(1, Proposal(200, std::string(3000, 'x') + batches[0])).ok());
  (void)c.raw(2).ReadIndex("read-1");
  c.Settle();
  (void)c.raw(1).TransferLeader(2);
  c.Settle();
  r.TickAll(4);
  CHECK(c.Propose(2, Proposal(201, batches.back())).ok());
  r.TickAll(2);
  Write("raft_step", "read_and_transfer", r.Take().SerializeAsString());
  *traffic = r.one_to_two();
}

// ---------------------------------------------------------------------------------------------
// The transport.

// Node 1's writes of `messages` to node 2, cut by a real outbox at `batch_bytes`.
inputs::StreamInput Written(const std::vector<rv1::Message>& messages, size_t batch_bytes) {
  raft::host::PeerOutboxOptions o;
  o.batch_bytes = batch_bytes;
  raft::host::PeerOutbox outbox(o);
  inputs::StreamInput in;
  for (const rv1::Message& m : messages) CHECK(outbox.Add(m));
  tv1::MessageBatch b;
  while (!outbox.empty()) {
    while (outbox.NextBatch(&b)) *in.add_batches() = b;
    if (outbox.NextPiece(&b)) *in.add_batches() = b;
  }
  for (auto& batch : *in.mutable_batches()) {
    batch.set_from_node(1);
    batch.set_to_node(2);
  }
  return in;
}

void TransportSeeds(const std::vector<rv1::Message>& traffic, const std::string& snapshot_payload) {
  Write("stream_intake", "traffic_4k_batches", Written(traffic, 4096).SerializeAsString());
  Write("stream_intake", "traffic_512b_pieces", Written(traffic, 512).SerializeAsString());
  // The same traffic on a stream of another peer: every message claims a sender it is not.
  inputs::StreamInput other = Written(traffic, 512);
  for (auto& b : *other.mutable_batches()) b.set_from_node(3);
  Write("stream_intake", "another_peers_stream", other.SerializeAsString());

  inputs::OutboxInput out;
  out.set_batch_bytes(1024);
  out.set_drain_every(3);
  for (const rv1::Message& m : traffic) *out.add_messages() = m;
  Write("outbox_pieces", "traffic_1k_drain_3", out.SerializeAsString());
  out.set_batch_bytes(100);
  out.set_drain_every(0);
  Write("outbox_pieces", "traffic_100b_drain_at_end", out.SerializeAsString());

  // A snapshot call as GrpcTransport's sender makes it (proto/transport.proto): the MSG_SNAP
  // node 1 sent without its payload, then the payload in chunks.
  rv1::Message header;
  for (const rv1::Message& m : traffic) {
    if (m.type() == rv1::MSG_SNAP) header = m;
  }
  CHECK_EQ(header.type(), rv1::MSG_SNAP) << "the traffic has no snapshot";
  header.mutable_snapshot()->clear_data();
  auto call = [&](const std::string& payload, size_t chunk_bytes) {
    inputs::SnapshotCallInput in;
    size_t off = 0;
    do {
      tv1::SnapshotChunk* c = in.add_chunks();
      if (off == 0) {
        c->set_from_node(1);
        c->set_to_node(2);
        *c->mutable_header() = header;
        c->set_total_size(payload.size());
        c->set_checksum(raft::host::PayloadChecksum(raft::host::kPayloadChecksumSeed,
                                                    payload.data(), payload.size()));
        c->mutable_handshake()->set_shards(FuzzReplica::kShards);
      }
      const size_t n = std::min(chunk_bytes, payload.size() - off);
      c->set_offset(off);
      c->set_data(payload.substr(off, n));
      off += n;
      c->set_last(off == payload.size());
    } while (off < payload.size());
    return in.SerializeAsString();
  };
  Write("snapshot_receipt", "shard_snapshot_512b_chunks", call(snapshot_payload, 512));
  Write("snapshot_receipt", "empty_payload", call("", 512));
}

// ---------------------------------------------------------------------------------------------
// The replicator.

std::unique_ptr<sqlite::Database> Open(const std::string& path) {
  auto db = sqlite::Database::Open(path);
  CHECK(db.ok()) << db.status();
  return std::make_unique<sqlite::Database>(*std::move(db));
}

void Exec(sqlite::Database& db, const std::string& sql) {
  absl::Status s = db.Exec(sql);
  CHECK(s.ok()) << s << "\n" << sql;
}

// A node's database and what of its change logs was read already.
struct Node {
  Node(uint64_t id, std::string path) : id(id), path(std::move(path)), db(Open(this->path)) {}

  // Every change captured since the last call, as one batch of this node.
  cv1::ChangeBatch Captured() {
    cv1::ChangeBatch batch;
    batch.set_origin_node(id);
    auto listing = sqlite::ListUserTables(*db);
    CHECK(listing.ok()) << listing.status();
    for (const sqlite::TableSchema& t : listing->tables) {
      auto changes = sqlite::ReadChanges(*db, t, read[t.name], 1000000);
      CHECK(changes.ok()) << changes.status();
      if (changes->empty()) continue;
      cv1::TableChanges* out = batch.add_tables();
      *out = replicator::TableHeader(t);
      for (const sqlite::ChangeRecord& c : *changes) *out->add_changes() = replicator::ToWire(t, c);
      read[t.name] = changes->back().id;
    }
    return batch;
  }

  uint64_t id;
  std::string path;
  std::unique_ptr<sqlite::Database> db;
  std::map<std::string, int64_t> read;
};

struct ReplicatorSeeds {
  std::vector<std::string> batches;  // serialized ChangeBatches
  std::string snapshot;              // a streamed snapshot of shard 0 with dead letters
};

// The shard's snapshot as `applier` streams it (replicator/snapshot_stream.h), in small pieces
// so that a payload holds several.
std::string StreamedSnapshot(replicator::ChangeApplier& applier, int shard) {
  raft::host::StringSnapshotSink sink;
  replicator::ShardSnapshotWriter writer(sink, 64);
  absl::Status s = applier.CreateSnapshot(shard, writer);
  CHECK(s.ok()) << s;
  return sink.Take();
}

ReplicatorSeeds ChangeSeeds(const std::string& dir) {
  ReplicatorSeeds out;
  auto batch = [&](const std::string& name, const cv1::ChangeBatch& b) {
    CHECK_GT(b.tables_size(), 0) << name;
    std::string bytes = b.SerializeAsString();
    Write("change_batch", name, bytes);
    out.batches.push_back(std::move(bytes));
  };
  // Node 1: the replica's schema and rows; writes of every kind.
  MakeReplicaDatabase(dir + "/node-1.db");
  Node one(1, dir + "/node-1.db");
  Exec(*one.db,
       "INSERT INTO \"order\" VALUES (10, 'ten', 3.0, x'0a0b');"
       "INSERT INTO pair VALUES ('n', 1, 'x');"
       "INSERT INTO loose VALUES (7, 'seven');"
       "INSERT INTO \"we\"\"ird t\" VALUES ('z', 26);"
       "INSERT INTO desc_key VALUES (9, 'nine');"
       "INSERT INTO gen (id, a) VALUES (3, 7);"
       "INSERT INTO parent VALUES (3); INSERT INTO child VALUES (4, 3);"
       "INSERT INTO seq (v) VALUES ('s3');");
  batch("inserts", one.Captured());
  Exec(*one.db,
       "UPDATE \"order\" SET price = price + 1;"
       "UPDATE pair SET v = x'00ff' WHERE a = 'k';"
       "UPDATE loose SET y = 3 WHERE x = 1.5;"
       "UPDATE gen SET a = NULL WHERE id = 1;");
  batch("updates", one.Captured());
  Exec(*one.db,
       "UPDATE \"order\" SET id = 40 WHERE id = 4;"
       "UPDATE pair SET b = 5 WHERE a = 'l';"
       "UPDATE \"we\"\"ird t\" SET k = 'q' WHERE k = 'a';"
       "UPDATE desc_key SET id = -6 WHERE id = -5;");
  batch("key_changes", one.Captured());
  Exec(*one.db,
       "DELETE FROM \"order\" WHERE id = 3;"
       "DELETE FROM pair WHERE a = x'6b';"
       "DELETE FROM loose WHERE y IS NULL;"
       "DELETE FROM parent WHERE id = 1;");
  batch("deletes", one.Captured());
  // Values of every storage class at their edges, in one transaction over several tables.
  Exec(*one.db,
       "BEGIN;"
       "INSERT INTO loose VALUES (CAST(x'ff00fe' AS TEXT), x'');"
       "INSERT INTO loose VALUES (9223372036854775807, -9223372036854775808);"
       "INSERT INTO loose VALUES (-0.0, 1e308);"
       "INSERT INTO loose VALUES ('', 4.9e-324);"
       "INSERT INTO pair VALUES ('', 0, '');"
       "INSERT INTO \"we\"\"ird t\" VALUES ('\xc3\xa9t\xc3\xa9', 1);"
       "COMMIT;");
  batch("value_edges", one.Captured());
  // A name that another row holds on the other nodes: the applied row replaces it.
  Exec(*one.db,
       "UPDATE \"order\" SET name = 'two!' WHERE id = 2;"
       "UPDATE \"order\" SET name = 'two' WHERE id = 1;");
  batch("unique_clash", one.Captured());

  // Schema changes (shard 0's entries): a table made, columns added, renamed and dropped, and a
  // change read before the rename, which applies through the column history.
  Exec(*one.db, "UPDATE \"order\" SET name = 'read before the rename' WHERE id = 2;");
  {
    cv1::ChangeBatch schema = one.Captured();
    auto change = [&](cv1::SchemaChange::Kind kind, const std::string& name, const std::string& sql,
                      std::vector<std::string> columns) {
      cv1::SchemaChange& c = *schema.add_schema_changes();
      c.set_kind(kind);
      c.set_type("table");
      c.set_name(name);
      c.set_sql(sql);
      for (std::string& column : columns) c.add_columns(std::move(column));
    };
    change(cv1::SchemaChange::CREATE, "fresh", "CREATE TABLE fresh (id INTEGER PRIMARY KEY, v)",
           {});
    change(cv1::SchemaChange::ADD_COLUMNS, "order",
           "CREATE TABLE \"order\" (id INTEGER PRIMARY KEY, name TEXT UNIQUE, price REAL CHECK "
           "(price >= 0),\n                      img BLOB, note TEXT DEFAULT 'n')",
           {"note TEXT DEFAULT 'n'"});
    change(cv1::SchemaChange::RENAME_COLUMN, "order", "", {"name", "title"});
    change(cv1::SchemaChange::DROP_COLUMNS, "loose", "CREATE TABLE loose (x)", {"y"});
    batch("schema_changes", schema);
  }

  // Node 3's schema drifted: a column and a table the others lack. Its changes there cannot apply.
  MakeReplicaDatabase(dir + "/node-3.db");
  Node three(3, dir + "/node-3.db");
  Exec(*three.db,
       "ALTER TABLE loose ADD COLUMN z; CREATE TABLE extra (id INTEGER PRIMARY KEY, v);");
  CHECK(sqlite::InstallCapture(*three.db).ok());
  three.Captured();  // what the new capture copied
  Exec(*three.db,
       "INSERT INTO loose VALUES (1, 2, 3); INSERT INTO extra VALUES (1, 'e');"
       "INSERT INTO \"order\" VALUES (30, 'thirty', 30, NULL);");
  const cv1::ChangeBatch drift = three.Captured();
  batch("schema_drift", drift);

  // Node 2 (the fuzz targets' node): its own pending changes coming back committed.
  {
    FuzzReplica replica;
    replica.Fresh();
    Node two(2, replica.path());
    batch("own_changes", two.Captured());
    std::string own_snapshot;
    CHECK(replica.writer()
              .RunOnce([&](replicator::ChangeApplier& applier) {
                own_snapshot = StreamedSnapshot(applier, 0);
                return absl::OkStatus();
              })
              .ok());
    Write("snapshot_install", "own_shard_0", own_snapshot);
  }

  // Node 1 applies the drifted changes (dead letters there), then makes its shard snapshots.
  {
    replicator::ShardRouter router(FuzzReplica::kShards);
    auto applier = replicator::ChangeApplier::Open(one.path, router);
    CHECK(applier.ok()) << applier.status();
    (*applier)->set_local_node(1);
    cv1::ChangeBatch all;
    all.set_origin_node(3);
    *all.mutable_tables() = drift.tables();
    for (int shard = 0; shard < FuzzReplica::kShards; ++shard) {
      auto r = (*applier)->Apply(shard, FuzzReplica::kAppliedIndex + 2, all);
      CHECK(r.ok()) << r.status();
    }
    for (int shard = 0; shard < FuzzReplica::kShards; ++shard) {
      const std::string bytes = StreamedSnapshot(**applier, shard);
      Write("snapshot_install", absl::StrCat("node_1_shard_", shard), bytes);
      if (shard == 0) {
        absl::StatusOr<cv1::ShardSnapshot> snap =
            replicator::ReadShardSnapshot(raft::host::StringSnapshotSource(bytes));
        CHECK(snap.ok()) << snap.status();
        CHECK_GT(snap->dead_letters_size(), 0) << "node 1 has no dead letter to carry";
        out.snapshot = bytes;
      }
    }
  }
  Write("snapshot_install", "bootstrap_empty", "");

  // The same payloads framed as NodeHost frames proposals.
  Write("proposal_codec", "single", raft::host::EncodeSingle(1, 42, out.batches[0]));
  Write("proposal_codec", "single_empty", raft::host::EncodeSingle(3, 1, ""));
  raft::host::PackWriter pack(2, 0);
  for (size_t i = 0; i < 3; ++i) pack.Add(100 + i, out.batches[i]);
  pack.Add(200, "");
  Write("proposal_codec", "pack", pack.Take());
  return out;
}

}  // namespace
}  // namespace marmot::fuzz

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  CHECK(!FLAGS_out.empty()) << "--out names the corpus folder";
  const std::string dir = marmot::fuzz::MakeTempDir();
  const marmot::fuzz::ReplicatorSeeds seeds = marmot::fuzz::ChangeSeeds(dir);
  std::vector<marmot::raft::v1::Message> traffic;
  marmot::fuzz::RaftSeeds(seeds.batches, &traffic);
  marmot::fuzz::TransportSeeds(traffic, seeds.snapshot);
  std::filesystem::remove_all(dir);
  LOG(INFO) << "corpus written to " << FLAGS_out;
  return 0;
}
