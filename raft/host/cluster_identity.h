// ClusterIdentity: which cluster a node belongs to, as the transport's handshake compares it.
//
// A cluster id is 16 random bytes. Nodes exchange it when a stream opens (proto/transport.proto)
// and never talk to a node of another cluster: a node started with another cluster's addresses,
// or an address reused by another cluster, is refused with one line naming both ids instead of
// mixing two Raft groups that share node ids.
//
// Where an id comes from. Founding members start at the same time without talking first, so
// they cannot each draw one. One of them does: the highest voter of shard 0 (every founder
// computes the same one from the -bootstrap list) draws it when its raft folder has none; every
// other node starts without one and takes the id of the first peer it completes a handshake
// with, writes it durably, and from then on refuses any other. A joining node (-join) does the
// same with the cluster that adds it. A raft folder written before cluster ids existed has none
// and is treated the same way, so an upgraded cluster gets an id from its highest voter.
//
// The drawing node holds its id as a *candidate* until a peer takes it (a peer without an id
// connects): until then it gives way to any id a peer already holds. That is the founder whose
// raft folder was lost and who bootstrapped again: it must rejoin its cluster, not found a new
// one. A candidate offers its id only when it answers a stream (the highest voter is dialed by
// every other founder: the lower id of a pair dials); when it dials it offers none, so that it
// never imposes an id it may still give up.
//
// What this does not do: a node without an id takes the first one it sees, so a fresh node
// pointed at the wrong cluster joins that cluster's id; and the id is not a secret (the cluster
// key and TLS are what keep strangers out; with a key, an id is taken only from a peer that
// proved the key).
//
// Thread-safe.
#ifndef MARMOT_RAFT_HOST_CLUSTER_IDENTITY_H_
#define MARMOT_RAFT_HOST_CLUSTER_IDENTITY_H_

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace marmot::raft::host {

// Bytes of a cluster id.
inline constexpr size_t kClusterIdBytes = 16;

// A fresh id from the operating system's secure random generator.
std::string NewClusterId();
// Lowercase hex, or "(none)" for an empty id: how ids appear in logs and errors.
std::string FormatClusterId(absl::string_view id);

class ClusterIdentity {
 public:
  // Writes an id durably before it is used; called with the identity's lock held (handshakes
  // that would compare against it wait).
  using Persist = std::function<absl::Status(const std::string& id)>;

  // `id`: what the raft folder holds (empty: none yet). `candidate`: this node drew `id` itself
  // in this run (see above).
  ClusterIdentity(uint64_t node_id, std::string id, bool candidate, Persist persist);

  // What this node puts in the handshake of a stream it dials: its id, or none while it is only
  // a candidate.
  std::string OfferWhenDialing() const;
  // What this node answers a dialer that offered `peer`: its id (a candidate's id becomes final
  // here: a peer may take it), or, for a candidate facing a peer that has an id, that id (it
  // gives way to it once the peer is authenticated, see Settle).
  std::string OfferWhenAnswering(absl::string_view peer);

  // Whether a peer offering `peer` may be talked to: OK, or FailedPrecondition naming both ids
  // when this node's final id and the peer's differ ("belongs to cluster <peer's>, this node
  // (<id>) to cluster <this node's>", to follow the peer's name).
  absl::Status Check(absl::string_view peer) const;
  // Once the peer is authenticated (its cluster key proof checked, if any): takes `peer`'s id if
  // this node has none or only a candidate, writing it first. FailedPrecondition if meanwhile
  // this node settled on another id (two peers of different clusters raced); the write's error
  // if it failed. `peer_node` and `peer_address` are for the log line.
  absl::Status Settle(absl::string_view peer, uint64_t peer_node, absl::string_view peer_address);

  // The current id (empty: none yet).
  std::string id() const;
  bool candidate() const;

 private:
  absl::Status CheckLocked(absl::string_view peer) const;

  const uint64_t node_id_;
  const Persist persist_;
  mutable std::mutex mu_;
  std::string id_;
  bool candidate_;
};

}  // namespace marmot::raft::host

#endif  // MARMOT_RAFT_HOST_CLUSTER_IDENTITY_H_
