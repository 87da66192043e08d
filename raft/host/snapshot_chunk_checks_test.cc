// The chunks of a SendSnapshot call checked around a SnapshotReceipts receipt, as the transport
// receives them.
#include "raft/host/snapshot_chunk_checks.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "raft/host/env_fault_injection.h"
#include "raft/host/test_dir.h"

namespace marmot::raft::host {
namespace {

namespace fs = std::filesystem;
namespace tv1 = ::marmot::raft::transport::v1;

// The chunks a sender makes of `payload`, `chunk` bytes each, from node 1 to node 2, shard 1.
std::vector<tv1::SnapshotChunk> Chunks(const std::string& payload, size_t chunk) {
  std::vector<tv1::SnapshotChunk> out;
  size_t off = 0;
  do {
    tv1::SnapshotChunk& c = out.emplace_back();
    if (off == 0) {
      c.set_from_node(1);
      c.set_to_node(2);
      c.mutable_header()->set_type(v1::MSG_SNAP);
      c.mutable_header()->set_from(1);
      c.mutable_header()->set_to(2);
      c.mutable_header()->set_shard(1);
      c.mutable_header()->mutable_snapshot()->mutable_metadata()->set_index(9);
      c.set_total_size(payload.size());
      c.set_checksum(PayloadChecksum(kPayloadChecksumSeed, payload.data(), payload.size()));
    }
    const size_t n = std::min(chunk, payload.size() - off);
    c.set_offset(off);
    c.set_data(payload.substr(off, n));
    off += n;
    c.set_last(off == payload.size());
  } while (off < payload.size());
  return out;
}

// Receives `chunks` into `dir`: the first error, or the payload's bytes as kept.
absl::StatusOr<std::string> Receive(const std::string& dir,
                                    const std::vector<tv1::SnapshotChunk>& chunks) {
  if (absl::Status s = CheckFirstSnapshotChunk(2, 4, chunks.at(0)); !s.ok()) return s;
  FaultInjectionEnv roomy_disk;
  roomy_disk.SetDiskRoom(uint64_t{1} << 40);
  SnapshotReceipts receipts({.dir = dir, .env = &roomy_disk});
  auto receipt = receipts.Begin(1, 1, 9, chunks[0].total_size(), chunks[0].checksum());
  if (!receipt.ok()) return receipt.status();
  size_t next = 1;
  absl::StatusOr<std::string> name = ReceiveSnapshotChunks(
      chunks[0],
      [&](tv1::SnapshotChunk* c) {
        if (next == chunks.size()) return false;
        *c = chunks[next++];
        return true;
      },
      **receipt);
  if (!name.ok()) return name.status();
  std::ifstream in(dir + "/" + *name);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

size_t FileCount(const std::string& dir) {
  return std::distance(fs::directory_iterator(dir), fs::directory_iterator());
}

TEST(SnapshotChunkChecksTest, TakesThePayloadItsFirstChunkAnnounced) {
  const std::string dir = FreshTestDir();
  const std::string payload = "a snapshot payload of some bytes";
  absl::StatusOr<std::string> got = Receive(dir, Chunks(payload, 5));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, payload);
  got = Receive(dir, Chunks("", 5));  // an empty payload is one empty last chunk
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "");
}

TEST(SnapshotChunkChecksTest, RefusesAFirstChunkNotMeantForThisNode) {
  auto refused = [](void (*spoil)(tv1::SnapshotChunk&)) {
    tv1::SnapshotChunk c = Chunks("abc", 5)[0];
    spoil(c);
    absl::Status s = CheckFirstSnapshotChunk(2, 4, c);
    EXPECT_TRUE(s.ok() || s.code() == absl::StatusCode::kInvalidArgument) << s;
    return !s.ok();
  };
  EXPECT_FALSE(refused([](tv1::SnapshotChunk&) {}));
  EXPECT_TRUE(refused([](tv1::SnapshotChunk& c) { c.set_to_node(3); }));
  EXPECT_TRUE(refused([](tv1::SnapshotChunk& c) { c.mutable_header()->set_to(3); }));
  EXPECT_TRUE(refused([](tv1::SnapshotChunk& c) { c.mutable_header()->set_from(3); }));
  EXPECT_TRUE(refused([](tv1::SnapshotChunk& c) {
    c.set_from_node(0);
    c.mutable_header()->set_from(0);
  }));
  EXPECT_TRUE(refused([](tv1::SnapshotChunk& c) {
    c.set_from_node(2);
    c.mutable_header()->set_from(2);
  }));
  EXPECT_TRUE(refused([](tv1::SnapshotChunk& c) { c.mutable_header()->set_type(v1::MSG_APP); }));
  EXPECT_TRUE(refused([](tv1::SnapshotChunk& c) { c.set_offset(1); }));
  EXPECT_TRUE(refused([](tv1::SnapshotChunk& c) { c.mutable_header()->set_shard(4); }));
}

TEST(SnapshotChunkChecksTest, ChunksThatDoNotMakeThePayloadAreRefusedAndLeaveNothing) {
  const std::string dir = FreshTestDir();
  const std::string payload = "0123456789";
  std::vector<tv1::SnapshotChunk> chunks = Chunks(payload, 4);
  ASSERT_EQ(chunks.size(), 3u);
  auto spoiled = [&](auto spoil) {
    std::vector<tv1::SnapshotChunk> c = chunks;
    spoil(c);
    absl::StatusOr<std::string> got = Receive(dir, c);
    EXPECT_EQ(FileCount(dir), 0u);
    return got.status();
  };
  auto invalid = absl::StatusCode::kInvalidArgument;
  auto data_loss = absl::StatusCode::kDataLoss;
  EXPECT_EQ(spoiled([](auto& c) { std::swap(c[1], c[2]); }).code(), invalid);  // out of order
  EXPECT_EQ(spoiled([](auto& c) { c[2].set_data("89X"); }).code(), invalid);   // beyond the size
  EXPECT_EQ(spoiled([](auto& c) { c[1].set_last(true); }).code(), data_loss);  // short
  EXPECT_EQ(spoiled([](auto& c) { c[2].set_data("8X"); }).code(), data_loss);  // other bytes
  EXPECT_EQ(spoiled([](auto& c) { c.pop_back(); }).code(), invalid);           // no last chunk
  EXPECT_EQ(spoiled([](auto& c) { c[1].mutable_header()->set_to(2); }).code(), invalid);
  EXPECT_EQ(spoiled([](auto& c) { c[2].mutable_handshake()->set_proof("p"); }).code(), invalid);
}

}  // namespace
}  // namespace marmot::raft::host
