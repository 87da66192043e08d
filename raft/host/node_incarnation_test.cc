// AdmitStream: a second process with a live node's id is refused; a restarted node is not.
#include "raft/host/node_incarnation.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace marmot::raft::host {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

const absl::Time kNow = absl::FromUnixSeconds(1000000);
const absl::Duration kWindow = absl::Seconds(2);

StreamOrigin From(uint64_t incarnation, const std::string& bind, absl::Duration silent) {
  return {.incarnation = incarnation,
          .bind_address = bind,
          .peer = "ipv4:127.0.0.1:40000",
          .last_heard = kNow - silent};
}

TEST(NodeIncarnationTest, IncarnationsAreRandomAndNeverZero) {
  const uint64_t a = NewIncarnation(), b = NewIncarnation();
  EXPECT_NE(a, 0u);
  EXPECT_NE(a, b);
}

TEST(NodeIncarnationTest, ASecondProcessIsRefusedWhileTheFirstIsHeard) {
  const StreamOrigin live = From(7, "127.0.0.1:8162", absl::Milliseconds(300));
  const Admission a = AdmitStream(2, From(9, "127.0.0.1:9999", absl::ZeroDuration()), {live},
                                  "127.0.0.1:8162", kNow, kWindow);
  EXPECT_THAT(a.refusal,
              StartsWith("node 2 already runs: the process listening at 127.0.0.1:8162"));
  EXPECT_THAT(a.refusal, HasSubstr("another process (listening at 127.0.0.1:9999"));
  EXPECT_THAT(a.replaced, IsEmpty());
  // Also where the recorded address tells neither apart (a name; -bind a wildcard).
  EXPECT_FALSE(AdmitStream(2, From(9, "0.0.0.0:8610", absl::ZeroDuration()),
                           {From(7, "0.0.0.0:8610", absl::Seconds(1))}, "node-2.svc:8610", kNow,
                           kWindow)
                   .refusal.empty());
}

TEST(NodeIncarnationTest, ARestartedNodeReplacesItsSilentOldStream) {
  // Its old process died without closing the connection: nothing heard for longer than a window.
  const Admission a =
      AdmitStream(2, From(9, "127.0.0.1:8162", absl::ZeroDuration()),
                  {From(7, "127.0.0.1:8162", kWindow)}, "127.0.0.1:8162", kNow, kWindow);
  EXPECT_EQ(a.refusal, "");
  EXPECT_THAT(a.replaced, ElementsAre(0));
}

TEST(NodeIncarnationTest, TheSameProcessRedialingKeepsItsOtherStreams) {
  const Admission a = AdmitStream(2, From(7, "127.0.0.1:8162", absl::ZeroDuration()),
                                  {From(7, "127.0.0.1:8162", absl::Milliseconds(1))},
                                  "127.0.0.1:8162", kNow, kWindow);
  EXPECT_EQ(a.refusal, "");
  EXPECT_THAT(a.replaced, IsEmpty());
}

TEST(NodeIncarnationTest, TheNodeAtItsRecordedAddressTakesItsPlaceBackFromAnImpostor) {
  // An impostor got in while node 2 was away; node 2 comes back at the address recorded for it.
  const Admission a = AdmitStream(2, From(9, "127.0.0.1:8162", absl::ZeroDuration()),
                                  {From(7, "127.0.0.1:9999", absl::Milliseconds(100))},
                                  "127.0.0.1:8162", kNow, kWindow);
  EXPECT_EQ(a.refusal, "");
  EXPECT_THAT(a.replaced, ElementsAre(0));
}

TEST(NodeIncarnationTest, PeersThatDoNotSayAreNotCompared) {
  EXPECT_EQ(AdmitStream(2, From(0, "", absl::ZeroDuration()),
                        {From(7, "a:1", absl::ZeroDuration())}, "", kNow, kWindow)
                .refusal,
            "");
  const Admission a = AdmitStream(2, From(9, "a:1", absl::ZeroDuration()),
                                  {From(0, "", absl::ZeroDuration())}, "", kNow, kWindow);
  EXPECT_EQ(a.refusal, "");
  EXPECT_THAT(a.replaced, IsEmpty());
}

}  // namespace
}  // namespace marmot::raft::host
