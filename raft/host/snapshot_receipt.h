// SnapshotReceipts: how the transport takes in a snapshot payload from the network, within
// bounds, so that no sender can fill the disk or memory or have anything recorded that is not a
// whole, checked payload:
//
//   - one receipt per shard at a time: a second one for the same shard is refused while the
//     first runs (Raft sends again later);
//   - the announced size must fit the folder's free space (Env::FreeDiskBytes), less what the
//     receipts in progress will still write and a reserve kept for the Raft log;
//   - chunks come in order, each at most max_chunk_bytes and never past the announced size;
//     they go straight to a file (0600), so memory holds one chunk;
//   - Finish() checks the size, the checksum and then the whole payload with the state
//     machine's SnapshotCheck, and only then gives the file its final name (durably).
//
// A receipt that fails or is abandoned leaves no file behind.
#ifndef MARMOT_RAFT_HOST_SNAPSHOT_RECEIPT_H_
#define MARMOT_RAFT_HOST_SNAPSHOT_RECEIPT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "raft/host/env.h"
#include "raft/host/state_machine.h"

namespace marmot::raft::host {

// FNV-1a 64 of a payload, continued from `h` (start from kPayloadChecksumSeed).
uint64_t PayloadChecksum(uint64_t h, const char* data, size_t n);
inline constexpr uint64_t kPayloadChecksumSeed = 1469598103934665603ull;

class SnapshotReceipts {
 public:
  struct Options {
    // The snapshots folder (rocks_log_store.h).
    std::string dir;
    // Senders cut payloads into chunks of 64 KiB to 1 MiB; a larger one is refused.
    uint64_t max_chunk_bytes = 4 << 20;
    // Free space a receipt must leave on the disk.
    uint64_t reserve_bytes = 64 << 20;
    // Checks the whole payload before it is kept; empty: none (tests of the transport).
    SnapshotCheck check;
    // The files and the disk's free space; must outlive the receipts.
    Env* env = Env::Default();
  };

  class Receipt {
   public:
    ~Receipt();
    Receipt(const Receipt&) = delete;
    Receipt& operator=(const Receipt&) = delete;

    // The next chunk, which must start at `offset`. InvalidArgument when it is out of order,
    // larger than max_chunk_bytes or goes past the announced size; ResourceExhausted or
    // Internal when the file cannot be written. After an error the receipt is unusable.
    absl::Status Add(uint64_t offset, absl::string_view data);
    // After the last chunk: DataLoss when the size or checksum differ from the announced ones,
    // the check's error when it refuses the payload (InvalidArgument), ResourceExhausted or
    // Internal when the file cannot be made durable, else the name of the payload's file in
    // the folder, durable there. The caller owns that file from then on.
    absl::StatusOr<std::string> Finish();

   private:
    friend class SnapshotReceipts;
    Receipt(SnapshotReceipts* owner, uint64_t shard, uint64_t total, uint64_t checksum,
            std::string name, std::unique_ptr<WritableFile> file);
    absl::Status Fail(absl::Status s);

    SnapshotReceipts* const owner_;
    const uint64_t shard_;
    const uint64_t total_;
    const uint64_t checksum_;
    const std::string name_;              // The final name; the file is `<name>.tmp` until Finish.
    std::unique_ptr<WritableFile> file_;  // null once closed
    uint64_t received_ = 0;
    uint64_t sum_ = kPayloadChecksumSeed;
    bool finished_ = false;
    absl::Status failed_;
  };

  explicit SnapshotReceipts(Options options);

  // Starts receiving `total` bytes (checksum `checksum`) for `shard`, from node `from`, for the
  // snapshot at `index`. ResourceExhausted when a receipt of the shard is in progress or the disk
  // lacks room (or is full already); Internal when the file cannot be created for another
  // reason.
  absl::StatusOr<std::unique_ptr<Receipt>> Begin(uint64_t shard, uint64_t from, uint64_t index,
                                                 uint64_t total, uint64_t checksum);

 private:
  void Release(uint64_t shard);

  const Options options_;
  std::mutex mu_;
  // Receipts in progress: shard -> bytes announced.
  std::map<uint64_t, uint64_t> open_;
  uint64_t counter_ = 0;
};

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_SNAPSHOT_RECEIPT_H_
