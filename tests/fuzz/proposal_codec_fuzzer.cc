// Fuzz target: a Raft entry's data decoded as NodeHost frames proposals
// (raft/host/proposal_codec.h). Whatever the bytes, nothing crashes; what decodes encodes back
// to exactly the same bytes (the framing has one encoding), and what does not leaves nothing.
#include <string>
#include <vector>

#include "glog/logging.h"
#include "raft/host/proposal_codec.h"
#include "tests/fuzz/fuzz_target.h"

namespace marmot::fuzz {
namespace {

using raft::host::DecodedProposal;

constexpr uint64_t kPackedBit = uint64_t{1} << 63;

int Run(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  uint64_t proposer = 0;
  std::vector<DecodedProposal> out;
  absl::Status s = raft::host::DecodeProposals(std::string(bytes), &proposer, &out);
  if (!s.ok()) {
    CHECK(out.empty()) << "a refused entry left proposals behind";
    return 0;
  }
  CHECK_EQ(proposer & kPackedBit, 0u);
  const bool packed = (static_cast<unsigned char>(bytes[7]) & 0x80) != 0;
  std::string again;
  if (!packed) {
    CHECK_EQ(out.size(), 1u);
    again = raft::host::EncodeSingle(proposer, out[0].id, out[0].payload);
  } else {
    raft::host::PackWriter w(proposer, bytes.size());
    for (const DecodedProposal& p : out) w.Add(p.id, p.payload);
    again = w.Take();
  }
  CHECK(again == bytes) << "decoding then encoding changed the entry (" << bytes.size()
                        << " bytes became " << again.size() << ")";
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
