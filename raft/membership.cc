#include "raft/membership.h"

#include <algorithm>
#include <set>

namespace marmot::raft {

bool IsVoter(const v1::ConfState& cs, uint64_t id) {
  return std::find(cs.voters().begin(), cs.voters().end(), id) != cs.voters().end();
}

bool IsLearner(const v1::ConfState& cs, uint64_t id) {
  return std::find(cs.learners().begin(), cs.learners().end(), id) != cs.learners().end();
}

bool IsLearnerToPromote(const v1::ConfState& cs, uint64_t id) {
  return std::find(cs.learners_to_promote().begin(), cs.learners_to_promote().end(), id) !=
         cs.learners_to_promote().end();
}

v1::ConfState ApplyConfChangeTo(const v1::ConfState& cs, const v1::ConfChange& cc,
                                std::string* ignored) {
  std::set<uint64_t> voters(cs.voters().begin(), cs.voters().end());
  std::set<uint64_t> learners(cs.learners().begin(), cs.learners().end());
  std::set<uint64_t> to_promote(cs.learners_to_promote().begin(), cs.learners_to_promote().end());
  auto why = [ignored](const char* w) {
    if (ignored) *ignored = w;
  };
  const uint64_t id = cc.node_id();
  if (id == 0) {
    why("no node id");
    return cs;
  }
  switch (cc.type()) {
    case v1::CONF_CHANGE_ADD_NODE:
      // Adding a learner as voter promotes it.
      learners.erase(id);
      to_promote.erase(id);
      voters.insert(id);
      break;
    case v1::CONF_CHANGE_ADD_LEARNER:
      if (voters.count(id)) {
        why("demoting a voter to learner is not supported");
        return cs;
      }
      learners.insert(id);
      // The latest change of a learner says whether it is to be promoted.
      if (cc.promote_when_caught_up()) {
        to_promote.insert(id);
      } else {
        to_promote.erase(id);
      }
      break;
    case v1::CONF_CHANGE_REMOVE_NODE:
      if (voters.count(id) && voters.size() == 1) {
        why("cannot remove the last voter");
        return cs;
      }
      voters.erase(id);
      learners.erase(id);
      to_promote.erase(id);
      break;
    default:
      why("unknown conf change type");
      return cs;
  }
  v1::ConfState out;
  out.set_version(cs.version() + 1);
  for (uint64_t v : voters) out.add_voters(v);
  for (uint64_t l : learners) out.add_learners(l);
  for (uint64_t l : to_promote) out.add_learners_to_promote(l);
  return out;
}

}  // namespace marmot::raft
