// Membership arithmetic: applying a single-server ConfChange to a ConfState.
//
// Marmot changes membership one server at a time and a configuration takes effect as soon as
// its entry is in a node's log (Raft thesis, section 4.1), not when it commits: a node always
// uses the latest configuration in its log, and reverts if that entry is truncated. Acting on
// apply instead lets a node that holds but has not applied two changes win an election in a
// configuration two steps old, whose majorities need not overlap the current ones (found by
// the simulator: two leaders in one term).
#ifndef MARMOT_RAFT_MEMBERSHIP_H_
#define MARMOT_RAFT_MEMBERSHIP_H_

#include <cstdint>
#include <string>

#include "proto/raft.pb.h"

namespace marmot::raft {

// Returns `cs` with `cc` applied and its version one higher. An ADD_LEARNER sets or clears the
// learner's promotion mark (ConfState.learners_to_promote) after its promote_when_caught_up;
// promoting or removing the node clears it. Changes that are not allowed (demoting a voter to
// learner, removing the last voter, node 0) leave it unchanged, version included, and set
// *ignored (if given) to why. cc.expected_version is not looked at here: the leader checks it
// before appending (Raft::Step), so a change in the log always matches the membership it
// follows. Deterministic, so every node derives the same membership from the same log.
v1::ConfState ApplyConfChangeTo(const v1::ConfState& cs, const v1::ConfChange& cc,
                                std::string* ignored = nullptr);
bool IsVoter(const v1::ConfState& cs, uint64_t id);
bool IsLearner(const v1::ConfState& cs, uint64_t id);
// A learner that the leader promotes to voter once it has caught up.
bool IsLearnerToPromote(const v1::ConfState& cs, uint64_t id);

}  // namespace marmot::raft

#endif  // MARMOT_RAFT_MEMBERSHIP_H_
