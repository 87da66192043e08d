// The snapshot stream: a shard written in bounded pieces reads back exactly, and a reader
// refuses whatever is cut off, out of order, malformed or larger than it takes.
#include "replicator/snapshot_stream.h"

#include <glog/logging.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace marmot::replicator {
namespace {

using change::v1::ShardSnapshot;
using change::v1::SnapshotPiece;
using raft::host::StringSnapshotSink;
using raft::host::StringSnapshotSource;

change::v1::Value Int(int64_t v) {
  change::v1::Value x;
  x.set_integer(v);
  return x;
}
change::v1::Value Text(const std::string& v) {
  change::v1::Value x;
  x.set_text(v);
  return x;
}

// Shard 3: a table keyed by id with `rows` rows of `bytes` bytes each, a rowid table, the
// dedupe state and two dead letters.
ShardSnapshot Sample(int rows = 3, size_t bytes = 5) {
  ShardSnapshot s;
  s.set_shard(3);
  s.set_applied_index(77);
  for (int origin = 1; origin <= 2; ++origin) {
    ShardSnapshot::Applied* a = s.add_applied();
    a->set_origin_node(origin);
    a->set_table("t");
    a->set_change_id(100 + origin);
  }
  ShardSnapshot::Table* t = s.add_tables();
  t->set_table("t");
  t->add_columns("id");
  t->add_columns("v");
  t->add_key_columns("id");
  for (int i = 0; i < rows; ++i) {
    *t->add_values() = Int(i);
    *t->add_values() = Text(std::string(bytes, 'a' + i % 26));
  }
  ShardSnapshot::Table* r = s.add_tables();
  r->set_table("no key \xff");
  r->add_columns("x");
  r->set_keyed_by_rowid(true);
  *r->add_values() = Int(9);  // rowid
  *r->add_values() = Text("x");
  ShardSnapshot::DeadLetter* d = s.add_dead_letters();
  d->set_kind(ShardSnapshot::DeadLetter::KIND_CHANGE);
  d->set_raft_index(70);
  d->set_origin_node(2);
  d->set_table("t");
  d->set_change_id(5);
  d->set_error("NOT NULL constraint failed");
  d->set_change("opaque");
  d = s.add_dead_letters();
  d->set_kind(ShardSnapshot::DeadLetter::KIND_UNDECODABLE);
  d->set_raft_index(71);
  d->set_change("\x01\x02");
  return s;
}

std::string Written(const ShardSnapshot& s, size_t piece_bytes = kDefaultPieceBytes) {
  StringSnapshotSink sink;
  absl::Status w = WriteShardSnapshot(s, sink, piece_bytes);
  CHECK(w.ok()) << w;
  return sink.Take();
}

// A payload made of `pieces` as given (for malformed ones).
std::string Framed(const std::vector<SnapshotPiece>& pieces) {
  std::string out = "MMTSNAP2";
  for (const SnapshotPiece& p : pieces) {
    const std::string bytes = p.SerializeAsString();
    const uint32_t n = bytes.size();
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
    out += bytes;
  }
  return out;
}

// The pieces of a well-formed payload.
std::vector<SnapshotPiece> Pieces(const std::string& payload) {
  std::vector<SnapshotPiece> out;
  size_t at = 8;
  while (at < payload.size()) {
    uint32_t n = 0;
    for (int i = 0; i < 4; ++i) {
      n |= uint32_t{static_cast<unsigned char>(payload[at + i])} << (8 * i);
    }
    SnapshotPiece p;
    CHECK(p.ParseFromString(payload.substr(at + 4, n)));
    out.push_back(p);
    at += 4 + n;
  }
  return out;
}

TEST(SnapshotStreamTest, AShardReadsBackExactlyWhateverThePieceSize) {
  const ShardSnapshot want = Sample(50, 40);
  for (size_t piece_bytes : {size_t{1}, size_t{100}, size_t{1000}, kDefaultPieceBytes}) {
    const std::string payload = Written(want, piece_bytes);
    StringSnapshotSource src(payload);
    EXPECT_TRUE(CheckShardSnapshot(3, src).ok()) << piece_bytes;
    absl::StatusOr<ShardSnapshot> got = ReadShardSnapshot(src);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->SerializeAsString(), want.SerializeAsString()) << piece_bytes;
  }
  // One row per piece at the smallest size: 50 + 1 rows pieces.
  int rows_pieces = 0;
  for (const SnapshotPiece& p : Pieces(Written(want, 1))) rows_pieces += p.has_rows();
  EXPECT_EQ(rows_pieces, 51);
}

TEST(SnapshotStreamTest, RowsGoInPiecesOfAboutThePieceSize) {
  // Given 3 MB of rows written with 64 KiB pieces,
  const std::string payload = Written(Sample(3000, 1000), 64 << 10);
  // then no piece is much larger than 64 KiB (a piece closes before the row that would pass it),
  size_t largest = 0;
  int rows_pieces = 0;
  for (const SnapshotPiece& p : Pieces(payload)) {
    largest = std::max(largest, p.ByteSizeLong());
    rows_pieces += p.has_rows();
  }
  EXPECT_LE(largest, size_t{64 << 10});
  EXPECT_GE(rows_pieces, 45);
  // and a reader that takes no piece over 64 KiB reads it all, one over 32 KiB none of it.
  StringSnapshotSource src(payload);
  EXPECT_TRUE(CheckShardSnapshot(3, src, 64 << 10).ok());
  absl::Status small = CheckShardSnapshot(3, src, 32 << 10);
  EXPECT_TRUE(absl::IsDataLoss(small)) << small;
  EXPECT_NE(small.message().find("more than the 32768 allowed"), std::string::npos) << small;
}

TEST(SnapshotStreamTest, ATableCanBeReadAgainFromItsFirstRows) {
  StringSnapshotSource src(Written(Sample(20, 10), 50));
  ShardSnapshotReader reader(src);
  ASSERT_TRUE(reader.ReadHeader().ok());
  EXPECT_EQ(reader.shard(), 3u);
  EXPECT_EQ(reader.applied_index(), 77u);
  EXPECT_EQ(reader.applied().size(), 2u);
  auto table = reader.NextTable();
  ASSERT_TRUE(table.ok() && table->has_value());
  auto count_rows = [&] {
    int n = 0;
    for (;;) {
      auto rows = reader.NextRows();
      CHECK(rows.ok()) << rows.status();
      if (!rows->has_value()) return n;
      n += (*rows)->rows_size();
    }
  };
  ASSERT_TRUE(reader.NextRows().ok());  // one piece read, then back
  reader.RewindTable();
  EXPECT_EQ(count_rows(), 20);
  reader.RewindTable();
  EXPECT_EQ(count_rows(), 20);
  // The rest checks out, counts included.
  table = reader.NextTable();
  ASSERT_TRUE(table.ok() && table->has_value());
  EXPECT_EQ((*table)->table(), "no key \xff");
  int dead = 0;
  for (;;) {
    auto d = reader.NextDeadLetter();
    ASSERT_TRUE(d.ok()) << d.status();
    if (!d->has_value()) break;
    ++dead;
  }
  EXPECT_EQ(dead, 2);
}

TEST(SnapshotStreamTest, APayloadCutAnywhereIsRefused) {
  const std::string payload = Written(Sample(4, 3), 20);
  for (size_t n = 1; n < payload.size(); ++n) {
    StringSnapshotSource src(payload.substr(0, n));
    EXPECT_TRUE(absl::IsDataLoss(CheckShardSnapshot(3, src))) << "cut at " << n;
  }
  StringSnapshotSource extra(payload + "x");
  EXPECT_TRUE(absl::IsDataLoss(CheckShardSnapshot(3, extra)));
}

TEST(SnapshotStreamTest, GarbageAndAnotherShardsSnapshotAreRefused) {
  StringSnapshotSource garbage(std::string(100000, '\x07'));
  EXPECT_TRUE(absl::IsDataLoss(CheckShardSnapshot(3, garbage)));
  std::string magic_then_garbage = "MMTSNAP2" + std::string(5000, '\xff');
  StringSnapshotSource huge_length(magic_then_garbage);
  absl::Status s = CheckShardSnapshot(3, huge_length);
  EXPECT_TRUE(absl::IsDataLoss(s)) << s;
  // The old format (one ShardSnapshot message) is not a snapshot any more.
  StringSnapshotSource old(Sample().SerializeAsString());
  EXPECT_TRUE(absl::IsDataLoss(CheckShardSnapshot(3, old)));
  StringSnapshotSource other(Written(Sample()));
  s = CheckShardSnapshot(4, other);
  EXPECT_TRUE(absl::IsDataLoss(s)) << s;
  EXPECT_NE(s.message().find("not of shard 4"), std::string::npos) << s;
  // An empty payload is the bootstrap snapshot.
  StringSnapshotSource empty;
  EXPECT_TRUE(CheckShardSnapshot(3, empty).ok());
}

TEST(SnapshotStreamTest, MalformedPiecesAreRefused) {
  const std::vector<SnapshotPiece> good = Pieces(Written(Sample(2, 3)));
  ASSERT_TRUE(CheckShardSnapshot(3, StringSnapshotSource(Framed(good))).ok());
  // Pieces: start, applied, table t, rows, table "no key", rows, dead letter x2, end.
  ASSERT_EQ(good.size(), 9u);
  auto refused = [&](const std::string& what,
                     const std::function<void(std::vector<SnapshotPiece>&)>& spoil) {
    std::vector<SnapshotPiece> pieces = good;
    spoil(pieces);
    absl::Status s = CheckShardSnapshot(3, StringSnapshotSource(Framed(pieces)));
    EXPECT_TRUE(absl::IsDataLoss(s)) << what << ": " << s;
  };
  refused("a row one value short",
          [](auto& p) { p[3].mutable_rows()->mutable_rows(0)->mutable_values()->RemoveLast(); });
  refused("a row one value long",
          [](auto& p) { *p[5].mutable_rows()->mutable_rows(0)->add_values() = Int(1); });
  refused("rows before a table", [](auto& p) { std::swap(p[2], p[3]); });
  refused("no start", [](auto& p) { p.erase(p.begin()); });
  refused("no end", [](auto& p) { p.pop_back(); });
  refused("a table after a dead letter", [](auto& p) { std::swap(p[4], p[6]); });
  refused("a dropped rows piece", [](auto& p) { p.erase(p.begin() + 3); });
  refused("a dropped dead letter", [](auto& p) { p.erase(p.begin() + 6); });
  refused("a key column it lacks",
          [](auto& p) { p[2].mutable_table()->set_key_columns(0, "nope"); });
  refused("no columns", [](auto& p) { p[2].mutable_table()->clear_columns(); });
  refused("a column twice", [](auto& p) { p[2].mutable_table()->set_columns(1, "id"); });
  refused("values in a table header",
          [](auto& p) { *p[2].mutable_table()->add_values() = Int(1); });
  refused("keyed by rowid and columns",
          [](auto& p) { p[2].mutable_table()->set_keyed_by_rowid(true); });
  refused("an empty piece", [](auto& p) { p[1].Clear(); });
  refused("a second start", [](auto& p) { p.insert(p.begin() + 2, p[0]); });
}

TEST(SnapshotStreamTest, TheStartCarriesTheMakersSchemaEpochAndOneWithoutReadsAsBefore) {
  // The schema epoch a node that installs it has (schema_epochs.h), by shard and applied index.
  auto epoch = [](uint32_t shard, uint64_t applied_index, std::optional<uint64_t> written) {
    raft::host::StringSnapshotSink sink;
    ShardSnapshotWriter w(sink);
    if (written.has_value()) w.set_schema_epoch(*written);
    CHECK(w.Start(shard, applied_index).ok());
    CHECK(w.Finish().ok());
    const std::string payload = sink.Take();
    StringSnapshotSource src(payload);
    CHECK(CheckShardSnapshot(shard, src).ok());
    ShardSnapshotReader r(src);
    CHECK(r.ReadHeader().ok());
    return r.schema_epoch();
  };
  EXPECT_EQ(epoch(3, 10, 7), 7u);
  EXPECT_EQ(epoch(0, 10, 7), 7u);
  EXPECT_EQ(epoch(0, 10, 0), 0u);  // written: none ever
  // A snapshot of a version before epochs: of shard 0 its applied index, else none.
  EXPECT_EQ(epoch(3, 10, std::nullopt), 0u);
  EXPECT_EQ(epoch(0, 10, std::nullopt), 10u);
}

}  // namespace
}  // namespace marmot::replicator
