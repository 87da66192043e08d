// TLS on the pane's one port, with certificates of a throwaway CA: gRPC and REST (curl too)
// over TLS, plaintext refused, large answers through the relay, a prompt shutdown.
#include "pane/pane_tls.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "pane/pane_server.h"
#include "pane/testing/tls_test_certs.h"
#include "proto/admin.grpc.pb.h"
#include "sqlite/testing/sqlite_cli.h"

namespace marmot::pane {
namespace {

using ::testing::HasSubstr;

class FixedNode : public NodeControl {
 public:
  absl::StatusOr<admin::v1::GetStatusResponse> GetStatus() override {
    admin::v1::GetStatusResponse r;
    r.set_node_id(7);
    for (int i = 0; i < shards; ++i) r.add_shards()->set_shard(static_cast<uint32_t>(i));
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
  int shards = 1;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::pair<int, std::string> Shell(const std::string& command) {
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = pclose(p);
  return {WEXITSTATUS(status), out};
}

class PaneTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<testing::TlsTestCerts> certs =
        testing::MakeTlsTestCerts(sqlite::testing::NewTempDir("pane-tls"));
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *certs;
    auto pane = PaneServer::Start({.address = "127.0.0.1:0",
                                   .auth_key = "Basic abc",
                                   .tls_cert_file = certs_.cert_pem,
                                   .tls_key_file = certs_.key_pem,
                                   .metrics = [] { return std::string("marmot_up 1\n"); },
                                   .first_bytes_timeout = absl::Seconds(60)},
                                  &node_);
    ASSERT_TRUE(pane.ok()) << pane.status();
    pane_ = *std::move(pane);
  }
  std::shared_ptr<grpc::Channel> TlsChannel(const std::string& ca_pem) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = ReadFile(ca_pem);
    return grpc::CreateChannel(absl::StrCat("localhost:", pane_->port()), grpc::SslCredentials(o));
  }
  grpc::Status GetStatus(const std::shared_ptr<grpc::Channel>& channel,
                         admin::v1::GetStatusResponse* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ctx.AddMetadata("authorization", "Basic abc");
    return admin::v1::Admin::NewStub(channel)->GetStatus(&ctx, {}, out);
  }
  std::unique_ptr<httplib::SSLClient> RestClient() {
    auto client = std::make_unique<httplib::SSLClient>("localhost", pane_->port());
    client->set_ca_cert_path(certs_.ca_pem.c_str());
    client->enable_server_certificate_verification(true);
    client->set_read_timeout(10, 0);
    return client;
  }

  testing::TlsTestCerts certs_;
  FixedNode node_;
  std::unique_ptr<PaneServer> pane_;
};

TEST_F(PaneTlsTest, GrpcAndRestAnswerOverTlsOnOnePort) {
  // gRPC (which offers ALPN h2 only)
  auto channel = TlsChannel(certs_.ca_pem);
  admin::v1::GetStatusResponse status;
  grpc::Status s = GetStatus(channel, &status);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(status.node_id(), 7u);
  grpc::ClientContext health_ctx;
  grpc::health::v1::HealthCheckResponse health;
  ASSERT_TRUE(grpc::health::v1::Health::NewStub(channel)->Check(&health_ctx, {}, &health).ok());
  EXPECT_EQ(health.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  // REST from a client that offers no ALPN, on a kept-alive connection
  auto rest = RestClient();
  rest->set_keep_alive(true);
  for (int i = 0; i < 3; ++i) {
    auto res = rest->Get("/v1/status", {{"Authorization", "Basic abc"}});
    ASSERT_TRUE(res) << res.error();
    EXPECT_EQ(res->status, 200);
    EXPECT_THAT(res->body, HasSubstr("\"nodeId\":\"7\""));
  }
  auto res = rest->Get("/v1/status");
  ASSERT_TRUE(res) << res.error();
  EXPECT_EQ(res->status, 401);  // TLS changes nothing about the key.
  // and curl, which offers h2 and http/1.1 and is answered http/1.1.
  auto [code, out] = Shell(absl::StrCat("curl -fsS --cacert ", certs_.ca_pem,
                                        " https://localhost:", pane_->port(), "/metrics"));
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(out, "marmot_up 1\n");
  std::tie(code, out) = Shell(absl::StrCat(
      "curl -fsS -o /dev/null -w '%{http_version}' --cacert ", certs_.ca_pem,
      " -H 'Authorization: Basic abc' https://localhost:", pane_->port(), "/v1/status"));
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(out, "1.1");
}

TEST_F(PaneTlsTest, PlaintextAndUntrustedClientsAreRefused) {
  // A plaintext gRPC client
  auto plain = grpc::CreateChannel(absl::StrCat("127.0.0.1:", pane_->port()),
                                   grpc::InsecureChannelCredentials());
  admin::v1::GetStatusResponse status;
  EXPECT_EQ(GetStatus(plain, &status).error_code(), grpc::StatusCode::UNAVAILABLE);
  // a plaintext HTTP request: closed without an HTTP answer
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(pane_->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string request = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(::write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  std::string answer;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;)
    answer.append(buf, static_cast<size_t>(n));
  ::close(fd);
  EXPECT_THAT(answer, ::testing::Not(HasSubstr("HTTP/")));
  auto [code, out] = Shell(absl::StrCat("curl -sS http://localhost:", pane_->port(), "/healthz"));
  EXPECT_NE(code, 0) << out;
  // and clients that trust another CA.
  EXPECT_EQ(GetStatus(TlsChannel(certs_.other_pem), &status).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  std::tie(code, out) = Shell(absl::StrCat("curl -sS --cacert ", certs_.other_pem,
                                           " https://localhost:", pane_->port(), "/healthz"));
  EXPECT_NE(code, 0) << out;
  // The port still serves trusted clients.
  EXPECT_TRUE(GetStatus(TlsChannel(certs_.ca_pem), &status).ok());
}

TEST_F(PaneTlsTest, LargeAnswersCrossTheRelayWhole) {
  node_.shards = 40000;  // A GetStatus of about half a megabyte of JSON.
  admin::v1::GetStatusResponse status;
  grpc::Status s = GetStatus(TlsChannel(certs_.ca_pem), &status);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(status.shards_size(), 40000);
  EXPECT_EQ(status.shards(39999).shard(), 39999u);
  auto res = RestClient()->Get("/v1/status", {{"Authorization", "Basic abc"}});
  ASSERT_TRUE(res) << res.error();
  EXPECT_EQ(res->status, 200);
  EXPECT_GT(res->body.size(), 400000u);
  EXPECT_THAT(res->body, HasSubstr("{\"shard\":39999,"));
}

TEST_F(PaneTlsTest, ShutdownEndsTlsConnectionsPromptly) {
  auto channel = TlsChannel(certs_.ca_pem);
  grpc::ClientContext watch_ctx;
  auto watch = grpc::health::v1::Health::NewStub(channel)->Watch(&watch_ctx, {});
  grpc::health::v1::HealthCheckResponse first;
  ASSERT_TRUE(watch->Read(&first));
  std::thread reader([&] {
    grpc::health::v1::HealthCheckResponse r;
    while (watch->Read(&r)) {
    }
  });
  auto rest = RestClient();
  rest->set_keep_alive(true);
  ASSERT_TRUE(rest->Get("/healthz"));
  // A client that connects and never starts its handshake.
  const int silent = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(pane_->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(silent, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const absl::Time start = absl::Now();
  pane_->Shutdown(2000);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  reader.join();
  char byte;
  EXPECT_LE(::read(silent, &byte, 1), 0);
  ::close(silent);
}

TEST_F(PaneTlsTest, ConnectionsThatNeverFinishTheirHandshakeShutNoOneOut) {
  // Given more connections than may be served at once (128) that never finish a handshake:
  // most send nothing, some the start of a ClientHello
  std::vector<int> stalled;
  for (int i = 0; i < 150; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(pane_->port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    if (i % 10 == 0) ASSERT_EQ(::send(fd, "\x16\x03\x01\x02\x00", 5, MSG_NOSIGNAL), 5);
    stalled.push_back(fd);
  }
  // Then REST over TLS still answers at once, again and again.
  for (int round = 0; round < 5; ++round) {
    const absl::Time start = absl::Now();
    auto res = RestClient()->Get("/healthz");
    ASSERT_TRUE(res) << "round " << round << ": " << res.error();
    EXPECT_EQ(res->status, 200);
    EXPECT_LT(absl::Now() - start, absl::Seconds(2)) << "round " << round;
  }
  for (int fd : stalled) ::close(fd);
}

TEST_F(PaneTlsTest, IdleGrpcConnectionsAreClosedAndTheirRelaysFreed) {
  // Given a pane whose gRPC connections may idle for half a second
  pane_.reset();
  auto pane = PaneServer::Start({.address = "127.0.0.1:0",
                                 .auth_key = "Basic abc",
                                 .tls_cert_file = certs_.cert_pem,
                                 .tls_key_file = certs_.key_pem,
                                 .grpc_idle_timeout = absl::Milliseconds(500)},
                                &node_);
  ASSERT_TRUE(pane.ok()) << pane.status();
  pane_ = *std::move(pane);
  // When a client makes a call over TLS and then stays silent
  std::shared_ptr<grpc::Channel> channel = TlsChannel(certs_.ca_pem);
  admin::v1::GetStatusResponse status;
  ASSERT_TRUE(GetStatus(channel, &status).ok());
  ASSERT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);
  // Then the pane closes the connection (the channel leaves READY without a call of its own)
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (channel->GetState(false) == GRPC_CHANNEL_READY && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_NE(channel->GetState(false), GRPC_CHANNEL_READY);
  // And the client's next call reconnects
  EXPECT_TRUE(GetStatus(channel, &status).ok());
  // And REST, which reaches gRPC in-process, keeps answering across idle periods
  absl::SleepFor(absl::Seconds(1));
  auto rest = RestClient()->Get("/v1/status", {{"Authorization", "Basic abc"}});
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest->status, 200) << rest->body;
  absl::SleepFor(absl::Seconds(1));
  rest = RestClient()->Get("/v1/status", {{"Authorization", "Basic abc"}});
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest->status, 200) << rest->body;
}

TEST(PaneTlsRestPortTest, ARestPortOfItsOwnSpeaksTlsToo) {
  absl::StatusOr<testing::TlsTestCerts> certs =
      testing::MakeTlsTestCerts(sqlite::testing::NewTempDir("pane-tls-rest"));
  ASSERT_TRUE(certs.ok()) << certs.status();
  FixedNode node;
  auto pane = PaneServer::Start({.address = "127.0.0.1:0",
                                 .rest_address = "127.0.0.1:0",
                                 .tls_cert_file = certs->cert_pem,
                                 .tls_key_file = certs->key_pem},
                                &node);
  ASSERT_TRUE(pane.ok()) << pane.status();
  auto [code, out] = Shell(absl::StrCat("curl -fsS --cacert ", certs->ca_pem,
                                        " https://localhost:", (*pane)->rest_port(), "/healthz"));
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(out, "ok\n");
  std::tie(code, out) =
      Shell(absl::StrCat("curl -sS http://localhost:", (*pane)->rest_port(), "/healthz"));
  EXPECT_NE(code, 0) << out;
  // The pane's own port serves gRPC only.
  std::tie(code, out) = Shell(absl::StrCat("curl -sS --cacert ", certs->ca_pem,
                                           " https://localhost:", (*pane)->port(), "/healthz"));
  EXPECT_NE(code, 0) << out;
}

TEST(PaneTlsLoadTest, FilesThatCannotServeAreRefusedWithTheReason) {
  absl::StatusOr<testing::TlsTestCerts> certs =
      testing::MakeTlsTestCerts(sqlite::testing::NewTempDir("pane-tls-load"));
  ASSERT_TRUE(certs.ok()) << certs.status();
  absl::StatusOr<std::unique_ptr<PaneTls>> tls = PaneTls::Load(certs->key_pem, certs->key_pem);
  ASSERT_FALSE(tls.ok());
  EXPECT_THAT(std::string(tls.status().message()),
              HasSubstr("the pane's TLS certificate " + certs->key_pem));
  tls = PaneTls::Load(certs->cert_pem, certs->other_key);
  ASSERT_FALSE(tls.ok());
  EXPECT_THAT(std::string(tls.status().message()),
              HasSubstr("the pane's TLS key " + certs->other_key + " cannot be used: "));
  EXPECT_THAT(std::string(tls.status().message()), HasSubstr("key values mismatch"));
  EXPECT_TRUE(PaneTls::Load(certs->cert_pem, certs->key_pem).ok());
  FixedNode node;
  auto pane = PaneServer::Start({.address = "127.0.0.1:0",
                                 .tls_cert_file = certs->cert_pem,
                                 .tls_key_file = certs->other_key},
                                &node);
  ASSERT_FALSE(pane.ok());
  EXPECT_EQ(pane.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace marmot::pane
