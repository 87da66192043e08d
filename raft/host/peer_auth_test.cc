// PeerAuth: proofs verify only with the same key, nonces, ids and role; the encoding is pinned.
#include "raft/host/peer_auth.h"

#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "glog/logging.h"

namespace marmot::raft::host {
namespace {

std::string Bytes(int first) {
  std::string s;
  for (int i = 0; i < 32; ++i) s.push_back(static_cast<char>(first + i));
  return s;
}

ClusterKey Key(absl::string_view secret = "correct horse battery staple") {
  absl::StatusOr<ClusterKey> k = ClusterKey::FromSecret(secret);
  CHECK(k.ok()) << k.status();
  return *k;
}

TEST(PeerAuthTest, AShortKeyIsRefused) {
  EXPECT_FALSE(ClusterKey::FromSecret("").ok());
  EXPECT_FALSE(ClusterKey::FromSecret("short key\n\n\n\n\n\n\n").ok());
  EXPECT_TRUE(ClusterKey::FromSecret("sixteen bytes ok").ok());
}

TEST(PeerAuthTest, TheProofEncodingIsPinned) {
  // Computed independently (Python's hmac over label and fields, each with an 8-byte big-endian
  // length): a change here breaks every mixed-version cluster, so it must be deliberate.
  EXPECT_EQ(absl::BytesToHexString(StreamServerProof(Key(), Bytes(0), Bytes(32), 1, 2, 16)),
            "562a72d301ce2a2f2ef8f348cb18c948b3772d368dc42b5d08fc149a9f023a4d");
}

TEST(PeerAuthTest, AKeyFileNewlineDoesNotChangeTheKey) {
  EXPECT_EQ(StreamClientProof(Key("correct horse battery staple\n"), Bytes(0), Bytes(32), 1, 2, 16),
            StreamClientProof(Key(), Bytes(0), Bytes(32), 1, 2, 16));
}

TEST(PeerAuthTest, AProofVerifiesOnlyForItsOwnTranscript) {
  const ClusterKey key = Key();
  const std::string proof = StreamClientProof(key, Bytes(0), Bytes(32), 1, 2, 16);
  EXPECT_EQ(proof.size(), kProofBytes);
  EXPECT_EQ(proof, StreamClientProof(key, Bytes(0), Bytes(32), 1, 2, 16));
  // Another call (fresh server nonce): a recorded proof does not replay.
  EXPECT_NE(proof, StreamClientProof(key, Bytes(0), Bytes(64), 1, 2, 16));
  EXPECT_NE(proof, StreamClientProof(key, Bytes(1), Bytes(32), 1, 2, 16));
  // Another claimed sender, receiver or shard count.
  EXPECT_NE(proof, StreamClientProof(key, Bytes(0), Bytes(32), 3, 2, 16));
  EXPECT_NE(proof, StreamClientProof(key, Bytes(0), Bytes(32), 1, 3, 16));
  EXPECT_NE(proof, StreamClientProof(key, Bytes(0), Bytes(32), 1, 2, 8));
  // Another key.
  EXPECT_NE(proof, StreamClientProof(Key("another key of the same length"), Bytes(0), Bytes(32), 1,
                                     2, 16));
  // The acceptor's proof over the same transcript is not the dialer's: none can be reflected.
  EXPECT_NE(proof, StreamServerProof(key, Bytes(0), Bytes(32), 1, 2, 16));
}

TEST(PeerAuthTest, VerifyRefusesAnythingButTheExactProof) {
  const ClusterKey key = Key();
  const std::string good = key.Prove("label", {"a", "bc"});
  EXPECT_TRUE(key.Verify(good, "label", {"a", "bc"}));
  // Length prefixes: moving a byte between fields changes the proof.
  EXPECT_FALSE(key.Verify(good, "label", {"ab", "c"}));
  EXPECT_FALSE(key.Verify(good, "other", {"a", "bc"}));
  EXPECT_FALSE(key.Verify("", "label", {"a", "bc"}));
  EXPECT_FALSE(key.Verify(good.substr(0, 31), "label", {"a", "bc"}));
  std::string flipped = good;
  flipped[31] ^= 1;
  EXPECT_FALSE(key.Verify(flipped, "label", {"a", "bc"}));
}

TEST(PeerAuthTest, SnapshotProofCoversItsHeader) {
  const ClusterKey key = Key();
  SnapshotProofFields f{.from = 1,
                        .to = 2,
                        .shards = 4,
                        .shard = 3,
                        .index = 100,
                        .term = 7,
                        .total_size = 4096,
                        .checksum = 99};
  const std::string proof = SnapshotProof(key, Bytes(0), f);
  EXPECT_EQ(proof, SnapshotProof(key, Bytes(0), f));
  EXPECT_NE(proof, SnapshotProof(key, Bytes(1), f));
  for (uint64_t SnapshotProofFields::*field :
       {&SnapshotProofFields::from, &SnapshotProofFields::to, &SnapshotProofFields::shards,
        &SnapshotProofFields::shard, &SnapshotProofFields::index, &SnapshotProofFields::term,
        &SnapshotProofFields::total_size, &SnapshotProofFields::checksum}) {
    SnapshotProofFields g = f;
    g.*field += 1;
    EXPECT_NE(proof, SnapshotProof(key, Bytes(0), g));
  }
}

TEST(PeerAuthTest, IdentifyProofCoversTheRequestAndTheAnswer) {
  const ClusterKey key = Key();
  const IdentifyProofFields f{.from = 3,
                              .to = 1,
                              .incarnation = 5,
                              .live_incarnation = 7,
                              .live_bind_address = "127.0.0.1:8163",
                              .live_peer = "ipv4:x"};
  const std::string proof = IdentifyProof(key, Bytes(0), f);
  EXPECT_EQ(proof, IdentifyProof(key, Bytes(0), f));
  EXPECT_NE(proof, IdentifyProof(key, Bytes(1), f));
  for (uint64_t IdentifyProofFields::*field :
       {&IdentifyProofFields::from, &IdentifyProofFields::to, &IdentifyProofFields::incarnation,
        &IdentifyProofFields::live_incarnation}) {
    IdentifyProofFields g = f;
    g.*field += 1;
    EXPECT_NE(proof, IdentifyProof(key, Bytes(0), g));
  }
  IdentifyProofFields g = f;
  g.live_bind_address = "127.0.0.1:8164";
  EXPECT_NE(proof, IdentifyProof(key, Bytes(0), g));
  g = f;
  g.live_peer = "ipv4:y";
  EXPECT_NE(proof, IdentifyProof(key, Bytes(0), g));
}

TEST(PeerAuthTest, NoncesAreFreshEachTime) {
  const std::string a = FreshNonce(), b = FreshNonce();
  EXPECT_EQ(a.size(), kNonceBytes);
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace marmot::raft::host
