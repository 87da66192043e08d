// PeerAuth: how two nodes prove to each other that they hold the cluster key, without ever
// sending it (DESIGN.md, "Security model").
//
// The key is a shared secret (CLUSTER_KEY or -cluster-key-file). A proof is
// HMAC-SHA256(key, label || fields), every field length-prefixed so that no two different field
// lists encode alike, and the label naming the role ("stream server", "stream client",
// "snapshot") so that a proof made for one role can never be reflected back as another.
//
// Freshness comes from nonces: each side of a `Stream` call sends 32 fresh random bytes and
// proves the key over BOTH nonces, so a recorded handshake is worthless for the next call (its
// nonces differ). `SendSnapshot` is a client stream, so the receiver speaks first with its own
// nonce, and the sender's proof covers that nonce and the snapshot's header: one proof admits
// one snapshot on one call. See grpc_transport.h for where the proofs travel.
//
// What this does not give: secrecy or integrity of what follows the handshake on a plaintext
// connection (an on-path attacker who can rewrite TCP could take over an authenticated call).
// Mutual TLS gives those; the two can be combined.
#ifndef MARMOT_RAFT_HOST_PEER_AUTH_H_
#define MARMOT_RAFT_HOST_PEER_AUTH_H_

#include <cstdint>
#include <initializer_list>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace marmot::raft::host {

// Bytes of a nonce and of a proof.
inline constexpr size_t kNonceBytes = 32;
inline constexpr size_t kProofBytes = 32;

// A key shorter than this is refused: a guessable key authenticates nobody.
inline constexpr size_t kMinClusterKeyBytes = 16;

class ClusterKey {
 public:
  // The secret as given (trailing whitespace and newlines, as a key file usually ends, are
  // dropped). InvalidArgument if what remains is shorter than kMinClusterKeyBytes.
  static absl::StatusOr<ClusterKey> FromSecret(absl::string_view secret);

  // HMAC-SHA256 over `label` and `fields` (each length-prefixed); kProofBytes long.
  std::string Prove(absl::string_view label, std::initializer_list<absl::string_view> fields) const;
  // Whether `proof` is Prove(label, fields), compared in constant time (a timing difference
  // would let a caller guess a valid proof byte by byte).
  bool Verify(absl::string_view proof, absl::string_view label,
              std::initializer_list<absl::string_view> fields) const;

 private:
  explicit ClusterKey(std::string key) : key_(std::move(key)) {}
  std::string key_;
};

// Whether two proofs are equal, in constant time.
bool SameProof(absl::string_view a, absl::string_view b);

// kNonceBytes from the operating system's secure random generator (OpenSSL's RAND_bytes).
// A nonce must never repeat; a counter or a seeded generator would let a recorded proof be
// replayed, which is why this does not take the injected generators the rest of the code uses.
std::string FreshNonce();

// A number as 8 big-endian bytes, for proof fields.
std::string ProofField(uint64_t v);

// The transcripts of the two calls, in one place so that both ends compute the same bytes.
//
// Stream: the dialer (`from`) opened the call to `to` with `client_nonce`; the acceptor answered
// with `server_nonce` and its proof; the dialer answers with its own. `shards` is the shard
// count both sides run (checked separately, bound here as well).
std::string StreamServerProof(const ClusterKey& key, absl::string_view client_nonce,
                              absl::string_view server_nonce, uint64_t from, uint64_t to,
                              uint64_t shards);
std::string StreamClientProof(const ClusterKey& key, absl::string_view client_nonce,
                              absl::string_view server_nonce, uint64_t from, uint64_t to,
                              uint64_t shards);
// Identify (proto/transport.proto): `to` answers `from`'s request (its `incarnation` and
// `nonce`) with what it knows of another live process claiming `from`.
struct IdentifyProofFields {
  uint64_t from = 0;
  uint64_t to = 0;
  uint64_t incarnation = 0;
  uint64_t live_incarnation = 0;
  absl::string_view live_bind_address;
  absl::string_view live_peer;
};
std::string IdentifyProof(const ClusterKey& key, absl::string_view nonce,
                          const IdentifyProofFields& f);
// SendSnapshot: `from` sends a snapshot of `shard` at (index, term) of `total_size` bytes with
// `checksum` to `to`, which opened the call with `server_nonce`.
struct SnapshotProofFields {
  uint64_t from = 0;
  uint64_t to = 0;
  uint64_t shards = 0;
  uint64_t shard = 0;
  uint64_t index = 0;
  uint64_t term = 0;
  uint64_t total_size = 0;
  uint64_t checksum = 0;
};
std::string SnapshotProof(const ClusterKey& key, absl::string_view server_nonce,
                          const SnapshotProofFields& f);

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_PEER_AUTH_H_
