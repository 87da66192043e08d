// Snapshots that cannot hurt (issue 17), against real marmot processes on loopback with the
// sqlite3 shell as the application:
//   - a garbage snapshot from the shard's leader (the test speaks as the leader: without a
//     cluster key, loopback callers are trusted) is refused before anything is recorded; the node
//     stays up, restarts fine, and the application writes on;
//   - a snapshot that cannot install here (a NOT NULL constraint that differs between nodes)
//     keeps its table's rows as a dead letter; past -max-dead-letters it halts that shard alone,
//     says why in GetStatus and /metrics, and the application and the other shard go on;
//   - a snapshot many times larger than a lowered piece size streams and installs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "proto/admin.pb.h"
#include "proto/transport.grpc.pb.h"
#include "raft/host/snapshot_file.h"
#include "replicator/shard_router.h"
#include "replicator/snapshot_stream.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/pane_client.h"
#include "tests/testing/paths.h"

namespace marmot {
namespace {

namespace tv1 = ::marmot::raft::transport::v1;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

// The pane key the nodes read from AUTH_KEY at start (SnapshotSafetyTest sets it).
constexpr char kAuth[] = "Basic c25hcDpzbmFw";

class SnapshotSafetyTest : public ::testing::Test {
 protected:
  void SetUp() override { setenv("AUTH_KEY", kAuth, 1); }
};

// A pane call to node `id`; nullptr-like result when it could not be made.
httplib::Result Pane(const testing::LocalCluster& c, int id, const std::string& method,
                     const std::string& path, const std::string& body = "") {
  return testing::PaneCall(c, id, kAuth, method, path, body);
}

admin::v1::GetStatusResponse Status(const testing::LocalCluster& c, int id) {
  return testing::PaneStatus(c, id, kAuth);
}

// Shard `shard` as node `id` reports it; empty when the node did not answer (PaneStatus: its
// GetStatus reads the database, and a read can fail while marmot writes), which a wait then
// asks again rather than crashing on shards(0) of an empty response.
admin::v1::ShardStatus ShardStatusOf(const testing::LocalCluster& c, int id, int shard) {
  const admin::v1::GetStatusResponse status = Status(c, id);
  return shard < status.shards_size() ? status.shards(shard) : admin::v1::ShardStatus();
}

std::string Metrics(const testing::LocalCluster& c, int id) {
  httplib::Client rest("127.0.0.1", c.pane_port(id));
  httplib::Result r = rest.Get("/metrics");
  return r ? r->body : "";
}

// The application's write with a short busy timeout: it fails if marmot holds the write lock.
absl::Status QuickWrite(const testing::LocalCluster& c, int id, const std::string& sql) {
  return sqlite::testing::RunSqliteCli(c.db_path(id), ".timeout 200\n" + sql).status();
}

// Ids of `table` (an INTEGER PRIMARY KEY) that route to `shard`, from `from` on.
std::vector<int64_t> IdsOfShard(int shards, const std::string& table, int shard, int count,
                                int64_t from = 1) {
  replicator::ShardRouter router(shards);
  std::vector<int64_t> ids;
  for (int64_t id = from; static_cast<int>(ids.size()) < count; ++id) {
    if (router.ShardOf(table, {sqlite::Value::Integer(id)}) == shard) ids.push_back(id);
  }
  return ids;
}

// Node 1 leads `shard` (moved there if needed, through the pane), as every node sees it.
bool LeadsEverywhere(testing::LocalCluster& c, int shard, uint64_t node) {
  return testing::WaitFor(
      [&] {
        bool all = true;
        for (int id = 1; id <= c.nodes(); ++id) {
          const admin::v1::GetStatusResponse s = Status(c, id);
          all = all && s.shards_size() > shard && s.shards(shard).leader() == node;
        }
        if (all) return true;
        (void)Pane(c, static_cast<int>(node), "POST", absl::StrCat("/v1/shards/", shard, "/leader"),
                   absl::StrCat("{\"node_id\": ", node, "}"));
        return false;
      },
      60s);
}

uint64_t Fnv(const std::string& data) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : data) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  return h;
}

// Sends `payload` to node `to` as the snapshot of `shard` at `index` from node `from`, as the
// transport does (the receiver's handshake first, then chunks of 256 KiB); the call's outcome.
grpc::Status SendSnapshot(const testing::LocalCluster& c, uint64_t from, uint64_t to, int shards,
                          uint32_t shard, uint64_t term, uint64_t index,
                          const std::string& payload) {
  auto stub = tv1::RaftTransport::NewStub(
      grpc::CreateChannel(c.address(static_cast<int>(to)), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 30s);
  auto call = stub->SendSnapshot(&ctx);
  tv1::SnapshotAck ack;
  call->Read(&ack);  // The receiver's nonce (none without a cluster key).
  tv1::SnapshotChunk chunk;
  chunk.set_from_node(from);
  chunk.set_to_node(to);
  raft::v1::Message* h = chunk.mutable_header();
  h->set_type(raft::v1::MSG_SNAP);
  h->set_from(from);
  h->set_to(to);
  h->set_shard(shard);
  h->set_term(term);
  h->mutable_snapshot()->mutable_metadata()->set_index(index);
  h->mutable_snapshot()->mutable_metadata()->set_term(term);
  h->mutable_snapshot()->mutable_metadata()->mutable_conf_state()->add_voters(from);
  chunk.set_total_size(payload.size());
  chunk.set_checksum(Fnv(payload));
  chunk.mutable_handshake()->set_shards(shards);
  size_t off = 0;
  do {
    const size_t n = std::min<size_t>(256 << 10, payload.size() - off);
    chunk.set_offset(off);
    chunk.set_data(payload.substr(off, n));
    off += n;
    chunk.set_last(off == payload.size());
    if (!call->Write(chunk)) break;
    chunk.Clear();
  } while (off < payload.size());
  call->WritesDone();
  while (call->Read(&ack)) {
  }
  return call->Finish();
}

// Opens a stream to node `to` as node `from` (lower id) and sends `m` on it, as a peer would.
grpc::Status StreamMessage(const testing::LocalCluster& c, uint64_t from, uint64_t to, int shards,
                           const raft::v1::Message& m) {
  auto stub = tv1::RaftTransport::NewStub(
      grpc::CreateChannel(c.address(static_cast<int>(to)), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 10s);
  auto st = stub->Stream(&ctx);
  tv1::MessageBatch b;
  b.set_from_node(from);
  b.set_to_node(to);
  b.mutable_handshake()->set_shards(shards);
  st->Write(b);
  tv1::MessageBatch reply;
  st->Read(&reply);
  b.clear_handshake();
  *b.add_messages() = m;
  st->Write(b);
  std::this_thread::sleep_for(300ms);  // Let the node step it.
  st->WritesDone();
  while (st->Read(&reply)) {
  }
  return st->Finish();
}

std::string Tail(const std::string& log) {
  return log.substr(log.size() > 6000 ? log.size() - 6000 : 0);
}

TEST_F(SnapshotSafetyTest, AGarbageSnapshotFromTheLeaderIsRefusedAndTheNodeStaysUp) {
  testing::LocalCluster c(
      {.nodes = 3, .shards = 2, .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);"});
  c.Start();
  c.Sql(1, "INSERT INTO kv VALUES (1, 'before');");
  ASSERT_TRUE(c.WaitForSame("SELECT group_concat(v) FROM kv;", 30s));
  // Given node 1 leads shard 0 (so that it may send node 3 snapshots of it),
  ASSERT_TRUE(LeadsEverywhere(c, 0, 1));
  const admin::v1::ShardStatus seen = ShardStatusOf(c, 3, 0);

  // when it sends node 3 a payload of random bytes with a right checksum,
  std::string garbage(3 << 20, '\0');
  for (size_t i = 0; i < garbage.size(); ++i) {
    garbage[i] = static_cast<char>((i * 2654435761u) >> 13);
  }
  const grpc::Status sent =
      SendSnapshot(c, 1, 3, 2, 0, seen.term(), seen.commit_index() + 1000, garbage);
  // then node 3 refuses it whole, before recording anything of it,
  EXPECT_EQ(sent.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << sent.error_message();
  EXPECT_THAT(sent.error_message(), HasSubstr("not a snapshot of shard 0"));
  EXPECT_THAT(c.log(3), HasSubstr("refusing a snapshot"));
  // and so it does with a snapshot message that did not come as a snapshot: one whose payload
  // file would be marmot's own Raft files.
  raft::v1::Message forged;
  forged.set_type(raft::v1::MSG_SNAP);
  forged.set_from(1);
  forged.set_to(3);
  forged.set_shard(0);
  forged.set_term(seen.term());
  forged.mutable_snapshot()->mutable_metadata()->set_index(seen.commit_index() + 1000);
  forged.mutable_snapshot()->mutable_metadata()->set_term(seen.term());
  forged.mutable_snapshot()->mutable_metadata()->mutable_conf_state()->add_voters(1);
  forged.mutable_snapshot()->set_data("../db/CURRENT");
  (void)StreamMessage(c, 1, 3, 2, forged);
  EXPECT_TRUE(std::filesystem::exists(c.raft_store(3) + "/db/CURRENT"));
  // The node stays up and nothing of it stays on disk; the application writes on, and rows
  // keep flowing both ways.
  ASSERT_TRUE(QuickWrite(c, 3, "INSERT INTO kv VALUES (2, 'from node 3');").ok());
  c.Sql(1, "INSERT INTO kv VALUES (3, 'after');");
  ASSERT_TRUE(c.WaitForSame("SELECT group_concat(v) FROM (SELECT v FROM kv ORDER BY k);", 30s))
      << Tail(c.log(3));
  EXPECT_EQ(c.Sql(3, "SELECT group_concat(v) FROM (SELECT v FROM kv ORDER BY k);"),
            "before,from node 3,after\n");
  for (const auto& f : std::filesystem::directory_iterator(c.raft_store(3) + "/snapshots")) {
    ADD_FAILURE() << "left on disk: " << f.path();
  }
  // A restart is an ordinary one.
  EXPECT_EQ(c.StopNode(3), 0);
  c.StartNode(3);
  ASSERT_TRUE(c.WaitUntilReplicating(3, 30s)) << c.log(3);
  c.Sql(2, "INSERT INTO kv VALUES (4, 'after the restart');");
  EXPECT_TRUE(c.WaitForSame("SELECT group_concat(v) FROM (SELECT v FROM kv ORDER BY k);", 30s));
}

TEST_F(SnapshotSafetyTest, ASnapshotThatCannotInstallHaltsOnlyItsShardPastTheDeadLetterLimit) {
  constexpr int kShards = 2;
  testing::LocalCluster c({.nodes = 3,
                           .shards = kShards,
                           .schema = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
                                     "CREATE TABLE u (id INTEGER PRIMARY KEY, w TEXT);",
                           .extra_flags = {"-snapshot-entries=20"}});
  c.Start();
  // (Row `kept` routes to shard 1, which installs everywhere.)
  const int64_t kept = IdsOfShard(kShards, "t", 1, 1, 1)[0];
  c.Sql(1, absl::StrCat("INSERT INTO t VALUES (", kept,
                        ", 'kept'); INSERT INTO u VALUES (0, 'first');"));
  ASSERT_TRUE(c.WaitForSame("SELECT count(*) FROM t; SELECT count(*) FROM u;", 30s));
  const admin::v1::GetStatusResponse before = Status(c, 1);
  ASSERT_EQ(before.shards_size(), kShards);

  // Given node 3 down while its t gains a NOT NULL constraint the other nodes lack,
  ASSERT_EQ(c.StopNode(3), 0);
  c.Sql(3,
        "BEGIN; CREATE TABLE t_new (id INTEGER PRIMARY KEY, v TEXT NOT NULL);"
        "INSERT INTO t_new SELECT * FROM t; DROP TABLE t; ALTER TABLE t_new RENAME TO t; COMMIT;");
  // and rows it refuses written to shard 0 meanwhile (u rows to both shards), entry after entry,
  // until both shards' logs start after what node 3 has,
  const std::vector<int64_t> null_rows = IdsOfShard(kShards, "t", 0, 40, kept + 1);
  for (size_t i = 0; i < null_rows.size(); ++i) {
    c.Sql(1, absl::StrCat("INSERT INTO t VALUES (", null_rows[i], ", NULL); INSERT INTO u VALUES (",
                          2 * i + 1, ", 'row'), (", 2 * i + 2, ", 'row');"));
  }
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        for (int id : {1, 2}) (void)Pane(c, id, "POST", "/v1/snapshots", "{\"all\": true}");
        // Shard 0's log on both nodes that can lead it.
        for (int id : {1, 2}) {
          const admin::v1::ShardStatus st = ShardStatusOf(c, id, 0);
          if (st.commit_index() + 1 - st.log_entries() <= before.shards(0).commit_index() + 1) {
            return false;
          }
        }
        return true;
      },
      60s));

  // when node 3 comes back keeping no dead letters (-max-dead-letters=0),
  c.SetNodeFlags(3, {"-max-dead-letters=0"});
  c.StartNode(3);
  ASSERT_TRUE(c.WaitUntilReplicating(3, 30s)) << c.log(3);
  // then shard 0 halts there, saying why (its snapshot's t rows would be a dead letter),
  ASSERT_TRUE(testing::WaitFor([&] { return !ShardStatusOf(c, 3, 0).halted().empty(); }, 60s))
      << Tail(c.log(3));
  const admin::v1::GetStatusResponse halted = Status(c, 3);
  ASSERT_EQ(halted.shards_size(), kShards);
  EXPECT_THAT(halted.shards(0).halted(), HasSubstr("installing the snapshot"));
  EXPECT_THAT(halted.shards(0).halted(), HasSubstr("-max-dead-letters"));
  EXPECT_THAT(halted.shards(0).halted(), HasSubstr("NOT NULL constraint failed"));
  EXPECT_EQ(halted.shards(1).halted(), "");
  EXPECT_THAT(Metrics(c, 3), HasSubstr("marmot_shard_halted{shard=\"0\"} 1"));
  EXPECT_THAT(Metrics(c, 3), HasSubstr("marmot_shard_halted{shard=\"1\"} 0"));
  EXPECT_THAT(c.log(3), HasSubstr("[shard 0 node 3] halted: "));
  // while the application writes on, and shard 1 keeps applying there.
  EXPECT_TRUE(QuickWrite(c, 3, "INSERT INTO u VALUES (1000, 'local');").ok());
  const std::vector<int64_t> later = IdsOfShard(kShards, "u", 1, 3, 2000);
  for (int64_t id : later) c.Sql(1, absl::StrCat("INSERT INTO u VALUES (", id, ", 'later');"));
  const std::string later_rows = absl::StrCat("SELECT count(*) FROM u WHERE id IN (", later[0],
                                              ", ", later[1], ", ", later[2], ");");
  EXPECT_TRUE(testing::WaitFor([&] { return c.Sql(3, later_rows) == "3\n"; }, 30s))
      << Tail(c.log(3));
  EXPECT_TRUE(QuickWrite(c, 3, "INSERT INTO u VALUES (1001, 'local');").ok());

  // A restart as it was starts, the shard halted again at once;
  EXPECT_EQ(c.StopNode(3), 0);
  c.StartNode(3);
  ASSERT_TRUE(c.WaitUntilReplicating(3, 30s)) << c.log(3);
  EXPECT_THAT(ShardStatusOf(c, 3, 0).halted(), HasSubstr("at start"));
  EXPECT_TRUE(QuickWrite(c, 3, "INSERT INTO u VALUES (1002, 'local');").ok());
  // with room for dead letters the snapshot installs, its t rows kept as one dead letter, and
  // every node converges on what can apply everywhere.
  EXPECT_EQ(c.StopNode(3), 0);
  c.SetNodeFlags(3, {});
  c.StartNode(3);
  ASSERT_TRUE(c.WaitUntilReplicating(3, 30s)) << c.log(3);
  EXPECT_TRUE(
      c.WaitForSame("SELECT count(*), group_concat(id) FROM (SELECT id FROM u ORDER BY id);", 60s))
      << Tail(c.log(3));
  const admin::v1::GetStatusResponse after = Status(c, 3);
  for (const admin::v1::ShardStatus& s : after.shards()) EXPECT_EQ(s.halted(), "") << s.shard();
  EXPECT_GE(after.dead_letters(), 1);
  EXPECT_THAT(
      c.Sql(3, "SELECT error FROM \"__marmot__dead_letters\" WHERE origin IS NULL AND tbl = 't';"),
      HasSubstr("NOT NULL constraint failed"));
  EXPECT_EQ(c.Sql(3, "SELECT count(*) FROM t;"), "1\n");
  EXPECT_EQ(c.Sql(1, "SELECT count(*) FROM t;"), absl::StrCat(null_rows.size() + 1, "\n"));
}

TEST_F(SnapshotSafetyTest, ASnapshotOfManyPiecesStreamsAndInstalls) {
  // Given snapshots written in pieces of 64 KiB and a node down while about 4 MB are written,
  testing::LocalCluster c({.nodes = 3,
                           .shards = 1,
                           .schema = "CREATE TABLE kv (k INTEGER PRIMARY KEY, v BLOB);",
                           .extra_flags = {"-snapshot-entries=20", "-snapshot-piece-bytes=65536"}});
  c.Start();
  c.Sql(1, "INSERT INTO kv VALUES (0, x'00');");
  ASSERT_TRUE(c.WaitForSame("SELECT count(*) FROM kv;", 30s));
  ASSERT_EQ(c.StopNode(3), 0);
  for (int batch = 0; batch < 50; ++batch) {
    c.Sql(
        1 + batch % 2,
        absl::StrCat("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 80) "
                     "INSERT INTO kv SELECT ",
                     batch * 100 + 1, " + i, randomblob(1000) FROM n;"));
  }
  for (int id : {1, 2}) {
    httplib::Result snapshot = Pane(c, id, "POST", "/v1/snapshots", "{\"all\": true}");
    ASSERT_TRUE(snapshot && snapshot->status == 200) << (snapshot ? snapshot->body : "no answer");
  }
  // when it comes back,
  c.StartNode(3);
  ASSERT_TRUE(c.WaitUntilReplicating(3, 30s)) << c.log(3);
  // then it installs a snapshot of megabytes, in dozens of pieces, and holds every row.
  const std::string probe =
      "SELECT count(*), sum(length(v)) FROM kv;"
      "SELECT group_concat(hex(substr(v, 1, 4)), '') FROM (SELECT v FROM kv ORDER BY k);";
  ASSERT_TRUE(c.WaitForSame(probe, 90s)) << Tail(c.log(3));
  EXPECT_EQ(c.Sql(3, "SELECT count(*) FROM kv;"), "4001\n");
  // (The rows are there once the install commits, the log line a moment later.)
  std::smatch m;
  std::string log3;
  const std::regex installed(R"(installed a snapshot at index \d+ \((\d+) bytes\))");
  ASSERT_TRUE(
      testing::WaitFor([&] { return std::regex_search(log3 = c.log(3), m, installed); }, 10s))
      << Tail(log3);
  EXPECT_GT(std::stoull(m[1]), 2000000u);
  // The snapshots the nodes keep are in pieces of about 64 KiB: none over 64 KiB and a row.
  int checked = 0;
  for (int id = 1; id <= 3; ++id) {
    for (const auto& f : std::filesystem::directory_iterator(c.raft_store(id) + "/snapshots")) {
      auto source = raft::host::FileSnapshotSource::Open(f.path());
      ASSERT_TRUE(source.ok()) << source.status();
      if ((*source)->size() < 2000000) continue;
      EXPECT_TRUE(replicator::CheckShardSnapshot(0, **source, (64 << 10) + 2048).ok()) << f.path();
      ++checked;
    }
  }
  EXPECT_GE(checked, 1);
}

}  // namespace
}  // namespace marmot
