#include "raft/host/bootstrap.h"

#include "gtest/gtest.h"

namespace marmot::raft::host {
namespace {

TEST(ParseMemberListTest, ParsesIdsAndAddresses) {
  auto m = ParseMemberList("2@127.0.0.1:8162, 3@[::1]:8163,");
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->size(), 2u);
  EXPECT_EQ(m->at(2), "127.0.0.1:8162");
  EXPECT_EQ(m->at(3), "[::1]:8163");
  EXPECT_TRUE(ParseMemberList("")->empty());
}

TEST(ParseMemberListTest, RejectsMalformedItems) {
  for (const char* bad : {"x@h:1", "0@h:1", "1@h", "1@h:", "1h:1", "1@h:1,1@h:2"}) {
    auto m = ParseMemberList(bad);
    EXPECT_FALSE(m.ok()) << bad;
  }
}

}  // namespace
}  // namespace marmot::raft::host
