// NodeHost's membership: committed conf changes and what they change in the host, the
// AddNode/AddLearner/RemoveNode calls that propose a change and wait for it, and the promotion
// of caught-up learners by the leader (node_host.h).
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "glog/logging.h"
#include "raft/host/host_meta.h"
#include "raft/host/node_host.h"
#include "raft/log_prefix.h"
#include "raft/membership.h"

namespace marmot::raft::host {

void NodeHost::ApplyConfChange(Shard& shard, const v1::ConfChange& cc) {
  const uint64_t me = config_.node_id;
  const uint64_t version_before = shard.applied_conf.version();
  shard.applied_conf = shard.raw->ApplyConfChange(cc);
  const bool took_effect = shard.applied_conf.version() != version_before;
  if (took_effect) {
    shard.recent_conf_changes[shard.applied_conf.version()] = cc;
    if (shard.recent_conf_changes.size() > Shard::kRecentConfChanges) {
      shard.recent_conf_changes.erase(shard.recent_conf_changes.begin());
    }
  }
  // Remembered so that a removed member stays refused (sender_policy.h), also after a restart;
  // a node added again is a member like any other. Only a change that took effect counts: a
  // refused removal must not shut a member out.
  const bool removed = cc.type() == v1::CONF_CHANGE_REMOVE_NODE;
  if (took_effect && removed != (removed_[shard.id].count(cc.node_id()) > 0)) {
    if (removed) {
      removed_[shard.id].insert(cc.node_id());
    } else {
      removed_[shard.id].erase(cc.node_id());
    }
    store_->PutMeta(RemovedKey(shard.id, cc.node_id()), removed ? "1" : "0");
  }
  if (cc.type() != v1::CONF_CHANGE_REMOVE_NODE && !cc.context().empty() && cc.node_id() != me) {
    transport_->SetPeerAddress(cc.node_id(), cc.context());
    store_->PutMeta(AddressKey(cc.node_id()), cc.context());
    addresses_[cc.node_id()] = cc.context();
    std::lock_guard<std::mutex> l(info_mu_);
    published_addresses_[cc.node_id()] = cc.context();
  }
  LOG(INFO) << LogPrefix(shard.id, me) << "membership now voters "
            << absl::StrJoin(shard.applied_conf.voters(), ",") << " learners "
            << absl::StrJoin(shard.applied_conf.learners(), ",") << " (to promote "
            << absl::StrJoin(shard.applied_conf.learners_to_promote(), ",") << ")";
}

absl::Status NodeHost::ProposeConfChangeAndWait(uint64_t shard, const v1::ConfChange& cc,
                                                absl::Duration timeout) {
  if (shard >= static_cast<uint64_t>(config_.shards)) return absl::InvalidArgumentError("no shard");
  // Every try names the membership version this node sees when it is made, and the leader
  // appends it only on top of exactly that version (Raft::Step). So a try that arrives late,
  // after another change (say the removal of the learner this adds), is dropped instead of
  // undoing that change, and a try that is in took effect on the membership it was decided on.
  //
  // Done once one of this call's tries has applied here. Not when the membership here merely
  // looks as asked: this node may be behind. A node that has not yet applied "add learner 4"
  // would take "remove 4" as done at once, and 4 would stay (and be promoted).
  //
  // `tries` (the versions tried) is only touched on the loop; the caller shares it with the
  // posted tasks, which may run after it gave up waiting (or never, if the host stops).
  auto tries = std::make_shared<std::set<uint64_t>>();
  auto done = [&] {
    struct Answer {
      std::mutex mu;
      std::condition_variable cv;
      bool ready = false;
      bool applied = false;
    };
    auto answer = std::make_shared<Answer>();
    Post([this, answer, tries, shard, cc] {
      const Shard& sh = *shards_[shard];
      bool applied = false;
      for (uint64_t v : *tries) {
        auto it = sh.recent_conf_changes.find(v + 1);
        if (it == sh.recent_conf_changes.end()) continue;
        const v1::ConfChange& in = it->second;
        applied = applied || (in.type() == cc.type() && in.node_id() == cc.node_id() &&
                              in.has_expected_version() && in.expected_version() == v);
      }
      // The leader refuses to make a voter a learner: a learner promoted meanwhile counts.
      if (cc.type() == v1::CONF_CHANGE_ADD_LEARNER && IsVoter(sh.applied_conf, cc.node_id())) {
        applied = true;
      }
      std::lock_guard<std::mutex> l(answer->mu);
      answer->applied = applied;
      answer->ready = true;
      answer->cv.notify_one();
    });
    std::unique_lock<std::mutex> l(answer->mu);
    config_.env->WaitFor(l, answer->cv, absl::Seconds(1), [&] { return answer->ready; });
    return answer->applied;
  };
  Env* env = config_.env;
  const absl::Time deadline = env->MonotonicNow() + timeout;
  while (env->MonotonicNow() < deadline) {
    // (Re)propose: a lost or dropped try must be retried, against the membership seen now.
    Post([this, shard, tries, change = cc]() mutable {
      const uint64_t version = shards_[shard]->raw->raft().tracker().conf_version();
      change.set_expected_version(version);
      tries->insert(version);
      auto s = shards_[shard]->raw->ProposeConfChange(change);
      if (!s.ok()) VLOG(1) << LogPrefix(shard, config_.node_id) << "conf change: " << s;
    });
    for (int i = 0; i < 10 && env->MonotonicNow() < deadline; ++i) {
      env->SleepFor(absl::Milliseconds(50));
      if (done()) return absl::OkStatus();
    }
  }
  return absl::DeadlineExceededError(absl::StrCat("shard ", shard, ": membership change of node ",
                                                  cc.node_id(), " not applied in time"));
}

absl::Status NodeHost::AddNode(uint64_t shard, uint64_t node, const std::string& address,
                               absl::Duration timeout) {
  v1::ConfChange cc;
  cc.set_type(v1::CONF_CHANGE_ADD_NODE);
  cc.set_node_id(node);
  cc.set_context(address);
  return ProposeConfChangeAndWait(shard, cc, timeout);
}

absl::Status NodeHost::AddLearner(uint64_t shard, uint64_t node, const std::string& address,
                                  absl::Duration timeout) {
  v1::ConfChange cc;
  cc.set_type(v1::CONF_CHANGE_ADD_LEARNER);
  cc.set_node_id(node);
  cc.set_context(address);
  cc.set_promote_when_caught_up(true);
  return ProposeConfChangeAndWait(shard, cc, timeout);
}

void NodeHost::PromoteCaughtUpLearners() {
  for (auto& shard : shards_) {
    const Raft& r = shard->raw->raft();
    // Cheap for the usual shard: nobody to promote.
    if (r.tracker().learners_to_promote().empty() || r.state() != StateType::kLeader ||
        r.ConfChangePending()) {
      continue;
    }
    uint64_t learner = 0;
    for (uint64_t id : r.tracker().learners_to_promote()) {
      if (r.IsCaughtUp(id, config_.promotion_max_lag)) {
        learner = id;
        break;
      }
    }
    if (learner == 0) continue;
    v1::ConfChange cc;
    cc.set_type(v1::CONF_CHANGE_ADD_NODE);
    cc.set_node_id(learner);
    cc.set_expected_version(r.tracker().conf_version());
    // Members that learnt of the learner from a snapshot learn its address here.
    auto addr = addresses_.find(learner);
    if (addr != addresses_.end()) cc.set_context(addr->second);
    // Dropped during a leadership transfer or with a full uncommitted tail: tried again on a
    // later tick. Once appended, ConfChangePending() holds further tries back until it applies
    // (or a new leader finds the learner still to promote and tries itself).
    auto s = shard->raw->ProposeConfChange(cc);
    if (s.ok()) {
      LOG(INFO) << LogPrefix(shard->id, config_.node_id) << "learner " << learner
                << " caught up (match " << r.tracker().Get(learner)->match << ", commit "
                << r.log().committed() << "), proposing its promotion to voter";
    } else {
      VLOG(1) << LogPrefix(shard->id, config_.node_id) << "promotion of " << learner << ": " << s;
    }
  }
}

absl::Status NodeHost::RemoveNode(uint64_t shard, uint64_t node, absl::Duration timeout) {
  v1::ConfChange cc;
  cc.set_type(v1::CONF_CHANGE_REMOVE_NODE);
  cc.set_node_id(node);
  return ProposeConfChangeAndWait(shard, cc, timeout);
}

}  // namespace marmot::raft::host
