// marmot with -pane-tls-cert-file and -pane-tls-key-file: the pane's one port answers gRPC and
// REST over TLS only; files that cannot serve stop marmot before it touches Raft state.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "pane/testing/tls_test_certs.h"
#include "sqlite/testing/sqlite_cli.h"
#include "tests/testing/loopback_port.h"
#include "tests/testing/paths.h"
#include "tests/testing/subprocess.h"

namespace marmot {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

std::pair<int, std::string> Shell(const std::string& command) {
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = pclose(p);
  return {WEXITSTATUS(status), out};
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(PaneTlsProcessTest, ThePaneAnswersGrpcAndRestOverTlsOnlyOnItsOnePort) {
  const std::string dir = testing::NewTestDir("pane-tls-process");
  absl::StatusOr<pane::testing::TlsTestCerts> certs = pane::testing::MakeTlsTestCerts(dir);
  ASSERT_TRUE(certs.ok()) << certs.status();
  const std::string db = dir + "/app.db";
  ASSERT_TRUE(sqlite::testing::RunSqliteCli(db, "CREATE TABLE t (id INTEGER PRIMARY KEY);").ok());
  const int pane_port = testing::FreeLoopbackPort();
  ::setenv("AUTH_KEY", "Basic c2VjcmV0", 1);
  testing::Subprocess marmot(
      {testing::MarmotBinary(), "-node-id=1", "-db-path=" + db, "-raft-path=" + dir + "/raft",
       absl::StrCat("-bind=127.0.0.1:", testing::FreeLoopbackPort()),
       absl::StrCat("-bind-pane=localhost:", pane_port), "-shards=2",
       "-pane-tls-cert-file=" + certs->cert_pem, "-pane-tls-key-file=" + certs->key_pem},
      dir);
  ::unsetenv("AUTH_KEY");
  ASSERT_TRUE(testing::WaitFor(
      [&] { return marmot.Stderr().find(" replicating ") != std::string::npos; }, 30s))
      << marmot.Stderr();
  EXPECT_THAT(marmot.Stderr(),
              HasSubstr(absl::StrCat("control pane listening on port ", pane_port, " (TLS:")));
  const std::string https = absl::StrCat("https://localhost:", pane_port);
  const std::string curl = "curl -fsS --cacert " + certs->ca_pem + " ";

  // REST over TLS: probes without the key, calls with it.
  EXPECT_EQ(Shell(curl + https + "/healthz"), std::make_pair(0, std::string("ok\n")));
  EXPECT_TRUE(testing::WaitFor([&] { return Shell(curl + https + "/readyz").first == 0; }, 30s));
  auto [code, out] = Shell(curl + "-H 'Authorization: Basic c2VjcmV0' " + https + "/v1/status");
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("\"nodeId\":\"1\""));
  std::tie(code, out) = Shell(curl + https + "/v1/status");
  EXPECT_NE(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("401"));
  // gRPC over TLS on the same port.
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = ReadFile(certs->ca_pem);
  auto channel =
      grpc::CreateChannel(absl::StrCat("localhost:", pane_port), grpc::SslCredentials(tls));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::health::v1::HealthCheckResponse health;
  grpc::Status s = grpc::health::v1::Health::NewStub(channel)->Check(&ctx, {}, &health);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(health.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  // Plaintext is refused, REST and gRPC alike.
  std::tie(code, out) = Shell(absl::StrCat("curl -sS http://localhost:", pane_port, "/healthz"));
  EXPECT_NE(code, 0) << out;
  auto plain = grpc::CreateChannel(absl::StrCat("127.0.0.1:", pane_port),
                                   grpc::InsecureChannelCredentials());
  grpc::ClientContext plain_ctx;
  plain_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  EXPECT_EQ(grpc::health::v1::Health::NewStub(plain)->Check(&plain_ctx, {}, &health).error_code(),
            grpc::StatusCode::UNAVAILABLE);

  marmot.Signal(SIGTERM);
  EXPECT_EQ(marmot.Wait(20s), std::optional<int>(0)) << marmot.Stderr();
}

TEST(PaneTlsProcessTest, TlsFilesThatCannotServeStopMarmotBeforeItTouchesRaftState) {
  const std::string dir = testing::NewTestDir("pane-tls-bad");
  absl::StatusOr<pane::testing::TlsTestCerts> certs = pane::testing::MakeTlsTestCerts(dir);
  ASSERT_TRUE(certs.ok()) << certs.status();
  testing::RunResult r = testing::Run(
      {testing::MarmotBinary(), "-node-id=1", "-db-path=" + dir + "/app.db",
       "-raft-path=" + dir + "/raft", absl::StrCat("-bind=127.0.0.1:", testing::FreeLoopbackPort()),
       absl::StrCat("-bind-pane=127.0.0.1:", testing::FreeLoopbackPort()),
       "-pane-tls-cert-file=" + certs->cert_pem, "-pane-tls-key-file=" + certs->other_key},
      20s);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("the pane's TLS key " + certs->other_key + " cannot be used"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/raft"));
}

}  // namespace
}  // namespace marmot
