#include "raft/host/message_pieces.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace marmot::raft::host {

namespace tv1 = ::marmot::raft::transport::v1;

PeerOutbox::PeerOutbox(PeerOutboxOptions options) : options_(options) {
  CHECK_GT(options_.batch_bytes, 0u) << "PeerOutbox needs a positive batch size";
}

bool PeerOutbox::Add(v1::Message m) {
  const size_t bytes = m.ByteSizeLong();
  if (bytes > kMaxRaftMessageBytes) {
    LOG(ERROR) << "[shard " << m.shard() << "] dropping a message of type " << m.type()
               << " to node " << m.to() << ": " << bytes
               << " bytes is more than protobuf can carry (" << kMaxRaftMessageBytes << ")";
    return false;
  }
  return Place(Sized{std::move(m), bytes});
}

bool PeerOutbox::ShardWaits(uint64_t shard) const {
  if (large_ && large_->shard == shard) return true;
  auto it = held_per_shard_.find(shard);
  return it != held_per_shard_.end() && it->second > 0;
}

bool PeerOutbox::Place(Sized s) {
  const uint64_t shard = s.message.shard();
  const bool large = s.bytes > options_.batch_bytes;
  if (ShardWaits(shard) || (large && large_)) {
    // Behind an earlier message of its shard, or a second large message: one at a time, so
    // that the receiver reassembles one and holds at most one partial message per stream.
    const bool full = held_.size() >= options_.max_held_messages ||
                      (!held_.empty() && held_bytes_ + s.bytes > options_.max_held_bytes);
    if (full) {
      VLOG(1) << "[shard " << shard << "] outbox holds " << held_.size() << " message(s), "
              << held_bytes_ << " bytes behind a large message; dropping one of " << s.bytes
              << " bytes to node " << s.message.to();
      return false;
    }
    held_bytes_ += s.bytes;
    ++held_per_shard_[shard];
    held_.push_back(std::move(s));
    return true;
  }
  if (large) {
    Large l;
    l.shard = shard;
    CHECK(s.message.SerializeToString(&l.bytes))
        << "[shard " << shard << "] cannot serialize a message of " << s.bytes << " bytes";
    large_ = std::move(l);
    return true;
  }
  ready_.push_back(std::move(s));
  return true;
}

bool PeerOutbox::NextBatch(tv1::MessageBatch* batch) {
  batch->Clear();
  if (ready_.empty()) return false;
  size_t bytes = 0;
  while (!ready_.empty() &&
         (batch->messages_size() == 0 || bytes + ready_.front().bytes <= options_.batch_bytes)) {
    bytes += ready_.front().bytes;
    *batch->add_messages() = std::move(ready_.front().message);
    ready_.pop_front();
  }
  return true;
}

bool PeerOutbox::NextPiece(tv1::MessageBatch* batch) {
  batch->Clear();
  if (!large_) return false;
  Large& l = *large_;
  const size_t n = std::min(options_.batch_bytes, l.bytes.size() - l.offset);
  tv1::MessagePiece* piece = batch->mutable_piece();
  piece->set_total_size(l.bytes.size());
  piece->set_offset(l.offset);
  piece->set_data(l.bytes.data() + l.offset, n);
  l.offset += n;
  if (l.offset < l.bytes.size()) return true;
  // Done: what waited behind it goes where it would have gone had it come now, in order.
  large_.reset();
  std::deque<Sized> held;
  held.swap(held_);
  held_per_shard_.clear();
  held_bytes_ = 0;
  for (Sized& s : held) Place(std::move(s));
  return true;
}

void PeerOutbox::Clear() {
  ready_.clear();
  large_.reset();
  held_.clear();
  held_per_shard_.clear();
  held_bytes_ = 0;
}

absl::StatusOr<std::optional<v1::Message>> MessageAssembler::Add(const tv1::MessagePiece& piece) {
  auto fail = [this](std::string why) {
    std::string().swap(buffer_);
    total_ = 0;
    return absl::InvalidArgumentError(std::move(why));
  };
  if (piece.offset() == 0) {
    // A new message; one left unfinished was abandoned by the sender (it drops what it queued
    // when a fault is injected or a write fails).
    if (piece.total_size() == 0 || piece.total_size() > kMaxRaftMessageBytes) {
      return fail(absl::StrCat("a message piece claims a total of ", piece.total_size(), " bytes"));
    }
    std::string().swap(buffer_);
    total_ = piece.total_size();
    // The sender is a member of the cluster and the size is bounded: one allocation of the
    // exact size keeps a large message at one copy while it arrives.
    buffer_.reserve(total_);
  } else if (total_ == 0 || piece.offset() != buffer_.size() || piece.total_size() != total_) {
    return fail(absl::StrCat("a message piece at offset ", piece.offset(), " of ",
                             piece.total_size(), " bytes does not continue the ", buffer_.size(),
                             " of ", total_, " bytes received"));
  }
  if (piece.data().empty() || piece.data().size() > total_ - buffer_.size()) {
    return fail(absl::StrCat("a message piece of ", piece.data().size(), " bytes at offset ",
                             piece.offset(), " does not fit a message of ", total_, " bytes"));
  }
  buffer_.append(piece.data());
  if (buffer_.size() < total_) return std::optional<v1::Message>();
  v1::Message m;
  const bool parsed = m.ParseFromString(buffer_);
  std::string().swap(buffer_);
  total_ = 0;
  if (!parsed) return absl::InvalidArgumentError("an assembled message does not parse");
  return std::optional<v1::Message>(std::move(m));
}

}  // namespace marmot::raft::host
