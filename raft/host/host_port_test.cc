#include "raft/host/host_port.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace marmot::raft::host {
namespace {

using ::testing::HasSubstr;

TEST(HostPortTest, ParsesNamesIpv4AndBracketedIpv6) {
  EXPECT_EQ(ParseHostPort("localhost:6010")->ToString(), "localhost:6010");
  EXPECT_EQ(ParseHostPort("0.0.0.0:8610")->port, 8610);
  EXPECT_TRUE(ParseHostPort("0.0.0.0:8610")->is_wildcard());
  EXPECT_EQ(ParseHostPort("[::1]:9")->host, "::1");
  EXPECT_EQ(ParseHostPort("[::1]:9")->ToString(), "[::1]:9");
  EXPECT_EQ(ParseHostPort("marmot-0.marmot.default.svc:8610")->host, "marmot-0.marmot.default.svc");
}

TEST(HostPortTest, RejectsUnparsableAddresses) {
  for (const char* bad : {"", "host", "host:", ":80", "host:0", "host:65536", "host:-1", "host:+80",
                          "ho st:80", "[::1:80", "[zz]:80", "a..b:80", "host:80x"}) {
    EXPECT_FALSE(ParseHostPort(bad).ok()) << bad;
  }
}

TEST(HostPortTest, PortZeroOnlyWhereTheSystemPicksOne) {
  EXPECT_THAT(ParseHostPort("127.0.0.1:0").status().message(), HasSubstr("(1-65535)"));
  absl::StatusOr<HostPort> listen = ParseHostPort("127.0.0.1:0", PortZero::kAllowed);
  ASSERT_TRUE(listen.ok()) << listen.status();
  EXPECT_EQ(listen->port, 0);
  EXPECT_FALSE(ParseHostPort("127.0.0.1:65536", PortZero::kAllowed).ok());
}

TEST(HostPortTest, TellsLoopbackFromOtherAddresses) {
  for (const char* local : {"localhost:1", "127.0.0.1:1", "127.9.8.7:1", "[::1]:1"}) {
    EXPECT_TRUE(ParseHostPort(local)->is_loopback()) << local;
  }
  for (const char* other : {"0.0.0.0:1", "10.0.0.1:1", "[::]:1", "node-1:1", "128.0.0.1:1"}) {
    EXPECT_FALSE(ParseHostPort(other)->is_loopback()) << other;
  }
}

TEST(MemberListTest, ParsesIdsAndAddresses) {
  auto members = ParseMemberList("1@127.0.0.1:8161, 2@127.0.0.1:8162,3@[::1]:8163");
  ASSERT_TRUE(members.ok()) << members.status();
  ASSERT_EQ(members->size(), 3u);
  EXPECT_EQ((*members)[1].id, 2u);
  EXPECT_EQ((*members)[1].address.ToString(), "127.0.0.1:8162");
  EXPECT_EQ((*members)[2].address.host, "::1");
  EXPECT_TRUE(ParseMemberList("")->empty());
  EXPECT_TRUE(ParseMemberList("  ")->empty());
}

TEST(MemberListTest, RejectsMalformedEntriesNamingThem) {
  EXPECT_THAT(ParseMemberList("2@").status().message(), HasSubstr("'2@'"));
  EXPECT_THAT(ParseMemberList("x@host:1").status().message(), HasSubstr("positive node id"));
  EXPECT_THAT(ParseMemberList("0@host:1").status().message(), HasSubstr("positive node id"));
  EXPECT_THAT(ParseMemberList("-2@host:1").status().message(), HasSubstr("positive node id"));
  EXPECT_THAT(ParseMemberList("host:1").status().message(), HasSubstr("<id>@<host>:<port>"));
  EXPECT_THAT(ParseMemberList("2@a:1,2@b:2").status().message(), HasSubstr("appears twice"));
  EXPECT_THAT(ParseMemberList("2@a:1,,3@b:2").status().message(), HasSubstr("''"));
  EXPECT_THAT(ParseMemberList("2@a:0").status().message(), HasSubstr("no valid port"));
}

}  // namespace
}  // namespace marmot::raft::host
