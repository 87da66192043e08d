// The REST gateway in front of a real pane server, on the pane's one port, called with a real
// HTTP client.
#include "pane/rest_gateway.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "pane/pane_server.h"

namespace marmot::pane {
namespace {

using ::testing::HasSubstr;

class FixedNode : public NodeControl {
 public:
  absl::StatusOr<admin::v1::GetStatusResponse> GetStatus() override {
    admin::v1::GetStatusResponse r;
    r.set_node_id(7);
    r.set_version("test");
    return r;
  }
  absl::StatusOr<admin::v1::ListDeadLettersResponse> ListDeadLetters(int limit) override {
    last_limit = limit;
    admin::v1::ListDeadLettersResponse r;
    r.set_total(3);
    return r;
  }
  bool Ready() override { return ready; }
  absl::StatusOr<admin::v1::RetryDeadLettersResponse> RetryDeadLetters(
      const std::vector<int64_t>& ids) override {
    retried_ids = ids;
    admin::v1::RetryDeadLettersResponse r;
    r.set_applied(2);
    r.set_still_failing(1);
    return r;
  }
  std::vector<int64_t> retried_ids = {-1};
  int last_limit = -1;
  bool ready = false;
};

class RestGatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pane = PaneServer::Start({.address = "127.0.0.1:0",
                                   .auth_key = "Basic abc",
                                   .ready = [this] { return node_.Ready(); },
                                   .metrics = [] { return std::string("marmot_up 1\n"); },
                                   .max_body_bytes = 4096},
                                  &node_);
    ASSERT_TRUE(pane.ok()) << pane.status();
    pane_ = *std::move(pane);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", pane_->port());
    client_->set_read_timeout(10, 0);
  }
  httplib::Headers Auth() { return {{"Authorization", "Basic abc"}}; }

  FixedNode node_;
  std::unique_ptr<PaneServer> pane_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(RestGatewayTest, AnnotatedRouteReturnsProto3Json) {
  auto res = client_->Get("/v1/status", Auth());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(res->body, HasSubstr("\"nodeId\":\"7\""));
  EXPECT_THAT(res->body, HasSubstr("\"version\":\"test\""));
}

TEST_F(RestGatewayTest, MissingOrWrongAuthIs401WithAChallenge) {
  for (const httplib::Headers& h :
       {httplib::Headers{}, httplib::Headers{{"Authorization", "Basic abd"}}}) {
    auto res = client_->Get("/v1/status", h);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 401);
    EXPECT_EQ(res->get_header_value("WWW-Authenticate"), "Basic realm=\"marmot\"");
    EXPECT_THAT(res->body, HasSubstr("\"code\":16"));
    EXPECT_THAT(res->body, HasSubstr("\"details\":[]"));
  }
}

TEST_F(RestGatewayTest, QueryParametersFillTheRequest) {
  auto res = client_->Get("/v1/dead-letters?limit=5", Auth());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(node_.last_limit, 5);
  res = client_->Get("/v1/dead-letters?limit=many", Auth());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_THAT(res->body, HasSubstr("\"code\":3"));
  res = client_->Get("/v1/dead-letters?limit=-1", Auth());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);  // The pane's own validation, mapped.
}

TEST_F(RestGatewayTest, BadBodiesAndUnknownRoutesAreClientErrors) {
  auto res = client_->Post("/v1/nodes", Auth(), "{not json", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  res = client_->Post("/v1/nodes", Auth(), std::string(8192, ' '), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 413);
  res = client_->Get("/v1/nope", Auth());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  res = client_->Delete("/v1/status", Auth());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);
  res = client_->Delete("/v1/nodes/abc", Auth());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  // A well-formed call of something not available yet says so.
  res = client_->Delete("/v1/nodes/3", Auth());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 501);
}

TEST_F(RestGatewayTest, ErrorsHttplibAnswersItselfCarryAJsonBodyToo) {
  // `curl -X PUT .../v1/status` sends no Content-Length: cpp-httplib answers 400 itself, and
  // did so with an empty body.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(pane_->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string request = "PUT /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(::write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  std::string answer;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof(buf))) > 0;)
    answer.append(buf, static_cast<size_t>(n));
  ::close(fd);
  EXPECT_THAT(answer, ::testing::StartsWith("HTTP/1.1 4"));
  EXPECT_THAT(answer, HasSubstr("application/json"));
  EXPECT_THAT(answer, HasSubstr("{\"code\":"));
  // The body-size limit too.
  auto res = client_->Post("/v1/nodes", Auth(), std::string(8192, ' '), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 413);
  EXPECT_THAT(res->body, HasSubstr("{\"code\":8,"));
}

TEST_F(RestGatewayTest, JsonBodiesSentAsFormDataAreStillJson) {
  // `curl -d '{...}'` labels the body application/x-www-form-urlencoded; it must not be read as
  // query parameters (regression: such calls answered 400).
  auto res = client_->Post("/v1/shards/0/leader", Auth(), "{\"nodeId\": \"2\"}",
                           "application/x-www-form-urlencoded");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 501) << res->body;  // This test's node does not implement it.
}

TEST_F(RestGatewayTest, RetryDeadLettersIsAPostWithIdsInTheBody) {
  // proto3 JSON: int64 ids as strings or numbers.
  auto res =
      client_->Post("/v1/dead-letters:retry", Auth(), "{\"ids\": [\"3\", 5]}", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(node_.retried_ids, (std::vector<int64_t>{3, 5}));
  EXPECT_THAT(res->body, HasSubstr("\"applied\":\"2\""));
  EXPECT_THAT(res->body, HasSubstr("\"stillFailing\":\"1\""));
  // An empty body (or {}) retries every dead letter.
  res = client_->Post("/v1/dead-letters:retry", Auth(), "{}", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_TRUE(node_.retried_ids.empty());
  res = client_->Post("/v1/dead-letters:retry", Auth(), "{\"ids\": [\"-2\"]}", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400) << res->body;
  res = client_->Post("/v1/dead-letters:retry", "{}", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  res = client_->Get("/v1/dead-letters:retry", Auth());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);
}

TEST_F(RestGatewayTest, ProbesAndMetricsNeedNoAuth) {
  auto res = client_->Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  res = client_->Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  node_.ready = true;
  res = client_->Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  res = client_->Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->body, "marmot_up 1\n");
}

// Connects to 127.0.0.1:`port`; -1 on failure.
int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A pane whose REST requests must arrive whole within 2 seconds, and a client connected to it.
class RestGatewayTrickleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pane = PaneServer::Start(
        {.address = "127.0.0.1:0", .rest_request_timeout = absl::Seconds(2)}, &node_);
    ASSERT_TRUE(pane.ok()) << pane.status();
    pane_ = *std::move(pane);
    fd_ = Connect(pane_->port());
    ASSERT_GE(fd_, 0);
  }
  void TearDown() override {
    if (fd_ >= 0) ::close(fd_);
  }

  FixedNode node_;
  std::unique_ptr<PaneServer> pane_;
  int fd_ = -1;
};

TEST_F(RestGatewayTrickleTest, ARequestTrickledInPiecesIsCutOffAtTheRequestTimeout) {
  const int fd = fd_;
  // Given a client that sends a request line and then one header every 300 ms, never ending
  const std::string start = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
  ASSERT_EQ(::send(fd, start.data(), start.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(start.size()));
  const absl::Time began = absl::Now();
  bool closed = false;
  while (!closed && absl::Now() - began < absl::Seconds(15)) {
    absl::SleepFor(absl::Milliseconds(300));
    char byte;
    const ssize_t got = ::recv(fd, &byte, 1, MSG_DONTWAIT);
    closed = got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ||
             ::send(fd, "X-A: b\r\n", 8, MSG_NOSIGNAL) < 0;
  }
  const absl::Duration held = absl::Now() - began;
  // Then the pane closes the connection about then, although each piece came in time
  EXPECT_TRUE(closed) << "the connection was held for " << held;
  EXPECT_GE(held, absl::Milliseconds(1500));
  EXPECT_LE(held, absl::Seconds(8));
}

TEST_F(RestGatewayTrickleTest, ARequestArrivingInTimeIsServedAndTheNextGetsItsOwnTime) {
  // Given a client whose requests each come in pieces over a second
  const int fd = fd_;
  timeval wait{.tv_sec = 10, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  // Then each is answered on the same connection, however long the connection lives
  for (int i = 0; i < 3; ++i) {
    for (const char* piece : {"GET /healthz HTTP/1.1\r\n", "Host: x\r\n", "\r\n"}) {
      ASSERT_GT(::send(fd, piece, std::strlen(piece), MSG_NOSIGNAL), 0);
      absl::SleepFor(absl::Milliseconds(400));
    }
    std::string answer;
    char buf[512];
    while (answer.find("ok\n") == std::string::npos) {
      const ssize_t got = ::recv(fd, buf, sizeof buf, 0);
      ASSERT_GT(got, 0) << "request " << i << " got no answer: " << answer;
      answer.append(buf, static_cast<size_t>(got));
    }
    EXPECT_THAT(answer, HasSubstr("200 OK")) << i;
  }
}

TEST(RestGatewayStatusTest, FollowsTheGrpcGatewayTable) {
  EXPECT_EQ(RestGateway::HttpStatusFor(0), 200);
  EXPECT_EQ(RestGateway::HttpStatusFor(3), 400);
  EXPECT_EQ(RestGateway::HttpStatusFor(5), 404);
  EXPECT_EQ(RestGateway::HttpStatusFor(9), 400);
  EXPECT_EQ(RestGateway::HttpStatusFor(12), 501);
  EXPECT_EQ(RestGateway::HttpStatusFor(14), 503);
  EXPECT_EQ(RestGateway::HttpStatusFor(16), 401);
}

}  // namespace
}  // namespace marmot::pane
