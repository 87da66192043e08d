// A shard snapshot as a stream of bounded pieces (proto/change.proto, SnapshotPiece): how
// ChangeApplier writes one to a SnapshotSink and reads one from a SnapshotSource, table by
// table and rows in chunks, so that neither side holds a whole shard in memory and no protobuf
// message comes near its 2 GiB limit.
//
//   magic "MMTSNAP2", then pieces: [u32 little-endian length][SnapshotPiece]
//   start, applied*, (table, rows*)*, dead_letter*, end
//
// A writer cuts rows (and the dedupe state) into pieces of about `piece_bytes`; a row larger
// than that goes alone in its piece. A reader refuses any piece larger than `max_piece_bytes`
// (by default kMaxPieceBytes, above SQLite's largest row) before reading it, and anything out of
// order, malformed or truncated: a row whose value count is not its table's, a table without
// columns or whose key is not among them, counts that differ from the end piece, bytes after it.
// CheckShardSnapshot runs a reader over a whole payload: what a node checks before it records a
// snapshot it receives.
//
// The format has no relation to the single ShardSnapshot message of marmot versions before it:
// nodes of both kinds cannot exchange snapshots.
#ifndef MARMOT_REPLICATOR_SNAPSHOT_STREAM_H_
#define MARMOT_REPLICATOR_SNAPSHOT_STREAM_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/change.pb.h"
#include "raft/host/snapshot_io.h"

namespace marmot::replicator {

// Rows per piece: about this many bytes.
inline constexpr size_t kDefaultPieceBytes = 1 << 20;
// The largest piece a reader takes: room for one row of SQLite's largest size (1,000,000,000
// bytes by default) and its framing, well below protobuf's 2 GiB.
inline constexpr uint64_t kMaxPieceBytes = (uint64_t{1} << 30) + (uint64_t{64} << 20);

class ShardSnapshotWriter {
 public:
  // Writes to `sink` (not owned).
  explicit ShardSnapshotWriter(raft::host::SnapshotSink& sink,
                               size_t piece_bytes = kDefaultPieceBytes);

  // In this order: Start, AddApplied*, AddVersion*, (StartTable, AddRow*)*, AddDeadLetter*,
  // Finish; calls
  // out of order are a bug (CHECK). Errors are the sink's, or ResourceExhausted for one row or
  // dead letter larger than kMaxPieceBytes (no reader would take it; nothing is written of it).
  absl::Status Start(uint32_t shard, uint64_t applied_index,
                     const std::vector<change::v1::SchemaChange>& schema = {});
  // The maker's schema epoch (SnapshotStart.schema_epoch) that Start writes; before Start.
  void set_schema_epoch(uint64_t epoch) { schema_epoch_ = epoch; }
  // The maker's renamed tables (SnapshotStart.table_routes, table_renames) that Start writes;
  // before Start.
  void set_table_renames(std::vector<change::v1::TableRoute> routes,
                         std::vector<change::v1::TableRename> renames) {
    routes_ = std::move(routes);
    renames_ = std::move(renames);
  }
  absl::Status AddApplied(const change::v1::ShardSnapshot::Applied& applied);
  absl::Status AddVersion(change::v1::SnapshotVersions::Entry entry);
  // In the same stage as AddVersion.
  absl::Status AddConflict(change::v1::SnapshotVersions::Conflict conflict);
  // `table` without values.
  absl::Status StartTable(const change::v1::ShardSnapshot::Table& table);
  // One value per column of the current table, the rowid first when it is keyed by rowid.
  absl::Status AddRow(change::v1::SnapshotRow row);
  absl::Status AddDeadLetter(const change::v1::ShardSnapshot::DeadLetter& dead_letter);
  absl::Status Finish();

  uint64_t pieces() const { return pieces_; }

 private:
  enum class Stage { kNew, kApplied, kVersions, kTables, kDeadLetters, kDone };
  absl::Status Put(const change::v1::SnapshotPiece& piece);
  absl::Status FlushApplied();
  absl::Status FlushVersions();
  // Flushes what the current stage buffers (before the next stage).
  absl::Status FlushStage();
  // Before a versions piece takes `size` more bytes of `what` ("a row version", "a conflict"):
  // enters the versions stage, refuses what no piece holds, flushes a piece it would overfill.
  absl::Status MakeRoomForVersions(size_t size, const char* what);
  // After it took them: flushes the piece once full.
  absl::Status AddedToVersions(size_t size);
  absl::Status FlushRows();

  raft::host::SnapshotSink& sink_;
  const size_t piece_bytes_;
  Stage stage_ = Stage::kNew;
  change::v1::SnapshotPiece applied_, rows_, versions_;  // Being filled.
  size_t applied_bytes_ = 0, rows_bytes_ = 0, versions_bytes_ = 0;
  size_t row_width_ = 0;  // Of the current table.
  change::v1::SnapshotEnd end_;
  uint64_t pieces_ = 0;
  std::optional<uint64_t> schema_epoch_;
  std::vector<change::v1::TableRoute> routes_;
  std::vector<change::v1::TableRename> renames_;
};

class ShardSnapshotReader {
 public:
  // Reads `source` (not owned, outlives the reader). Every error is DataLoss, naming what is
  // wrong and at which offset, or the source's own error.
  explicit ShardSnapshotReader(const raft::host::SnapshotSource& source,
                               uint64_t max_piece_bytes = kMaxPieceBytes);

  // Reads the start and the dedupe state; first, and again after Rewind().
  absl::Status ReadHeader();
  uint32_t shard() const { return start_.shard(); }
  uint64_t applied_index() const { return start_.applied_index(); }
  const google::protobuf::RepeatedPtrField<change::v1::SchemaChange>& schema() const {
    return start_.schema();
  }
  const google::protobuf::RepeatedPtrField<change::v1::TableRoute>& table_routes() const {
    return start_.table_routes();
  }
  const google::protobuf::RepeatedPtrField<change::v1::TableRename>& table_renames() const {
    return start_.table_renames();
  }
  const std::vector<change::v1::ShardSnapshot::Applied>& applied() const { return applied_; }
  // The schema epoch a node that installed the snapshot has at least (schema_epochs.h): its
  // maker's; for a snapshot of a version before it, of shard 0 its applied index (every schema
  // change up to it is in its schema), else 0.
  uint64_t schema_epoch() const;

  // The next versions of the shard's rows, right after ReadHeader (or Rewind and ReadHeader);
  // nullopt after the last (NextTable skips those not read).
  absl::StatusOr<std::optional<change::v1::SnapshotVersions>> NextVersions();
  // The next table (its columns, without values), skipping what is left of the current one;
  // nullopt after the last.
  absl::StatusOr<std::optional<change::v1::ShardSnapshot::Table>> NextTable();
  // The next rows of the current table; nullopt after its last.
  absl::StatusOr<std::optional<change::v1::SnapshotRows>> NextRows();
  // Back to the current table's first rows.
  void RewindTable();
  // The next carried dead letter, skipping the tables left; nullopt after the last, once the
  // end piece checked out.
  absl::StatusOr<std::optional<change::v1::ShardSnapshot::DeadLetter>> NextDeadLetter();
  // Back to the beginning.
  void Rewind();

 private:
  // The piece at offset_ without consuming it (kept in peeked_); nullopt at the end of the
  // payload.
  absl::StatusOr<const change::v1::SnapshotPiece*> Peek();
  void Consume();
  absl::Status Corrupt(const std::string& what) const;
  absl::Status CheckTable(const change::v1::ShardSnapshot::Table& t) const;
  absl::Status CheckEnd();

  const raft::host::SnapshotSource& source_;
  const uint64_t max_piece_bytes_;
  uint64_t offset_ = 0;
  std::optional<change::v1::SnapshotPiece> peeked_;
  uint64_t peeked_bytes_ = 0;  // Framing included.
  change::v1::SnapshotStart start_;
  std::vector<change::v1::ShardSnapshot::Applied> applied_;
  // Where the current table's rows start, and what was counted before them.
  uint64_t table_rows_offset_ = 0;
  uint64_t rows_before_table_ = 0, pieces_before_table_ = 0;
  size_t row_width_ = 0;
  bool in_table_ = false;
  bool tables_done_ = false;
  bool done_ = false;
  // Counted as read, for the end piece.
  uint64_t pieces_ = 0, tables_ = 0, rows_ = 0, dead_letters_ = 0, versions_ = 0, conflicts_ = 0;
};

// Checks a whole payload received for `shard`: empty (a bootstrap snapshot) or a snapshot of that
// shard a reader reads to the end. What a node runs before it records a snapshot it receives.
absl::Status CheckShardSnapshot(uint32_t shard, const raft::host::SnapshotSource& payload,
                                uint64_t max_piece_bytes = kMaxPieceBytes);

// A whole in-memory snapshot as a stream, and back (tests; small snapshots).
absl::Status WriteShardSnapshot(const change::v1::ShardSnapshot& snapshot,
                                raft::host::SnapshotSink& sink,
                                size_t piece_bytes = kDefaultPieceBytes);
absl::StatusOr<change::v1::ShardSnapshot> ReadShardSnapshot(
    const raft::host::SnapshotSource& source);

}  // namespace marmot::replicator

#endif  // MARMOT_REPLICATOR_SNAPSHOT_STREAM_H_
