#include "replicator/snapshot_stream.h"

#include <glog/logging.h>

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"

namespace marmot::replicator {

namespace {

using change::v1::ShardSnapshot;
using change::v1::SnapshotPiece;
using change::v1::SnapshotRow;
using change::v1::SnapshotRows;

constexpr char kMagic[] = "MMTSNAP2";
constexpr size_t kMagicBytes = sizeof(kMagic) - 1;
constexpr size_t kLengthBytes = 4;
// What a row adds to its piece besides its own bytes (tag and length).
constexpr size_t kRowFraming = 8;

size_t RowWidth(const ShardSnapshot::Table& t) {
  return static_cast<size_t>(t.columns_size()) + (t.keyed_by_rowid() ? 1 : 0);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Writer

ShardSnapshotWriter::ShardSnapshotWriter(raft::host::SnapshotSink& sink, size_t piece_bytes)
    : sink_(sink), piece_bytes_(std::clamp<size_t>(piece_bytes, 1, kMaxPieceBytes / 2)) {}

absl::Status ShardSnapshotWriter::Put(const SnapshotPiece& piece) {
  const size_t size = piece.ByteSizeLong();
  if (size > kMaxPieceBytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "a snapshot piece of ", size, " bytes, more than ", kMaxPieceBytes, " a reader takes"));
  }
  std::string bytes(kLengthBytes, '\0');
  for (size_t i = 0; i < kLengthBytes; ++i) bytes[i] = static_cast<char>((size >> (8 * i)) & 0xff);
  if (!piece.AppendToString(&bytes)) {
    return absl::InternalError("a snapshot piece does not serialize");
  }
  if (absl::Status s = sink_.Write(bytes); !s.ok()) return s;
  ++pieces_;
  return absl::OkStatus();
}

absl::Status ShardSnapshotWriter::Start(uint32_t shard, uint64_t applied_index,
                                        const std::vector<change::v1::SchemaChange>& schema) {
  CHECK(stage_ == Stage::kNew) << "Start called twice";
  if (absl::Status s = sink_.Write(absl::string_view(kMagic, kMagicBytes)); !s.ok()) return s;
  SnapshotPiece piece;
  piece.mutable_start()->set_shard(shard);
  piece.mutable_start()->set_applied_index(applied_index);
  for (const change::v1::SchemaChange& c : schema) *piece.mutable_start()->add_schema() = c;
  if (schema_epoch_.has_value()) piece.mutable_start()->set_schema_epoch(*schema_epoch_);
  for (const change::v1::TableRoute& r : routes_) *piece.mutable_start()->add_table_routes() = r;
  for (const change::v1::TableRename& r : renames_) *piece.mutable_start()->add_table_renames() = r;
  stage_ = Stage::kApplied;
  return Put(piece);
}

absl::Status ShardSnapshotWriter::FlushApplied() {
  if (applied_.applied().applied_size() == 0) return absl::OkStatus();
  absl::Status s = Put(applied_);
  applied_.Clear();
  applied_bytes_ = 0;
  return s;
}

absl::Status ShardSnapshotWriter::FlushRows() {
  if (rows_.rows().rows_size() == 0) return absl::OkStatus();
  absl::Status s = Put(rows_);
  rows_.Clear();
  rows_bytes_ = 0;
  return s;
}

absl::Status ShardSnapshotWriter::FlushVersions() {
  if (versions_.versions().entries_size() == 0 && versions_.versions().conflicts_size() == 0) {
    return absl::OkStatus();
  }
  absl::Status s = Put(versions_);
  versions_.Clear();
  versions_bytes_ = 0;
  return s;
}

absl::Status ShardSnapshotWriter::FlushStage() {
  switch (stage_) {
    case Stage::kApplied:
      return FlushApplied();
    case Stage::kVersions:
      return FlushVersions();
    case Stage::kTables:
      return FlushRows();
    default:
      return absl::OkStatus();
  }
}

absl::Status ShardSnapshotWriter::MakeRoomForVersions(size_t size, const char* what) {
  CHECK(stage_ == Stage::kApplied || stage_ == Stage::kVersions)
      << what << " goes after the dedupe state, before the tables";
  if (stage_ == Stage::kApplied) {
    if (absl::Status s = FlushApplied(); !s.ok()) return s;
    stage_ = Stage::kVersions;
  }
  if (size + 64 > kMaxPieceBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, " of ", size, " bytes, more than a snapshot piece holds"));
  }
  if (versions_bytes_ > 0 && versions_bytes_ + size > piece_bytes_) return FlushVersions();
  return absl::OkStatus();
}

absl::Status ShardSnapshotWriter::AddedToVersions(size_t size) {
  versions_bytes_ += size;
  return versions_bytes_ >= piece_bytes_ ? FlushVersions() : absl::OkStatus();
}

absl::Status ShardSnapshotWriter::AddConflict(change::v1::SnapshotVersions::Conflict conflict) {
  const size_t size = conflict.ByteSizeLong() + kRowFraming;
  if (absl::Status s = MakeRoomForVersions(size, "a conflict"); !s.ok()) return s;
  *versions_.mutable_versions()->add_conflicts() = std::move(conflict);
  end_.set_conflicts(end_.conflicts() + 1);
  return AddedToVersions(size);
}

absl::Status ShardSnapshotWriter::AddVersion(change::v1::SnapshotVersions::Entry entry) {
  const size_t size = entry.ByteSizeLong() + kRowFraming;
  if (absl::Status s = MakeRoomForVersions(size, "a row version"); !s.ok()) return s;
  *versions_.mutable_versions()->add_entries() = std::move(entry);
  end_.set_versions(end_.versions() + 1);
  return AddedToVersions(size);
}

absl::Status ShardSnapshotWriter::AddApplied(const ShardSnapshot::Applied& applied) {
  CHECK(stage_ == Stage::kApplied) << "the dedupe state goes right after Start";
  *applied_.mutable_applied()->add_applied() = applied;
  applied_bytes_ += applied.ByteSizeLong() + kRowFraming;
  return applied_bytes_ >= piece_bytes_ ? FlushApplied() : absl::OkStatus();
}

absl::Status ShardSnapshotWriter::StartTable(const ShardSnapshot::Table& table) {
  CHECK(stage_ == Stage::kApplied || stage_ == Stage::kVersions || stage_ == Stage::kTables)
      << "tables go before dead letters";
  CHECK_EQ(table.values_size(), 0) << "rows go in AddRow";
  if (absl::Status s = FlushStage(); !s.ok()) return s;
  stage_ = Stage::kTables;
  row_width_ = RowWidth(table);
  SnapshotPiece piece;
  *piece.mutable_table() = table;
  end_.set_tables(end_.tables() + 1);
  return Put(piece);
}

absl::Status ShardSnapshotWriter::AddRow(SnapshotRow row) {
  CHECK(stage_ == Stage::kTables) << "a row before its table";
  CHECK_EQ(static_cast<size_t>(row.values_size()), row_width_)
      << "a row of another width than its table";
  const size_t size = row.ByteSizeLong() + kRowFraming;
  if (size + 64 > kMaxPieceBytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "a row of ", size, " bytes, more than a snapshot piece holds (", kMaxPieceBytes, ")"));
  }
  if (rows_bytes_ > 0 && rows_bytes_ + size > piece_bytes_) {
    if (absl::Status s = FlushRows(); !s.ok()) return s;
  }
  *rows_.mutable_rows()->add_rows() = std::move(row);
  rows_bytes_ += size;
  end_.set_rows(end_.rows() + 1);
  return rows_bytes_ >= piece_bytes_ ? FlushRows() : absl::OkStatus();
}

absl::Status ShardSnapshotWriter::AddDeadLetter(const ShardSnapshot::DeadLetter& dead_letter) {
  CHECK(stage_ != Stage::kNew && stage_ != Stage::kDone) << "a dead letter outside a snapshot";
  if (stage_ != Stage::kDeadLetters) {
    if (absl::Status s = FlushStage(); !s.ok()) return s;
    stage_ = Stage::kDeadLetters;
  }
  SnapshotPiece piece;
  *piece.mutable_dead_letter() = dead_letter;
  end_.set_dead_letters(end_.dead_letters() + 1);
  return Put(piece);
}

absl::Status ShardSnapshotWriter::Finish() {
  CHECK(stage_ != Stage::kNew && stage_ != Stage::kDone) << "Finish outside a snapshot";
  if (absl::Status s = FlushStage(); !s.ok()) return s;
  stage_ = Stage::kDone;
  end_.set_pieces(pieces_);
  SnapshotPiece piece;
  *piece.mutable_end() = end_;
  return Put(piece);
}

// ---------------------------------------------------------------------------------------------
// Reader

ShardSnapshotReader::ShardSnapshotReader(const raft::host::SnapshotSource& source,
                                         uint64_t max_piece_bytes)
    : source_(source), max_piece_bytes_(max_piece_bytes) {}

absl::Status ShardSnapshotReader::Corrupt(const std::string& what) const {
  return absl::DataLossError(
      absl::StrCat("snapshot payload at byte ", offset_, " of ", source_.size(), ": ", what));
}

void ShardSnapshotReader::Rewind() {
  offset_ = 0;
  peeked_.reset();
  start_.Clear();
  applied_.clear();
  table_rows_offset_ = rows_before_table_ = pieces_before_table_ = 0;
  row_width_ = 0;
  in_table_ = tables_done_ = done_ = false;
  pieces_ = tables_ = rows_ = dead_letters_ = versions_ = conflicts_ = 0;
}

absl::StatusOr<const SnapshotPiece*> ShardSnapshotReader::Peek() {
  if (peeked_.has_value()) return &*peeked_;
  const uint64_t size = source_.size();
  if (offset_ == size) return nullptr;
  if (size - offset_ < kLengthBytes) return Corrupt("a piece's length is cut off");
  std::string bytes;
  if (absl::Status s = source_.ReadAt(offset_, kLengthBytes, &bytes); !s.ok()) return s;
  uint64_t length = 0;
  for (size_t i = 0; i < kLengthBytes; ++i) {
    length |= uint64_t{static_cast<unsigned char>(bytes[i])} << (8 * i);
  }
  if (length > max_piece_bytes_) {
    return Corrupt(absl::StrCat("a piece of ", length, " bytes, more than the ", max_piece_bytes_,
                                " allowed"));
  }
  if (length > size - offset_ - kLengthBytes) {
    return Corrupt(absl::StrCat("a piece of ", length, " bytes is cut off"));
  }
  if (absl::Status s = source_.ReadAt(offset_ + kLengthBytes, length, &bytes); !s.ok()) return s;
  SnapshotPiece piece;
  if (!piece.ParseFromString(bytes)) return Corrupt("a piece that does not parse");
  if (piece.piece_case() == SnapshotPiece::PIECE_NOT_SET) {
    return Corrupt("a piece of an unknown kind");
  }
  peeked_ = std::move(piece);
  peeked_bytes_ = kLengthBytes + length;
  return &*peeked_;
}

void ShardSnapshotReader::Consume() {
  CHECK(peeked_.has_value());
  offset_ += peeked_bytes_;
  peeked_.reset();
  ++pieces_;
}

uint64_t ShardSnapshotReader::schema_epoch() const {
  if (start_.has_schema_epoch()) return start_.schema_epoch();
  return start_.shard() == 0 ? start_.applied_index() : 0;
}

absl::Status ShardSnapshotReader::ReadHeader() {
  Rewind();
  std::string magic;
  if (source_.size() < kMagicBytes) return Corrupt("too short to be a snapshot");
  if (absl::Status s = source_.ReadAt(0, kMagicBytes, &magic); !s.ok()) return s;
  if (magic != absl::string_view(kMagic, kMagicBytes)) {
    return Corrupt("not a marmot shard snapshot");
  }
  offset_ = kMagicBytes;
  absl::StatusOr<const SnapshotPiece*> p = Peek();
  if (!p.ok()) return p.status();
  if (*p == nullptr || !(*p)->has_start()) return Corrupt("no start piece");
  start_ = (*p)->start();
  Consume();
  for (;;) {
    p = Peek();
    if (!p.ok()) return p.status();
    if (*p == nullptr || !(*p)->has_applied()) break;
    for (const ShardSnapshot::Applied& a : (*p)->applied().applied()) applied_.push_back(a);
    Consume();
  }
  return absl::OkStatus();
}

absl::Status ShardSnapshotReader::CheckTable(const ShardSnapshot::Table& t) const {
  if (t.table().empty()) return Corrupt("a table without a name");
  if (t.columns_size() == 0) return Corrupt(absl::StrCat("table ", t.table(), " has no columns"));
  if (t.values_size() != 0) {
    return Corrupt(absl::StrCat("table ", t.table(), " carries values in its header"));
  }
  std::set<std::string> columns(t.columns().begin(), t.columns().end());
  if (columns.size() != static_cast<size_t>(t.columns_size())) {
    return Corrupt(absl::StrCat("table ", t.table(), " names a column twice"));
  }
  for (const std::string& k : t.key_columns()) {
    if (!columns.count(k)) {
      return Corrupt(absl::StrCat("table ", t.table(), " has a key column it does not have"));
    }
  }
  if (t.keyed_by_rowid() != t.key_columns().empty()) {
    return Corrupt(
        absl::StrCat("table ", t.table(), " is keyed both by rowid and by columns, or by neither"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<change::v1::SnapshotVersions>> ShardSnapshotReader::NextVersions() {
  CHECK_GT(offset_, 0u) << "NextVersions before ReadHeader";
  if (tables_ > 0 || tables_done_) return std::nullopt;
  absl::StatusOr<const SnapshotPiece*> p = Peek();
  if (!p.ok()) return p.status();
  if (*p == nullptr || !(*p)->has_versions()) return std::nullopt;
  change::v1::SnapshotVersions versions = std::move(*peeked_->mutable_versions());
  versions_ += versions.entries_size();
  conflicts_ += versions.conflicts_size();
  Consume();
  return versions;
}

absl::StatusOr<std::optional<ShardSnapshot::Table>> ShardSnapshotReader::NextTable() {
  CHECK_GT(offset_, 0u) << "NextTable before ReadHeader";
  if (tables_done_) return std::nullopt;
  for (;;) {
    absl::StatusOr<const SnapshotPiece*> p = Peek();
    if (!p.ok()) return p.status();
    if (*p == nullptr) return Corrupt("the payload ends without its end piece");
    if ((*p)->has_versions()) {
      if (tables_ > 0) return Corrupt("row versions after a table");
      versions_ += (*p)->versions().entries_size();
      conflicts_ += (*p)->versions().conflicts_size();
      Consume();
      continue;
    }
    if ((*p)->has_rows()) {
      if (!in_table_) return Corrupt("rows before any table");
      rows_ += (*p)->rows().rows_size();
      Consume();
      continue;
    }
    if ((*p)->has_table()) {
      ShardSnapshot::Table t = (*p)->table();
      if (absl::Status s = CheckTable(t); !s.ok()) return s;
      Consume();
      in_table_ = true;
      row_width_ = RowWidth(t);
      ++tables_;
      table_rows_offset_ = offset_;
      rows_before_table_ = rows_;
      pieces_before_table_ = pieces_;
      return t;
    }
    if ((*p)->has_dead_letter() || (*p)->has_end()) {
      in_table_ = false;
      tables_done_ = true;
      return std::nullopt;
    }
    return Corrupt("a piece out of order among the tables");
  }
}

absl::StatusOr<std::optional<SnapshotRows>> ShardSnapshotReader::NextRows() {
  if (!in_table_) return std::nullopt;
  absl::StatusOr<const SnapshotPiece*> p = Peek();
  if (!p.ok()) return p.status();
  if (*p == nullptr || !(*p)->has_rows()) return std::nullopt;
  for (const SnapshotRow& row : (*p)->rows().rows()) {
    if (static_cast<size_t>(row.values_size()) != row_width_) {
      return Corrupt(
          absl::StrCat("a row of ", row.values_size(), " values in a table of ", row_width_));
    }
  }
  SnapshotRows rows = std::move(*peeked_->mutable_rows());
  rows_ += rows.rows_size();
  Consume();
  return rows;
}

void ShardSnapshotReader::RewindTable() {
  CHECK(in_table_) << "RewindTable outside a table";
  offset_ = table_rows_offset_;
  peeked_.reset();
  rows_ = rows_before_table_;
  pieces_ = pieces_before_table_;
}

absl::Status ShardSnapshotReader::CheckEnd() {
  const change::v1::SnapshotEnd& end = peeked_->end();
  if (end.tables() != tables_ || end.rows() != rows_ || end.dead_letters() != dead_letters_ ||
      end.pieces() != pieces_ || end.versions() != versions_ || end.conflicts() != conflicts_) {
    return Corrupt(absl::StrCat("the end piece counts ", end.tables(), " tables, ", end.rows(),
                                " rows, ", end.dead_letters(), " dead letters, ", end.versions(),
                                " row versions, ", end.pieces(), " pieces; read were ", tables_,
                                ", ", rows_, ", ", dead_letters_, ", ", versions_, ", ", pieces_));
  }
  Consume();
  if (offset_ != source_.size()) return Corrupt("bytes after the end piece");
  return absl::OkStatus();
}

absl::StatusOr<std::optional<ShardSnapshot::DeadLetter>> ShardSnapshotReader::NextDeadLetter() {
  if (done_) return std::nullopt;
  while (!tables_done_) {
    absl::StatusOr<std::optional<ShardSnapshot::Table>> t = NextTable();
    if (!t.ok()) return t.status();
  }
  absl::StatusOr<const SnapshotPiece*> p = Peek();
  if (!p.ok()) return p.status();
  if (*p == nullptr) return Corrupt("the payload ends without its end piece");
  if ((*p)->has_dead_letter()) {
    ShardSnapshot::DeadLetter d = std::move(*peeked_->mutable_dead_letter());
    ++dead_letters_;
    Consume();
    return d;
  }
  if (!(*p)->has_end()) return Corrupt("a piece out of order among the dead letters");
  if (absl::Status s = CheckEnd(); !s.ok()) return s;
  done_ = true;
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------

absl::Status CheckShardSnapshot(uint32_t shard, const raft::host::SnapshotSource& payload,
                                uint64_t max_piece_bytes) {
  if (payload.size() == 0) return absl::OkStatus();
  ShardSnapshotReader reader(payload, max_piece_bytes);
  if (absl::Status s = reader.ReadHeader(); !s.ok()) return s;
  if (reader.shard() != shard) {
    return absl::DataLossError(
        absl::StrCat("a snapshot of shard ", reader.shard(), ", not of shard ", shard));
  }
  for (;;) {
    absl::StatusOr<std::optional<ShardSnapshot::Table>> t = reader.NextTable();
    if (!t.ok()) return t.status();
    if (!t->has_value()) break;
    for (;;) {
      absl::StatusOr<std::optional<SnapshotRows>> rows = reader.NextRows();
      if (!rows.ok()) return rows.status();
      if (!rows->has_value()) break;
    }
  }
  for (;;) {
    absl::StatusOr<std::optional<ShardSnapshot::DeadLetter>> d = reader.NextDeadLetter();
    if (!d.ok()) return d.status();
    if (!d->has_value()) return absl::OkStatus();
  }
}

absl::Status WriteShardSnapshot(const ShardSnapshot& snapshot, raft::host::SnapshotSink& sink,
                                size_t piece_bytes) {
  ShardSnapshotWriter w(sink, piece_bytes);
  if (absl::Status s = w.Start(snapshot.shard(), snapshot.applied_index()); !s.ok()) return s;
  for (const ShardSnapshot::Applied& a : snapshot.applied()) {
    if (absl::Status s = w.AddApplied(a); !s.ok()) return s;
  }
  for (const ShardSnapshot::Table& t : snapshot.tables()) {
    ShardSnapshot::Table header = t;
    header.clear_values();
    const size_t width = RowWidth(t);
    if (width == 0 || t.values_size() % width != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("the values of table ", t.table(), " do not divide into rows"));
    }
    if (absl::Status s = w.StartTable(header); !s.ok()) return s;
    for (int start = 0; start < t.values_size(); start += static_cast<int>(width)) {
      SnapshotRow row;
      for (size_t i = 0; i < width; ++i) *row.add_values() = t.values(start + static_cast<int>(i));
      if (absl::Status s = w.AddRow(std::move(row)); !s.ok()) return s;
    }
  }
  for (const ShardSnapshot::DeadLetter& d : snapshot.dead_letters()) {
    if (absl::Status s = w.AddDeadLetter(d); !s.ok()) return s;
  }
  return w.Finish();
}

absl::StatusOr<ShardSnapshot> ReadShardSnapshot(const raft::host::SnapshotSource& source) {
  ShardSnapshotReader reader(source);
  if (absl::Status s = reader.ReadHeader(); !s.ok()) return s;
  ShardSnapshot snap;
  snap.set_shard(reader.shard());
  snap.set_applied_index(reader.applied_index());
  for (const ShardSnapshot::Applied& a : reader.applied()) *snap.add_applied() = a;
  for (;;) {
    absl::StatusOr<std::optional<ShardSnapshot::Table>> t = reader.NextTable();
    if (!t.ok()) return t.status();
    if (!t->has_value()) break;
    ShardSnapshot::Table* out = snap.add_tables();
    *out = **t;
    for (;;) {
      absl::StatusOr<std::optional<SnapshotRows>> rows = reader.NextRows();
      if (!rows.ok()) return rows.status();
      if (!rows->has_value()) break;
      for (SnapshotRow& row : *(*rows)->mutable_rows()) {
        for (change::v1::Value& v : *row.mutable_values()) *out->add_values() = std::move(v);
      }
    }
  }
  for (;;) {
    absl::StatusOr<std::optional<ShardSnapshot::DeadLetter>> d = reader.NextDeadLetter();
    if (!d.ok()) return d.status();
    if (!d->has_value()) return snap;
    *snap.add_dead_letters() = **d;
  }
}

}  // namespace marmot::replicator
