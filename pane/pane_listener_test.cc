// The pane's one port over real sockets: gRPC and REST side by side, clients that say nothing
// or nonsense, and a shutdown with every kind of connection open.
#include "pane/pane_listener.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "pane/pane_server.h"
#include "proto/admin.grpc.pb.h"

namespace marmot::pane {
namespace {

using ::testing::HasSubstr;

class FixedNode : public NodeControl {
 public:
  absl::StatusOr<admin::v1::GetStatusResponse> GetStatus() override {
    admin::v1::GetStatusResponse r;
    r.set_node_id(7);
    return r;
  }
  absl::StatusOr<admin::v1::ListDeadLettersResponse> ListDeadLetters(int) override {
    return admin::v1::ListDeadLettersResponse();
  }
  bool Ready() override { return true; }
  absl::StatusOr<admin::v1::RetryDeadLettersResponse> RetryDeadLetters(
      const std::vector<int64_t>&) override {
    return admin::v1::RetryDeadLettersResponse();
  }
};

OwnedFd Connect(int port) {
  OwnedFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  return fd;
}

void Send(const OwnedFd& fd, absl::string_view bytes) {
  ASSERT_EQ(::send(fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(bytes.size()));
}

// Reads until the server closes `fd` (what it sent meanwhile goes to `received`); returns how
// long that took, or nullopt when it is still open after `timeout`.
std::optional<absl::Duration> WaitClosed(const OwnedFd& fd, absl::Duration timeout,
                                         std::string* received = nullptr) {
  const absl::Time start = absl::Now();
  while (absl::Now() - start < timeout) {
    if (WaitForSocket(fd.get(), POLLIN, absl::Milliseconds(50), {}) != WaitResult::kReady) continue;
    char buf[4096];
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n <= 0) return absl::Now() - start;
    if (received != nullptr) received->append(buf, static_cast<size_t>(n));
  }
  return std::nullopt;
}

// Reads from `fd` until what it received holds `text`, the server closes it, or `timeout`
// passes; returns what it received.
std::string ReadUntil(const OwnedFd& fd, absl::string_view text, absl::Duration timeout) {
  std::string received;
  const absl::Time start = absl::Now();
  while (!absl::StrContains(received, text) && absl::Now() - start < timeout) {
    if (WaitForSocket(fd.get(), POLLIN, absl::Milliseconds(50), {}) != WaitResult::kReady) continue;
    char buf[4096];
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    received.append(buf, static_cast<size_t>(n));
  }
  return received;
}

class OnePortTest : public ::testing::Test {
 protected:
  void StartPane(absl::Duration first_bytes_timeout, std::string rest_address = "") {
    auto pane = PaneServer::Start({.address = "127.0.0.1:0",
                                   .rest_address = std::move(rest_address),
                                   .auth_key = "Basic abc",
                                   .metrics = [] { return std::string("marmot_up 1\n"); },
                                   .first_bytes_timeout = first_bytes_timeout},
                                  &node_);
    ASSERT_TRUE(pane.ok()) << pane.status();
    pane_ = *std::move(pane);
  }
  grpc::Status GrpcStatus(int port, admin::v1::GetStatusResponse* out) {
    auto channel =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ctx.AddMetadata("authorization", "Basic abc");
    return admin::v1::Admin::NewStub(channel)->GetStatus(&ctx, {}, out);
  }
  httplib::Result RestGet(int port, const std::string& path) {
    httplib::Client client("127.0.0.1", port);
    client.set_connection_timeout(10, 0);
    client.set_read_timeout(10, 0);
    return client.Get(path, {{"Authorization", "Basic abc"}});
  }

  FixedNode node_;
  std::unique_ptr<PaneServer> pane_;
};

TEST_F(OnePortTest, GrpcAndRestShareOnePort) {
  StartPane(absl::Seconds(10));
  EXPECT_EQ(pane_->rest_port(), pane_->port());
  for (int round = 0; round < 3; ++round) {
    admin::v1::GetStatusResponse status;
    grpc::Status s = GrpcStatus(pane_->port(), &status);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(status.node_id(), 7u);
    auto res = RestGet(pane_->port(), "/v1/status");
    ASSERT_TRUE(res) << res.error();
    EXPECT_EQ(res->status, 200);
    EXPECT_THAT(res->body, HasSubstr("\"nodeId\":\"7\""));
    res = RestGet(pane_->port(), "/metrics");
    ASSERT_TRUE(res) << res.error();
    EXPECT_EQ(res->body, "marmot_up 1\n");
  }
  // One REST connection carries several requests (keep-alive).
  httplib::Client client("127.0.0.1", pane_->port());
  client.set_keep_alive(true);
  for (int i = 0; i < 4; ++i) {
    auto res = client.Get("/healthz");
    ASSERT_TRUE(res) << res.error();
    EXPECT_EQ(res->body, "ok\n");
  }
}

TEST_F(OnePortTest, SilentClientsHoldUpNoOne) {
  // Given a minute to say something, twenty connections say nothing
  StartPane(absl::Seconds(60));
  std::vector<OwnedFd> silent;
  for (int i = 0; i < 20; ++i) silent.push_back(Connect(pane_->port()));
  // Then gRPC and REST clients are still served (within their 10 s deadlines)
  admin::v1::GetStatusResponse status;
  grpc::Status s = GrpcStatus(pane_->port(), &status);
  EXPECT_TRUE(s.ok()) << s.error_message();
  auto res = RestGet(pane_->port(), "/healthz");
  ASSERT_TRUE(res) << res.error();
  EXPECT_EQ(res->status, 200);
  // and the silent ones are still waiting.
  EXPECT_EQ(WaitClosed(silent.front(), absl::Milliseconds(200)), std::nullopt);
}

TEST_F(OnePortTest, ASilentOrStalledClientIsDroppedAfterTheFirstBytesTimeout) {
  StartPane(absl::Seconds(1));
  const absl::Time start = absl::Now();
  OwnedFd silent = Connect(pane_->port());
  OwnedFd stalled = Connect(pane_->port());
  Send(stalled, "GE");
  for (const OwnedFd* fd : {&silent, &stalled}) {
    ASSERT_NE(WaitClosed(*fd, absl::Seconds(20)), std::nullopt);
    EXPECT_GE(absl::Now() - start, absl::Milliseconds(900));
  }
}

TEST_F(OnePortTest, NonsenseIsClosedWithoutWaiting) {
  StartPane(absl::Seconds(60));
  // A TLS ClientHello on this plaintext port, and bytes that are no method.
  for (absl::string_view bytes :
       {absl::string_view("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11),
        absl::string_view("get / HTTP/1.1\r\n\r\n")}) {
    OwnedFd fd = Connect(pane_->port());
    Send(fd, bytes);
    std::string answer;
    std::optional<absl::Duration> closed = WaitClosed(fd, absl::Seconds(30), &answer);
    ASSERT_TRUE(closed.has_value());
    EXPECT_LT(*closed, absl::Seconds(30));
    EXPECT_EQ(answer, "");
  }
  // The port still serves.
  auto res = RestGet(pane_->port(), "/healthz");
  ASSERT_TRUE(res) << res.error();
}

TEST_F(OnePortTest, ShutdownEndsEveryConnectionPromptly) {
  StartPane(absl::Seconds(60));
  const int port = pane_->port();
  // Silent, between two requests (keep-alive), in the middle of a request body, and a gRPC
  // stream that never ends by itself.
  OwnedFd silent = Connect(port);
  OwnedFd idle = Connect(port);
  Send(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  OwnedFd midway = Connect(port);
  Send(midway, "POST /v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"node");
  auto channel =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
  grpc::ClientContext watch_ctx;
  grpc::health::v1::HealthCheckRequest req;
  auto watch = grpc::health::v1::Health::NewStub(channel)->Watch(&watch_ctx, req);
  grpc::health::v1::HealthCheckResponse first;
  ASSERT_TRUE(watch->Read(&first));
  std::atomic<bool> watch_ended{false};
  std::thread reader([&] {
    grpc::health::v1::HealthCheckResponse r;
    while (watch->Read(&r)) {
    }
    watch_ended = true;
  });
  std::string idle_answer;
  ASSERT_EQ(WaitClosed(idle, absl::Milliseconds(300), &idle_answer), std::nullopt);
  EXPECT_THAT(idle_answer, HasSubstr("200 OK"));

  const absl::Time start = absl::Now();
  pane_->Shutdown(2000);
  const absl::Duration took = absl::Now() - start;
  EXPECT_LT(took, absl::Seconds(5));
  for (const OwnedFd* fd : {&silent, &idle, &midway}) {
    EXPECT_NE(WaitClosed(*fd, absl::Seconds(1)), std::nullopt);
  }
  reader.join();
  EXPECT_TRUE(watch_ended);
  // Nothing listens any more.
  OwnedFd after(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_NE(::connect(after.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
}

TEST_F(OnePortTest, RestCanHaveAPortOfItsOwn) {
  StartPane(absl::Seconds(60), "127.0.0.1:0");
  ASSERT_NE(pane_->rest_port(), pane_->port());
  admin::v1::GetStatusResponse status;
  grpc::Status s = GrpcStatus(pane_->port(), &status);
  EXPECT_TRUE(s.ok()) << s.error_message();
  auto res = RestGet(pane_->rest_port(), "/v1/status");
  ASSERT_TRUE(res) << res.error();
  EXPECT_EQ(res->status, 200);
  // Each port serves only its own protocol.
  EXPECT_FALSE(RestGet(pane_->port(), "/healthz"));
  EXPECT_FALSE(GrpcStatus(pane_->rest_port(), &status).ok());
}

// Answers /healthz 200 within `within`, every time of `rounds`.
void ExpectHealthyPromptly(int port, int rounds, absl::Duration within) {
  for (int i = 0; i < rounds; ++i) {
    httplib::Client client("127.0.0.1", port);
    client.set_connection_timeout(10, 0);
    client.set_read_timeout(10, 0);
    const absl::Time start = absl::Now();
    auto res = client.Get("/healthz");
    ASSERT_TRUE(res) << "round " << i << ": " << res.error();
    EXPECT_EQ(res->status, 200);
    EXPECT_LT(absl::Now() - start, within) << "round " << i;
  }
}

TEST_F(OnePortTest, AFloodOfSilentConnectionsShutsNoOneOut) {
  // Given a minute to say something, more connections than may be served at once (128) say
  // nothing
  StartPane(absl::Seconds(60));
  std::vector<OwnedFd> silent;
  for (int i = 0; i < 160; ++i) silent.push_back(Connect(pane_->port()));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  // Then /healthz and gRPC answer at once, again and again
  ExpectHealthyPromptly(pane_->port(), 10, absl::Seconds(2));
  admin::v1::GetStatusResponse status;
  grpc::Status s = GrpcStatus(pane_->port(), &status);
  EXPECT_TRUE(s.ok()) << s.error_message();
  // because the silent ones that waited longest made room (closed by the listener's thread,
  // which a busy machine may run late: waited for, not timed).
  EXPECT_NE(WaitClosed(silent.front(), absl::Seconds(10)), std::nullopt);
  EXPECT_EQ(WaitClosed(silent.back(), absl::Milliseconds(100)), std::nullopt);
}

TEST_F(OnePortTest, IdleKeepAliveConnectionsShutNoOneOut) {
  // Given 130 REST connections that each made a request and keep the connection idle
  StartPane(absl::Seconds(60));
  // (each answered before the next connects: 130 that arrive at once before any is served are
  // more than may be served, and two of them are closed unanswered; regression: on a busy
  // machine the test sent them all at once and the first went unanswered)
  std::vector<OwnedFd> idle;
  for (int i = 0; i < 130; ++i) {
    idle.push_back(Connect(pane_->port()));
    Send(idle.back(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    // Then each was answered (an answer can be slow on a busy machine: it is waited for, not
    // timed)
    ASSERT_THAT(ReadUntil(idle.back(), "200 OK", absl::Seconds(10)), HasSubstr("200 OK")) << i;
  }
  // and the ones idle longest made room: closed once answered (waited for, not timed: it
  // failed once in 1 s on a machine at load 12).
  EXPECT_NE(WaitClosed(idle.front(), absl::Seconds(10)), std::nullopt);
  // Then /healthz still answers at once, again and again.
  ExpectHealthyPromptly(pane_->port(), 10, absl::Seconds(2));
}

// A listener whose REST handler answers a request line and holds the connection until released.
class LimitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto listener = PaneListener::Start(
        {.address = "127.0.0.1:0", .first_bytes_timeout = absl::Seconds(60), .max_connections = 2},
        {.grpc = [](int fd) { ::close(fd); },
         .rest =
             [this](int fd, const StopSignals&) {
               ++served_;
               OwnedFd conn(fd);
               Send(conn, "served");
               absl::MutexLock lock(&mu_);
               mu_.Await(absl::Condition(&released_));
             }});
    ASSERT_TRUE(listener.ok()) << listener.status();
    listener_ = *std::move(listener);
  }
  void TearDown() override {
    Release();
    listener_->Stop();
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }
  // Connects and sends a request line; true when the handler answered.
  bool Request(OwnedFd* fd) {
    *fd = Connect(listener_->port());
    Send(*fd, "GET / HTTP/1.1\r\n\r\n");
    char buf[6];
    return WaitForSocket(fd->get(), POLLIN, absl::Seconds(30), {}) == WaitResult::kReady &&
           ::recv(fd->get(), buf, sizeof buf, MSG_WAITALL) == 6;
  }

  std::atomic<int> served_{0};
  absl::Mutex mu_;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<PaneListener> listener_;
};

TEST_F(LimitTest, AtTheLimitTheConnectionIdleLongestMakesRoom) {
  // Both slots are taken by clients that say nothing
  OwnedFd a = Connect(listener_->port());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  OwnedFd b = Connect(listener_->port());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // A third one closes the first, and is served
  OwnedFd c;
  ASSERT_TRUE(Request(&c));
  EXPECT_NE(WaitClosed(a, absl::Seconds(5)), std::nullopt);
  EXPECT_EQ(WaitClosed(b, absl::Milliseconds(100)), std::nullopt);
  // and so does a fourth, in place of the second (c is busy, not idle).
  OwnedFd d;
  ASSERT_TRUE(Request(&d));
  EXPECT_NE(WaitClosed(b, absl::Seconds(5)), std::nullopt);
  EXPECT_EQ(served_.load(), 2);
}

TEST_F(LimitTest, WhenEveryConnectionIsBusyANewOneIsClosedAtOnce) {
  OwnedFd a, b;
  ASSERT_TRUE(Request(&a));
  ASSERT_TRUE(Request(&b));
  OwnedFd c = Connect(listener_->port());
  std::optional<absl::Duration> closed = WaitClosed(c, absl::Seconds(30));
  ASSERT_TRUE(closed.has_value());
  EXPECT_LT(*closed, absl::Seconds(30));
  // Once they are done, slots are free again.
  Release();
  a.Reset();
  b.Reset();
  bool served_again = false;
  for (int attempt = 0; attempt < 100 && !served_again; ++attempt) {
    OwnedFd d;
    served_again = Request(&d);
    if (!served_again) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(served_again);
  EXPECT_EQ(served_.load(), 3);
}

}  // namespace
}  // namespace marmot::pane
