#include "raft/host/stream_intake.h"

#include <utility>

#include "glog/logging.h"

namespace marmot::raft::host {

namespace tv1 = ::marmot::raft::transport::v1;

StreamIntake::Delivery StreamIntake::Take(tv1::MessageBatch batch) {
  Delivery d;
  if (batch.messages_size() == 0 && !batch.has_piece()) return d;
  if (batch.to_node() != node_id_ || batch.from_node() != peer_) {
    d.refused = batch.messages_size() + (batch.has_piece() ? 1 : 0);
    LOG_EVERY_N(WARNING, 64) << "[node " << node_id_ << "] dropping a batch on node " << peer_
                             << "'s stream from node " << batch.from_node() << " to node "
                             << batch.to_node() << " (" << google::COUNTER << " so far)";
    return d;
  }
  d.messages.reserve(batch.messages_size() + 1);
  for (v1::Message& m : *batch.mutable_messages()) Admit(std::move(m), d);
  if (batch.has_piece()) {
    absl::StatusOr<std::optional<v1::Message>> whole = assembler_.Add(batch.piece());
    if (!whole.ok()) {
      LOG_EVERY_N(WARNING, 64) << "[node " << node_id_ << "] dropping a large message from node "
                               << peer_ << ": " << whole.status().message() << " ("
                               << google::COUNTER << " so far)";
    } else if (whole->has_value()) {
      Admit(std::move(**whole), d);
    }
  }
  return d;
}

void StreamIntake::Admit(v1::Message m, Delivery& d) const {
  const bool from_ok = m.from() == peer_ || m.type() == v1::MSG_TRANSFER_LEADER;
  if (!from_ok || m.to() != node_id_) {
    ++d.refused;
    LOG_EVERY_N(WARNING, 64) << "[shard " << m.shard() << " node " << node_id_
                             << "] dropping a message from node " << m.from() << " to node "
                             << m.to() << " on node " << peer_ << "'s stream (type " << m.type()
                             << ", " << google::COUNTER << " so far)";
    return;
  }
  d.messages.push_back(std::move(m));
}

}  // namespace marmot::raft::host
