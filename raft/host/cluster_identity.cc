#include "raft/host/cluster_identity.h"

#include <openssl/rand.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace marmot::raft::host {

std::string NewClusterId() {
  std::string id(kClusterIdBytes, '\0');
  CHECK_EQ(RAND_bytes(reinterpret_cast<unsigned char*>(id.data()), static_cast<int>(id.size())), 1)
      << "the system's random generator failed";
  return id;
}

std::string FormatClusterId(absl::string_view id) {
  return id.empty() ? "(none)" : absl::BytesToHexString(id);
}

ClusterIdentity::ClusterIdentity(uint64_t node_id, std::string id, bool candidate, Persist persist)
    : node_id_(node_id), persist_(std::move(persist)), id_(std::move(id)), candidate_(candidate) {
  CHECK(!candidate_ || !id_.empty()) << "a candidate cluster id must be an id";
}

std::string ClusterIdentity::OfferWhenDialing() const {
  std::lock_guard<std::mutex> l(mu_);
  return candidate_ ? "" : id_;
}

std::string ClusterIdentity::OfferWhenAnswering(absl::string_view peer) {
  std::lock_guard<std::mutex> l(mu_);
  if (!candidate_) return id_;
  if (!peer.empty()) return std::string(peer);
  // A peer without an id takes ours: from now on it is the cluster's id.
  candidate_ = false;
  LOG(INFO) << "[node " << node_id_ << "] cluster " << FormatClusterId(id_)
            << ": no peer had an id, this node's is the cluster's";
  return id_;
}

absl::Status ClusterIdentity::Check(absl::string_view peer) const {
  std::lock_guard<std::mutex> l(mu_);
  return CheckLocked(peer);
}

absl::Status ClusterIdentity::CheckLocked(absl::string_view peer) const {
  if (peer.empty() || id_.empty() || candidate_ || peer == id_) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat("belongs to cluster ", FormatClusterId(peer),
                                                    ", this node (", node_id_, ") to cluster ",
                                                    FormatClusterId(id_)));
}

absl::Status ClusterIdentity::Settle(absl::string_view peer, uint64_t peer_node,
                                     absl::string_view peer_address) {
  std::lock_guard<std::mutex> l(mu_);
  if (peer.empty() || (peer == id_ && !candidate_)) return absl::OkStatus();
  if (absl::Status s = CheckLocked(peer); !s.ok()) return s;
  if (peer.size() != kClusterIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("its cluster id is ", peer.size(), " bytes long, not ", kClusterIdBytes));
  }
  if (peer != id_) {
    if (absl::Status s = persist_(std::string(peer)); !s.ok()) return s;
    LOG(INFO) << "[node " << node_id_ << "] joined cluster " << FormatClusterId(peer)
              << ", learnt from node " << peer_node << " at " << peer_address
              << (candidate_ ? absl::StrCat(" (instead of the id this node drew, ",
                                            FormatClusterId(id_), ")")
                             : "");
  }
  id_ = std::string(peer);
  candidate_ = false;
  return absl::OkStatus();
}

std::string ClusterIdentity::id() const {
  std::lock_guard<std::mutex> l(mu_);
  return id_;
}

bool ClusterIdentity::candidate() const {
  std::lock_guard<std::mutex> l(mu_);
  return candidate_;
}

}  // namespace marmot::raft::host
