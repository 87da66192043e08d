#include "raft/host/peer_auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace marmot::raft::host {

namespace {

constexpr absl::string_view kStreamServerLabel = "marmot stream server v1";
constexpr absl::string_view kStreamClientLabel = "marmot stream client v1";
constexpr absl::string_view kSnapshotLabel = "marmot snapshot v1";
constexpr absl::string_view kIdentifyLabel = "marmot identify v1";

}  // namespace

absl::StatusOr<ClusterKey> ClusterKey::FromSecret(absl::string_view secret) {
  absl::string_view key = absl::StripTrailingAsciiWhitespace(secret);
  if (key.size() < kMinClusterKeyBytes) {
    return absl::InvalidArgumentError(absl::StrCat("the cluster key must be at least ",
                                                   kMinClusterKeyBytes, " bytes long (got ",
                                                   key.size(), ")"));
  }
  return ClusterKey(std::string(key));
}

std::string ClusterKey::Prove(absl::string_view label,
                              std::initializer_list<absl::string_view> fields) const {
  // label || (len || field)*: the length prefixes make the encoding injective, so that
  // ("ab", "c") and ("a", "bc") never share a proof.
  std::string msg = ProofField(label.size());
  msg.append(label.data(), label.size());
  for (absl::string_view f : fields) {
    msg += ProofField(f.size());
    msg.append(f.data(), f.size());
  }
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  CHECK(HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
             reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out, &len) != nullptr)
      << "HMAC-SHA256 failed";
  CHECK_EQ(len, kProofBytes);
  return std::string(reinterpret_cast<const char*>(out), len);
}

bool ClusterKey::Verify(absl::string_view proof, absl::string_view label,
                        std::initializer_list<absl::string_view> fields) const {
  return SameProof(proof, Prove(label, fields));
}

bool SameProof(absl::string_view a, absl::string_view b) {
  // The length is public (always kProofBytes); only the contents must not leak through timing.
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string FreshNonce() {
  std::string n(kNonceBytes, '\0');
  CHECK_EQ(RAND_bytes(reinterpret_cast<unsigned char*>(n.data()), static_cast<int>(n.size())), 1)
      << "the system's random generator failed";
  return n;
}

std::string ProofField(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return out;
}

std::string StreamServerProof(const ClusterKey& key, absl::string_view client_nonce,
                              absl::string_view server_nonce, uint64_t from, uint64_t to,
                              uint64_t shards) {
  return key.Prove(kStreamServerLabel, {client_nonce, server_nonce, ProofField(from),
                                        ProofField(to), ProofField(shards)});
}

std::string StreamClientProof(const ClusterKey& key, absl::string_view client_nonce,
                              absl::string_view server_nonce, uint64_t from, uint64_t to,
                              uint64_t shards) {
  return key.Prove(kStreamClientLabel, {client_nonce, server_nonce, ProofField(from),
                                        ProofField(to), ProofField(shards)});
}

std::string IdentifyProof(const ClusterKey& key, absl::string_view nonce,
                          const IdentifyProofFields& f) {
  return key.Prove(kIdentifyLabel,
                   {nonce, ProofField(f.from), ProofField(f.to), ProofField(f.incarnation),
                    ProofField(f.live_incarnation), f.live_bind_address, f.live_peer});
}

std::string SnapshotProof(const ClusterKey& key, absl::string_view server_nonce,
                          const SnapshotProofFields& f) {
  return key.Prove(kSnapshotLabel,
                   {server_nonce, ProofField(f.from), ProofField(f.to), ProofField(f.shards),
                    ProofField(f.shard), ProofField(f.index), ProofField(f.term),
                    ProofField(f.total_size), ProofField(f.checksum)});
}

}  // namespace marmot::raft::host
