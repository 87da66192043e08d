// Fuzz target: the chunks of one `SendSnapshot` call as node 2 receives them: the first chunk's
// checks, then its receipt (raft/host/snapshot_chunk_checks.h, snapshot_receipt.h) writing to a
// file in a temporary folder, as grpc_transport.cc runs them. Whatever the bytes, nothing
// crashes; a receipt that finishes kept exactly the bytes and checksum its first chunk announced;
// a refused one leaves no file behind.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "glog/logging.h"
#include "raft/host/env_fault_injection.h"
#include "raft/host/snapshot_chunk_checks.h"
#include "raft/host/snapshot_receipt.h"
#include "tests/fuzz/fuzz_input.pb.h"
#include "tests/fuzz/fuzz_target.h"

namespace marmot::fuzz {
namespace {

namespace fs = std::filesystem;
using raft::host::SnapshotReceipts;

constexpr uint64_t kNode = 2;
constexpr uint64_t kShards = 2;  // as make_corpus announces (FuzzReplica::kShards)

std::string* dir = nullptr;

int Run(const uint8_t* data, size_t size) {
  inputs::SnapshotCallInput in;
  if (!in.ParseFromArray(data, static_cast<int>(size))) return -1;
  if (in.chunks_size() == 0) return 0;
  const auto& first = in.chunks(0);
  if (!raft::host::CheckFirstSnapshotChunk(kNode, kShards, first).ok()) return 0;
  // No check of the payload's contents (the snapshot_install target fuzzes those); the disk
  // always has room, less than the bytes a chunk of at most 1 MiB could ever announce.
  raft::host::FaultInjectionEnv roomy_disk;
  roomy_disk.SetDiskRoom(uint64_t{1} << 40);
  SnapshotReceipts receipts({.dir = *dir, .max_chunk_bytes = 1 << 20, .env = &roomy_disk});
  auto receipt = receipts.Begin(first.header().shard(), first.from_node(),
                                first.header().snapshot().metadata().index(), first.total_size(),
                                first.checksum());
  if (!receipt.ok()) return 0;
  int next = 1;
  absl::StatusOr<std::string> name = raft::host::ReceiveSnapshotChunks(
      first,
      [&](raft::transport::v1::SnapshotChunk* c) {
        if (next == in.chunks_size()) return false;
        *c = in.chunks(next++);
        return true;
      },
      **receipt);
  receipt->reset();
  if (name.ok()) {
    const std::string path = *dir + "/" + *name;
    std::ifstream file(path, std::ios::binary);
    const std::string kept{std::istreambuf_iterator<char>(file), {}};
    CHECK_EQ(kept.size(), first.total_size());
    CHECK_EQ(
        raft::host::PayloadChecksum(raft::host::kPayloadChecksumSeed, kept.data(), kept.size()),
        first.checksum());
    fs::remove(path);
  }
  CHECK(fs::is_empty(*dir)) << "a receipt left a file behind";
  return 0;
}

}  // namespace
}  // namespace marmot::fuzz

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  marmot::fuzz::QuietLogs((*argv)[0]);
  std::string pattern =
      (std::filesystem::temp_directory_path() / "snapshot_receipt_fuzz.XXXXXX").string();
  CHECK(::mkdtemp(pattern.data()) != nullptr);
  marmot::fuzz::dir = new std::string(pattern);
  std::atexit([] { std::filesystem::remove_all(*marmot::fuzz::dir); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return marmot::fuzz::Run(data, size);
}
