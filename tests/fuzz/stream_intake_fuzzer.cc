// Fuzz target: the batches of one node-to-node `Stream` call after its handshake, read by node 2
// on its stream with node 1 (raft/host/stream_intake.h). Whatever the bytes, nothing crashes,
// only messages from node 1 (or a leadership transfer, whose `from` names the transferee) to
// node 2 come out, and no more than one partial message is held.
#include <utility>

#include "glog/logging.h"
#include "raft/host/message_pieces.h"
#include "raft/host/stream_intake.h"
#include "tests/fuzz/fuzz_input.pb.h"
#include "tests/fuzz/fuzz_target.h"

namespace marmot::fuzz {
namespace {

using raft::host::StreamIntake;
namespace v1 = ::marmot::raft::v1;

constexpr uint64_t kNode = 2;
constexpr uint64_t kPeer = 1;

int Run(const uint8_t* data, size_t size) {
  inputs::StreamInput in;
  if (!in.ParseFromArray(data, static_cast<int>(size))) return -1;
  StreamIntake intake(kNode, kPeer);
  for (auto& batch : *in.mutable_batches()) {
    const int sent = batch.messages_size() + (batch.has_piece() ? 1 : 0);
    StreamIntake::Delivery d = intake.Take(std::move(batch));
    for (const v1::Message& m : d.messages) {
      CHECK_EQ(m.to(), kNode) << "delivered a message addressed to another node";
      CHECK(m.from() == kPeer || m.type() == v1::MSG_TRANSFER_LEADER)
          << "delivered a message in another sender's name: " << m.ShortDebugString();
    }
    CHECK_LE(d.messages.size() + d.refused, static_cast<size_t>(sent))
        << "more messages out than the batch carried";
    CHECK_LE(intake.partial_bytes(), raft::host::kMaxRaftMessageBytes);
  }
  return 0;
}

}  // namespace
}  // namespace marmot::fuzz

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  marmot::fuzz::QuietLogs((*argv)[0]);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return marmot::fuzz::Run(data, size);
}
