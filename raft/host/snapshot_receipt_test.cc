// SnapshotReceipts: what a sender can make a receiver write, and when a payload is handed over.
#include "raft/host/snapshot_receipt.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "raft/host/env_fault_injection.h"
#include "raft/host/test_dir.h"

namespace marmot::raft::host {
namespace {

namespace fs = std::filesystem;
using Op = FaultInjectionEnv::Op;

uint64_t Sum(const std::string& s) {
  return PayloadChecksum(kPayloadChecksumSeed, s.data(), s.size());
}

std::vector<std::string> Files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& f : fs::directory_iterator(dir)) out.push_back(f.path().filename());
  return out;
}

TEST(SnapshotReceiptTest, AWholeCheckedPayloadIsKeptUnderItsName) {
  const std::string dir = FreshTestDir();
  int checks = 0;
  SnapshotReceipts receipts({.dir = dir, .check = [&](uint64_t shard, const SnapshotSource& in) {
                               ++checks;
                               EXPECT_EQ(shard, 3u);
                               EXPECT_EQ(in.size(), 10u);
                               return absl::OkStatus();
                             }});
  auto r = receipts.Begin(3, 1, 50, 10, Sum("0123456789"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE((*r)->Add(0, "01234").ok());
  ASSERT_TRUE((*r)->Add(5, "56789").ok());
  absl::StatusOr<std::string> name = (*r)->Finish();
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(checks, 1);
  r->reset();
  std::ifstream in(dir + "/" + *name);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "0123456789");
  EXPECT_EQ(Files(dir), std::vector<std::string>{*name});
}

TEST(SnapshotReceiptTest, ABadPayloadLeavesNothing) {
  const std::string dir = FreshTestDir();
  SnapshotReceipts receipts(
      {.dir = dir, .max_chunk_bytes = 8, .check = [](uint64_t, const SnapshotSource& in) {
         std::string first;
         if (!in.ReadAt(0, 1, &first).ok() || first == "x") {
           return absl::InvalidArgumentError("garbage");
         }
         return absl::OkStatus();
       }});
  auto expect_refused = [&](const std::string& payload, uint64_t announced, uint64_t sum,
                            std::vector<std::pair<uint64_t, std::string>> chunks,
                            absl::StatusCode code) {
    auto r = receipts.Begin(0, 1, 9, announced, sum);
    ASSERT_TRUE(r.ok()) << r.status();
    absl::Status s = absl::OkStatus();
    for (const auto& [off, data] : chunks) {
      if (s.ok()) s = (*r)->Add(off, data);
    }
    if (s.ok()) s = (*r)->Finish().status();
    EXPECT_EQ(s.code(), code) << payload << ": " << s;
    r->reset();
    EXPECT_TRUE(Files(dir).empty()) << payload;
  };
  const std::string good = "abcdefgh";
  expect_refused("checksum", 8, Sum(good), {{0, "abcdefgX"}}, absl::StatusCode::kDataLoss);
  expect_refused("short", 8, Sum(good), {{0, "abcd"}}, absl::StatusCode::kDataLoss);
  expect_refused("gap", 8, Sum(good), {{0, "abcd"}, {5, "fgh"}},
                 absl::StatusCode::kInvalidArgument);
  expect_refused("past the end", 4, Sum(good), {{0, "abcdefgh"}},
                 absl::StatusCode::kInvalidArgument);
  expect_refused("chunk too large", 9, Sum("abcdefghi"), {{0, "abcdefghi"}},
                 absl::StatusCode::kInvalidArgument);
  expect_refused("check", 8, Sum("xbcdefgh"), {{0, "xbcdefgh"}},
                 absl::StatusCode::kInvalidArgument);
}

TEST(SnapshotReceiptTest, OneReceiptPerShardAtATime) {
  const std::string dir = FreshTestDir();
  SnapshotReceipts receipts({.dir = dir});
  auto first = receipts.Begin(2, 1, 10, 4, Sum("abcd"));
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(receipts.Begin(2, 3, 11, 4, Sum("abcd")).status()));
  EXPECT_TRUE(receipts.Begin(5, 3, 11, 4, Sum("abcd")).ok()) << "another shard is independent";
  first->reset();  // abandoned: the shard is free again
  EXPECT_TRUE(receipts.Begin(2, 3, 11, 4, Sum("abcd")).ok());
}

TEST(SnapshotReceiptTest, APayloadThatWouldFillTheDiskIsRefusedBeforeAnythingIsWritten) {
  const std::string dir = FreshTestDir();
  FaultInjectionEnv env;
  env.SetDiskRoom(1000);
  SnapshotReceipts receipts({.dir = dir, .reserve_bytes = 100, .env = &env});
  EXPECT_TRUE(absl::IsResourceExhausted(receipts.Begin(0, 1, 5, 901, 0).status()));
  auto a = receipts.Begin(0, 1, 5, 600, 0);
  ASSERT_TRUE(a.ok()) << a.status();
  // What a receipt in progress will still write counts as taken.
  EXPECT_TRUE(absl::IsResourceExhausted(receipts.Begin(1, 1, 5, 301, 0).status()));
  EXPECT_TRUE(receipts.Begin(1, 1, 5, 300, 0).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(receipts.Begin(2, 1, 5, ~uint64_t{0}, 0).status()));
  EXPECT_EQ(env.calls(Op::kAppend), 0);
}

TEST(SnapshotReceiptTest, ADiskThatFillsUpDuringAReceiptLeavesNothingAndTheShardCanReceiveAgain) {
  // Given a disk with room at Begin that something else (the Raft log) fills meanwhile,
  const std::string dir = FreshTestDir();
  FaultInjectionEnv env;
  SnapshotReceipts receipts({.dir = dir, .reserve_bytes = 0, .env = &env});
  const std::string payload = "0123456789abcdef";
  auto r = receipts.Begin(4, 1, 30, payload.size(), Sum(payload));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE((*r)->Add(0, payload.substr(0, 8)).ok());
  env.SetDiskRoom(3);
  // when the next chunk does not fit, the receipt fails as a full disk and stays failed,
  const absl::Status s = (*r)->Add(8, payload.substr(8));
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_TRUE(absl::IsResourceExhausted((*r)->Finish().status()));
  // and once it is dropped no byte of it is left on the disk.
  r->reset();
  EXPECT_TRUE(Files(dir).empty());
  // Once there is room again the same shard takes the snapshot whole.
  env.ClearFaults();
  auto again = receipts.Begin(4, 1, 30, payload.size(), Sum(payload));
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE((*again)->Add(0, payload).ok());
  absl::StatusOr<std::string> name = (*again)->Finish();
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(Files(dir), std::vector<std::string>{*name});
}

TEST(SnapshotReceiptTest, APayloadThatCannotBeMadeDurableIsNotKept) {
  const std::string dir = FreshTestDir();
  const std::string payload = "abcdefgh";
  for (Op op : {Op::kCreate, Op::kSync, Op::kClose, Op::kRename, Op::kSyncFolder}) {
    FaultInjectionEnv env;
    env.FailAfter(op, 0, absl::ResourceExhaustedError("injected ENOSPC"));
    SnapshotReceipts receipts({.dir = dir, .env = &env});
    absl::Status s = absl::OkStatus();
    {
      auto r = receipts.Begin(0, 1, 7, payload.size(), Sum(payload));
      s = r.status();
      if (s.ok()) s = (*r)->Add(0, payload);
      if (s.ok()) s = (*r)->Finish().status();
    }
    EXPECT_TRUE(absl::IsResourceExhausted(s)) << static_cast<int>(op) << ": " << s;
    EXPECT_TRUE(Files(dir).empty()) << static_cast<int>(op);
  }
  // Another error of the disk is reported as internal, not as the sender's fault.
  FaultInjectionEnv env;
  env.FailAfter(Op::kSync, 0, absl::DataLossError("injected EIO"));
  SnapshotReceipts receipts({.dir = dir, .env = &env});
  auto r = receipts.Begin(0, 1, 7, payload.size(), Sum(payload));
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE((*r)->Add(0, payload).ok());
  EXPECT_TRUE(absl::IsInternal((*r)->Finish().status()));
}

}  // namespace
}  // namespace marmot::raft::host
