#include "raft/host/proposal_codec.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace marmot::raft::host {
namespace {

constexpr uint64_t kPackedBit = uint64_t{1} << 63;

void PutU64(std::string* s, uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
  s->append(b, 8);
}

void PutU32(std::string* s, uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(v >> (8 * i));
  s->append(b, 4);
}

uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

}  // namespace

std::string EncodeSingle(uint64_t proposer, uint64_t id, absl::string_view payload) {
  std::string s;
  s.reserve(kSingleHeaderBytes + payload.size());
  PutU64(&s, proposer);
  PutU64(&s, id);
  s.append(payload.data(), payload.size());
  return s;
}

PackWriter::PackWriter(uint64_t proposer, size_t reserve) {
  data_.reserve(reserve);
  PutU64(&data_, proposer | kPackedBit);
}

void PackWriter::Add(uint64_t id, absl::string_view payload) {
  PutU64(&data_, id);
  PutU32(&data_, static_cast<uint32_t>(payload.size()));
  data_.append(payload.data(), payload.size());
}

absl::Status DecodeProposals(std::string&& data, uint64_t* proposer,
                             std::vector<DecodedProposal>* out) {
  out->clear();
  if (data.size() < kPackHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("entry of ", data.size(), " bytes has no proposal header"));
  }
  const uint64_t first = GetU64(data.data());
  if ((first & kPackedBit) == 0) {
    if (data.size() < kSingleHeaderBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("entry of ", data.size(), " bytes has no proposal header"));
    }
    *proposer = first;
    DecodedProposal& p = out->emplace_back();
    p.id = GetU64(data.data() + 8);
    p.payload = std::move(data);
    p.payload.erase(0, kSingleHeaderBytes);  // in place: no copy of the payload elsewhere
    return absl::OkStatus();
  }
  *proposer = first & ~kPackedBit;
  const char* p = data.data() + kPackHeaderBytes;
  const char* end = data.data() + data.size();
  while (p < end) {
    if (static_cast<size_t>(end - p) < kPackItemHeaderBytes) break;
    const uint64_t id = GetU64(p);
    const uint32_t size = GetU32(p + 8);
    if (static_cast<size_t>(end - p) - kPackItemHeaderBytes < size) break;
    out->push_back(DecodedProposal{id, std::string(p + kPackItemHeaderBytes, size)});
    p += kPackItemHeaderBytes + size;
  }
  if (p != end) {
    out->clear();
    return absl::InvalidArgumentError("pack of proposals is truncated");
  }
  return absl::OkStatus();
}

}  // namespace marmot::raft::host
