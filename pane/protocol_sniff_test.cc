#include "pane/protocol_sniff.h"

#include <gtest/gtest.h>

namespace marmot::pane {
namespace {

constexpr absl::string_view kPreface("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

TEST(ClassifyFirstBytesTest, TheHttp2PrefaceIsGrpcOnceWhole) {
  for (size_t n = 1; n < kPreface.size(); ++n) {
    EXPECT_EQ(ClassifyFirstBytes(kPreface.substr(0, n)), PaneProtocol::kNeedMore) << n;
  }
  EXPECT_EQ(ClassifyFirstBytes(kPreface), PaneProtocol::kGrpc);
  EXPECT_EQ(ClassifyFirstBytes(std::string(kPreface) + "\x00\x00\x12\x04"), PaneProtocol::kGrpc);
}

TEST(ClassifyFirstBytesTest, AMethodAndASpaceIsHttp1) {
  for (const char* line :
       {"GET / HTTP/1.1", "POST /v1/nodes HTTP/1.1", "PUT ", "DELETE /v1/nodes/4", "PATCH /x",
        "HEAD /healthz HTTP/1.0", "OPTIONS * HTTP/1.1"}) {
    EXPECT_EQ(ClassifyFirstBytes(line), PaneProtocol::kHttp1) << line;
  }
  // A method named like the preface's start is still a method once the bytes part ways.
  EXPECT_EQ(ClassifyFirstBytes("PRI /x HTTP/1.1"), PaneProtocol::kHttp1);
  EXPECT_EQ(ClassifyFirstBytes("PRI * HTTP/1.1\r\n"), PaneProtocol::kHttp1);
  // Too early to tell.
  for (const char* part : {"G", "GE", "GET", "P", "PO", "PRI", "PRI "}) {
    EXPECT_EQ(ClassifyFirstBytes(part), PaneProtocol::kNeedMore) << part;
  }
  EXPECT_EQ(ClassifyFirstBytes(""), PaneProtocol::kNeedMore);
}

TEST(ClassifyFirstBytesTest, AnythingElseIsUnknown) {
  // A TLS ClientHello on a plaintext port, lower-case methods, no method, an endless method.
  for (absl::string_view bytes :
       {absl::string_view("\x16\x03\x01\x02\x00", 5), absl::string_view("get / HTTP/1.1"),
        absl::string_view(" GET /"), absl::string_view("/healthz"), absl::string_view("GET\r\n"),
        absl::string_view("ABCDEFGHIJKLMNOPQ"), absl::string_view("\0\0\0\0", 4)}) {
    EXPECT_EQ(ClassifyFirstBytes(bytes), PaneProtocol::kUnknown) << bytes;
  }
  // The longest method still waits for its space.
  EXPECT_EQ(ClassifyFirstBytes("ABCDEFGHIJKLMNOP"), PaneProtocol::kNeedMore);
  EXPECT_EQ(ClassifyFirstBytes("ABCDEFGHIJKLMNOP "), PaneProtocol::kHttp1);
}

}  // namespace
}  // namespace marmot::pane
