// Fuzz target: a sender's outbox and a receiver's stream together (raft/host/message_pieces.h,
// stream_intake.h). Node 1 queues arbitrary messages for node 2 with an arbitrary batch size,
// writing rounds as its sender thread does (every ready batch, then one piece of the large
// message in progress); node 2 takes each write. What node 2 gets is exactly what the outbox
// accepted, each shard's messages in the order they were queued; no batch holds more than the
// batch size (or one message), no piece more than the batch size.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "glog/logging.h"
#include "raft/host/message_pieces.h"
#include "raft/host/stream_intake.h"
#include "tests/fuzz/fuzz_input.pb.h"
#include "tests/fuzz/fuzz_target.h"

namespace marmot::fuzz {
namespace {

using raft::host::PeerOutbox;
using raft::host::PeerOutboxOptions;
using raft::host::StreamIntake;
namespace rv1 = ::marmot::raft::v1;
namespace tv1 = ::marmot::raft::transport::v1;

constexpr uint64_t kSender = 1;
constexpr uint64_t kReceiver = 2;

struct Pair {
  explicit Pair(const PeerOutboxOptions& o) : options(o), outbox(o), intake(kReceiver, kSender) {}

  // One round of the sender thread, each write taken by the receiver.
  void Round() {
    tv1::MessageBatch b;
    while (outbox.NextBatch(&b)) {
      size_t bytes = 0;
      for (const rv1::Message& m : b.messages()) bytes += m.ByteSizeLong();
      CHECK(b.messages_size() == 1 || bytes <= options.batch_bytes)
          << b.messages_size() << " messages of " << bytes << " bytes in a batch of "
          << options.batch_bytes;
      Write(b);
    }
    if (outbox.NextPiece(&b)) {
      CHECK_LE(b.piece().data().size(), options.batch_bytes);
      CHECK_GT(b.piece().data().size(), 0u);
      Write(b);
    }
  }

  void Write(tv1::MessageBatch& b) {
    b.set_from_node(kSender);
    b.set_to_node(kReceiver);
    StreamIntake::Delivery d = intake.Take(std::move(b));
    CHECK_EQ(d.refused, 0u) << "the receiver refused what the sender wrote";
    for (rv1::Message& m : d.messages) got[m.shard()].push_back(m.SerializeAsString());
  }

  const PeerOutboxOptions options;
  PeerOutbox outbox;
  StreamIntake intake;
  std::map<uint64_t, std::vector<std::string>> got;  // per shard, in order
};

int Run(const uint8_t* data, size_t size) {
  inputs::OutboxInput in;
  if (!in.ParseFromArray(data, static_cast<int>(size))) return -1;
  PeerOutboxOptions o;
  // Small batches, so that the inputs' messages go in pieces as often as not.
  o.batch_bytes = 1 + in.batch_bytes() % 4096;
  o.max_held_messages = 64;
  o.max_held_bytes = 1 << 16;
  Pair pair(o);
  std::map<uint64_t, std::vector<std::string>> accepted;
  int queued = 0;
  for (rv1::Message& m : *in.mutable_messages()) {
    // The host's messages to a peer come from this node and go to that peer.
    m.set_from(kSender);
    m.set_to(kReceiver);
    std::string bytes = m.SerializeAsString();
    const uint64_t shard = m.shard();
    if (pair.outbox.Add(std::move(m))) accepted[shard].push_back(std::move(bytes));
    if (in.drain_every() != 0 && ++queued % in.drain_every() == 0) pair.Round();
  }
  for (int rounds = 0; !pair.outbox.empty(); ++rounds) {
    CHECK_LT(rounds, 1 << 20) << "the outbox does not drain";
    pair.Round();
  }
  CHECK_EQ(pair.intake.partial_bytes(), 0u) << "a large message was left unfinished";
  CHECK(pair.got == accepted) << "the receiver did not get exactly what the outbox accepted, "
                                 "in each shard's order";
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
