// Bad input from the network: unknown peers, stale terms, duplicates, out-of-range indexes,
// malformed messages. Each is ignored or answered as the protocol says, never a crash.
// Also API misuse, which returns typed errors.
#include "gtest/gtest.h"
#include "raft/errors.h"
#include "raft/raw_node.h"
#include "raft/testing/cluster.h"

namespace marmot::raft {
namespace {

using testing::Cluster;
using Strings = std::vector<std::string>;

v1::Message Msg(v1::MessageType t, uint64_t from, uint64_t to, uint64_t term) {
  v1::Message m;
  m.set_type(t);
  m.set_from(from);
  m.set_to(to);
  m.set_term(term);
  return m;
}

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    c_.ElectLeader(1);
    ASSERT_TRUE(c_.Propose(1, "a").ok());
    term_ = c_.raft(1).term();
  }
  // Messages node `id` produced (without handling its Ready).
  std::vector<v1::Message>& Out(uint64_t id) { return c_.raw(id).mutable_raft().msgs(); }

  Cluster c_{3};
  uint64_t term_ = 0;
};

TEST_F(BadInputTest, ResponseFromUnknownPeerIsRefused) {
  auto s = c_.raw(1).Step(Msg(v1::MSG_APP_RESP, 9, 1, term_));
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c_.Leader(), 1u);
}

TEST_F(BadInputTest, LocalMessageTypesAndUnknownTypesAreRefused) {
  EXPECT_EQ(c_.raw(2).Step(Msg(v1::MSG_HUP, 1, 2, 0)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c_.raw(2).Step(Msg(v1::MSG_BEAT, 1, 2, 0)).code(), absl::StatusCode::kInvalidArgument);
  v1::Message m = Msg(v1::MSG_APP, 1, 2, term_);
  m.set_type(static_cast<v1::MessageType>(77));
  EXPECT_EQ(c_.raw(2).Step(m).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c_.raft(2).state(), StateType::kFollower);
}

// Found by //tests/fuzz:raft_step: a follower forwarded a proposal carrying the current term
// to its leader, and sending it broke the core's invariant (a CHECK: the node crashed).
TEST_F(BadInputTest, TermlessMessagesCarryingATermAreRefused) {
  for (v1::MessageType t : {v1::MSG_PROP, v1::MSG_READ_INDEX, v1::MSG_TRANSFER_LEADER}) {
    v1::Message m = Msg(t, 3, 2, term_);
    m.add_entries()->set_data("x");
    EXPECT_EQ(c_.raw(2).Step(m).code(), absl::StatusCode::kInvalidArgument) << t;
    EXPECT_TRUE(Out(2).empty()) << t;
  }
  // Without a term, the proposal goes to the leader and commits.
  v1::Message m = Msg(v1::MSG_PROP, 3, 2, 0);
  m.add_entries()->set_data("forwarded");
  ASSERT_TRUE(c_.raw(2).Step(m).ok());
  c_.Settle();
  EXPECT_EQ(c_.Applied(1), (Strings{"a", "forwarded"}));
}

// Every other message from a peer carries its sender's term: a vote without one would be
// answered with a vote response without one (the core's invariant, a CHECK).
TEST_F(BadInputTest, PeerMessagesWithoutATermAreRefused) {
  for (v1::MessageType t :
       {v1::MSG_VOTE, v1::MSG_PRE_VOTE, v1::MSG_APP, v1::MSG_HEARTBEAT, v1::MSG_SNAP,
        v1::MSG_TIMEOUT_NOW, v1::MSG_APP_RESP, v1::MSG_VOTE_RESP, v1::MSG_READ_INDEX_RESP}) {
    EXPECT_EQ(c_.raw(2).Step(Msg(t, 3, 2, 0)).code(), absl::StatusCode::kInvalidArgument) << t;
    EXPECT_TRUE(Out(2).empty()) << t;
  }
  EXPECT_EQ(c_.raft(2).lead(), 1u);
  EXPECT_EQ(c_.raft(2).term(), term_);
}

// Found by //tests/fuzz:raft_step: an append whose previous entry lies beyond our log, paired
// with term 0 (the term Term() answers there), matched, and its commit index beyond our log
// crashed the follower on a CHECK. The same for a snapshot of term 0.
TEST_F(BadInputTest, TermZeroBeyondOurLogMatchesNothing) {
  const uint64_t last = c_.raft(2).log().LastIndex();
  const uint64_t commit = c_.raft(2).log().committed();
  v1::Message app = Msg(v1::MSG_APP, 1, 2, term_);
  app.set_index(last + 10);
  app.set_log_term(0);
  app.set_commit(last + 10);
  ASSERT_TRUE(c_.raw(2).Step(app).ok());
  ASSERT_EQ(Out(2).size(), 1u);
  EXPECT_TRUE(Out(2)[0].reject());
  Out(2).clear();
  v1::Message snap = Msg(v1::MSG_SNAP, 1, 2, term_);
  snap.mutable_snapshot()->mutable_metadata()->set_index(last + 10);
  *snap.mutable_snapshot()->mutable_metadata()->mutable_conf_state() = Cluster::Voters({1, 2, 3});
  ASSERT_TRUE(c_.raw(2).Step(snap).ok());
  EXPECT_TRUE(Out(2).empty());
  EXPECT_EQ(c_.raft(2).log().committed(), commit);
  EXPECT_EQ(c_.raft(2).log().LastIndex(), last);
  c_.Settle();
  ASSERT_TRUE(c_.Propose(1, "b").ok());
  EXPECT_EQ(c_.Applied(2), (Strings{"a", "b"}));
}

TEST_F(BadInputTest, AppendFromOlderTermIsAnsweredWithCurrentTerm) {
  v1::Message m = Msg(v1::MSG_APP, 3, 2, term_ - 1);
  ASSERT_TRUE(c_.raw(2).Step(m).ok());
  ASSERT_EQ(Out(2).size(), 1u);
  EXPECT_EQ(Out(2)[0].type(), v1::MSG_APP_RESP);
  EXPECT_EQ(Out(2)[0].term(), term_);  // tells the stale sender to step down
  EXPECT_EQ(c_.raft(2).lead(), 1u);
}

TEST_F(BadInputTest, OlderTermVoteIsIgnored) {
  ASSERT_TRUE(c_.raw(2).Step(Msg(v1::MSG_VOTE, 3, 2, term_ - 1)).ok());
  EXPECT_TRUE(Out(2).empty());
  EXPECT_EQ(c_.raft(2).vote(), 1u);
}

TEST_F(BadInputTest, DuplicateAppendIsHarmless) {
  std::vector<v1::Message> apps;
  c_.SetFilter([&apps](const v1::Message& m) {
    if (m.type() == v1::MSG_APP && m.to() == 2 && m.entries_size() > 0) apps.push_back(m);
    return true;
  });
  ASSERT_TRUE(c_.Propose(1, "b").ok());
  ASSERT_FALSE(apps.empty());
  const uint64_t last = c_.raft(2).log().LastIndex();
  for (int i = 0; i < 3; ++i) c_.Deliver(apps.front());
  c_.Settle();
  EXPECT_EQ(c_.raft(2).log().LastIndex(), last);
  EXPECT_EQ(c_.Applied(2), (Strings{"a", "b"}));
}

TEST_F(BadInputTest, AppendBeyondOurLogIsRejectedWithAHint) {
  v1::Message m = Msg(v1::MSG_APP, 1, 2, term_);
  m.set_index(100);
  m.set_log_term(term_);
  ASSERT_TRUE(c_.raw(2).Step(m).ok());
  ASSERT_EQ(Out(2).size(), 1u);
  EXPECT_TRUE(Out(2)[0].reject());
  EXPECT_EQ(Out(2)[0].reject_hint(), c_.raft(2).log().LastIndex());
}

TEST_F(BadInputTest, MalformedAppendIsDropped) {
  v1::Message m = Msg(v1::MSG_APP, 1, 2, term_);
  m.set_index(c_.raft(2).log().LastIndex());
  m.set_log_term(term_);
  auto* e = m.add_entries();
  e->set_index(m.index() + 5);  // not contiguous
  e->set_term(term_);
  const uint64_t last = c_.raft(2).log().LastIndex();
  ASSERT_TRUE(c_.raw(2).Step(m).ok());
  EXPECT_EQ(c_.raft(2).log().LastIndex(), last);
  EXPECT_TRUE(Out(2).empty());
}

TEST_F(BadInputTest, AckBeyondLeadersLogDoesNotCommit) {
  const uint64_t commit = c_.raft(1).log().committed();
  v1::Message m = Msg(v1::MSG_APP_RESP, 2, 1, term_);
  m.set_index(1000);
  ASSERT_TRUE(c_.raw(1).Step(m).ok());
  m.set_from(3);
  ASSERT_TRUE(c_.raw(1).Step(m).ok());
  EXPECT_EQ(c_.raft(1).log().committed(), commit);
  c_.Settle();
  EXPECT_EQ(c_.Leader(), 1u);
}

TEST_F(BadInputTest, HeartbeatCommitBeyondOurLogIsIgnored) {
  v1::Message m = Msg(v1::MSG_HEARTBEAT, 1, 2, term_);
  m.set_commit(1000);
  ASSERT_TRUE(c_.raw(2).Step(m).ok());
  EXPECT_LE(c_.raft(2).log().committed(), c_.raft(2).log().LastIndex());
}

TEST_F(BadInputTest, ApiMisuseReturnsTypedErrors) {
  RawNode& n = c_.raw(2);
  ASSERT_TRUE(n.Propose("x").ok());
  ASSERT_TRUE(n.GetReady().ok());
  EXPECT_EQ(n.GetReady().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(n.Advance().ok());
  EXPECT_EQ(n.Advance().code(), absl::StatusCode::kFailedPrecondition);
  v1::ConfChange cc;
  EXPECT_EQ(n.ProposeConfChange(cc).code(), absl::StatusCode::kInvalidArgument);
  c_.Settle();
}

TEST(RawNodeCreateTest, RejectsInconsistentState) {
  MemoryLogStorage s = MemoryLogStorage::Bootstrap(Cluster::Voters({1}));
  v1::HardState hs;
  hs.set_term(1);
  hs.set_commit(9);  // beyond the log: the log was lost or truncated
  s.SetHardState(hs);
  Config cfg = Cluster::DefaultConfig();
  cfg.id = 1;
  cfg.storage = &s;
  EXPECT_EQ(RawNode::Create(cfg).status().code(), absl::StatusCode::kDataLoss);
  hs.set_commit(1);
  s.SetHardState(hs);
  cfg.applied = 5;
  EXPECT_EQ(RawNode::Create(cfg).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace marmot::raft
