// The control pane over real gRPC on loopback: auth on admin calls, open health, reflection.
#include "pane/pane_server.h"

#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <future>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "google/api/annotations.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "proto/admin.grpc.pb.h"

namespace marmot::pane {
namespace {

using ::testing::HasSubstr;

// Answers with fixed data: the pane's own behaviour (auth, mapping, transport) is under test.
// The pane calls it on gRPC's threads while the test sets and reads it: its fields sit behind a
// lock (a request's bytes over loopback order them too, but no sanitizer sees through a socket).
class FixedNode : public NodeControl {
 public:
  absl::StatusOr<admin::v1::GetStatusResponse> GetStatus() override {
    std::lock_guard<std::mutex> l(mu_);
    if (!status_.ok()) return status_;
    admin::v1::GetStatusResponse r;
    r.set_node_id(7);
    return r;
  }
  absl::StatusOr<admin::v1::ListDeadLettersResponse> ListDeadLetters(int) override {
    return admin::v1::ListDeadLettersResponse();
  }
  bool Ready() override { return true; }
  absl::StatusOr<admin::v1::RetryDeadLettersResponse> RetryDeadLetters(
      const std::vector<int64_t>& ids) override {
    std::lock_guard<std::mutex> l(mu_);
    retried_ids_ = ids;
    ++retries_;
    if (!status_.ok()) return status_;
    admin::v1::RetryDeadLettersResponse r;
    r.set_applied(static_cast<int64_t>(ids.size()));
    r.set_still_failing(1);
    return r;
  }
  absl::StatusOr<admin::v1::ListConflictsResponse> ListConflicts(int limit,
                                                                 const std::string& table,
                                                                 int64_t before_id) override {
    std::lock_guard<std::mutex> l(mu_);
    listed_ = absl::StrCat(limit, " ", table, " ", before_id);
    ++lists_;
    if (!status_.ok()) return status_;
    admin::v1::ListConflictsResponse r;
    r.set_total(1);
    admin::v1::Conflict* c = r.add_conflicts();
    c->set_id(3);
    c->set_table(table);
    c->set_key("42");
    c->set_origin_node(2);
    c->set_change_id(7);
    c->set_op("update");
    auto add = [&](const char* column) {
      admin::v1::ColumnValue* v = c->add_row();
      v->set_column(column);
      return v->mutable_value();
    };
    add("id")->set_integer(42);
    add("body")->set_text("hello");
    add("photo")->set_blob(std::string("\x00\xff", 2));
    add("score")->set_real(1.5);
    add("note")->set_null(true);
    add("raw")->set_text_bytes("\xff");
    c->set_winner_origin_node(1);
    c->set_winner_change_id(5);
    return r;
  }
  absl::StatusOr<admin::v1::ResolveConflictResponse> ResolveConflict(
      const admin::v1::ResolveConflictRequest& request) override {
    std::lock_guard<std::mutex> l(mu_);
    resolve_request_ = request;
    ++resolves_;
    if (!status_.ok()) return status_;
    admin::v1::ResolveConflictResponse r;
    r.set_resolved(request.conflicts_size() + request.ids_size());
    return r;
  }
  void set_status(absl::Status status) {
    std::lock_guard<std::mutex> l(mu_);
    status_ = std::move(status);
  }
  std::string listed() {
    std::lock_guard<std::mutex> l(mu_);
    return listed_;
  }
  int lists() {
    std::lock_guard<std::mutex> l(mu_);
    return lists_;
  }
  admin::v1::ResolveConflictRequest resolve_request() {
    std::lock_guard<std::mutex> l(mu_);
    return resolve_request_;
  }
  int resolves() {
    std::lock_guard<std::mutex> l(mu_);
    return resolves_;
  }
  std::vector<int64_t> retried_ids() {
    std::lock_guard<std::mutex> l(mu_);
    return retried_ids_;
  }
  int retries() {
    std::lock_guard<std::mutex> l(mu_);
    return retries_;
  }

 private:
  std::mutex mu_;
  absl::Status status_ = absl::OkStatus();
  std::vector<int64_t> retried_ids_;
  int retries_ = 0;
  std::string listed_;
  int lists_ = 0;
  admin::v1::ResolveConflictRequest resolve_request_;
  int resolves_ = 0;
};

class PaneServerTest : public ::testing::Test {
 protected:
  void StartPane(std::optional<std::string> key) {
    auto pane = PaneServer::Start({.address = "127.0.0.1:0", .auth_key = key}, &node_);
    ASSERT_TRUE(pane.ok()) << pane.status();
    pane_ = *std::move(pane);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", pane_->port()),
                                   grpc::InsecureChannelCredentials());
  }
  grpc::Status CallStatus(const char* authorization, admin::v1::GetStatusResponse* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (authorization != nullptr) ctx.AddMetadata("authorization", authorization);
    return admin::v1::Admin::NewStub(channel_)->GetStatus(&ctx, {}, out);
  }
  FixedNode node_;
  std::unique_ptr<PaneServer> pane_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(PaneServerTest, AdminCallsNeedTheExactKey) {
  StartPane("Basic c2VjcmV0");
  admin::v1::GetStatusResponse out;
  EXPECT_EQ(CallStatus(nullptr, &out).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(CallStatus("Basic c2VjcmV0x", &out).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(CallStatus("Basic c2VjcmV", &out).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status ok = CallStatus("Basic c2VjcmV0", &out);
  ASSERT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(out.node_id(), 7u);
  // Calls not wired yet check authorization first, then say so.
  grpc::ClientContext ctx;
  admin::v1::ListNodesResponse nodes;
  EXPECT_EQ(admin::v1::Admin::NewStub(channel_)->ListNodes(&ctx, {}, &nodes).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(PaneServerTest, WithoutAKeyEveryAdminCallIsRefused) {
  StartPane(std::nullopt);
  admin::v1::GetStatusResponse out;
  grpc::Status s = CallStatus("", &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("AUTH_KEY"));
}

TEST_F(PaneServerTest, ErrorsOfTheNodeKeepTheirCode) {
  StartPane("k");
  node_.set_status(absl::UnavailableError("no leader for shard 3"));
  admin::v1::GetStatusResponse out;
  grpc::Status s = CallStatus("k", &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(s.error_message(), "no leader for shard 3");
}

TEST_F(PaneServerTest, RetryDeadLettersNeedsTheKeyChecksIdsAndReachesTheNode) {
  StartPane("k");
  auto retry = [&](const char* authorization, std::vector<int64_t> ids,
                   admin::v1::RetryDeadLettersResponse* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (authorization != nullptr) ctx.AddMetadata("authorization", authorization);
    admin::v1::RetryDeadLettersRequest req;
    for (int64_t id : ids) req.add_ids(id);
    return admin::v1::Admin::NewStub(channel_)->RetryDeadLetters(&ctx, req, out);
  };
  admin::v1::RetryDeadLettersResponse out;
  // Without the key nothing reaches the node.
  EXPECT_EQ(retry(nullptr, {}, &out).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(retry("wrong", {}, &out).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // A negative id is a bad request, also never sent on.
  grpc::Status bad = retry("k", {3, -1}, &out);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(node_.retries(), 0);
  // The ids reach the node and its counts come back.
  grpc::Status ok = retry("k", {4, 9}, &out);
  ASSERT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(node_.retried_ids(), (std::vector<int64_t>{4, 9}));
  EXPECT_EQ(out.applied(), 2);
  EXPECT_EQ(out.still_failing(), 1);
  // An unknown id answers with the node's NOT_FOUND.
  node_.set_status(absl::NotFoundError("no dead letter 12 on this node"));
  grpc::Status missing = retry("k", {12}, &out);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(missing.error_message(), "no dead letter 12 on this node");
}

TEST_F(PaneServerTest, ListConflictsChecksPagingAndShowsValuesWithTheirStorageClasses) {
  StartPane("k");
  httplib::Client rest("127.0.0.1", pane_->port());
  const httplib::Headers auth = {{"Authorization", "k"}};
  // Without the key nothing reaches the node.
  auto denied = rest.Get("/v1/conflicts");
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 401);
  // Bad paging is a bad request, never sent on.
  for (const char* bad :
       {"/v1/conflicts?limit=-1", "/v1/conflicts?limit=10001", "/v1/conflicts?limit=abc",
        "/v1/conflicts?before_id=-3", "/v1/conflicts?before_id=99999999999999999999",
        "/v1/conflicts?tabel=t"}) {
    auto res = rest.Get(bad, auth);
    ASSERT_TRUE(res) << bad;
    EXPECT_EQ(res->status, 400) << bad << ": " << res->body;
    EXPECT_THAT(res->body, HasSubstr("\"code\":3")) << bad;
  }
  EXPECT_EQ(node_.lists(), 0);

  // The filter and page reach the node; the default limit is 100.
  auto res = rest.Get("/v1/conflicts?table=doc&limit=5&before_id=40", auth);
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(node_.listed(), "5 doc 40");
  // Each value says its storage class: 64-bit integers as strings, blobs and TEXT that is not
  // UTF-8 in base64.
  for (const char* shown :
       {"\"table\":\"doc\"", "\"key\":\"42\"", "\"originNode\":\"2\"", "\"changeId\":\"7\"",
        "\"op\":\"update\"", "{\"column\":\"id\",\"value\":{\"integer\":\"42\"}}",
        "{\"column\":\"body\",\"value\":{\"text\":\"hello\"}}",
        "{\"column\":\"photo\",\"value\":{\"blob\":\"AP8=\"}}",
        "{\"column\":\"score\",\"value\":{\"real\":1.5}}",
        "{\"column\":\"note\",\"value\":{\"null\":true}}",
        "{\"column\":\"raw\",\"value\":{\"textBytes\":\"/w==\"}}", "\"winnerOriginNode\":\"1\"",
        "\"winnerChangeId\":\"5\"", "\"total\":\"1\""}) {
    EXPECT_THAT(res->body, HasSubstr(shown));
  }
  ASSERT_TRUE(rest.Get("/v1/conflicts", auth));
  EXPECT_EQ(node_.listed(), "100  0");

  // Over gRPC likewise.
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "k");
  admin::v1::ListConflictsRequest req;
  req.set_limit(2);
  admin::v1::ListConflictsResponse out;
  grpc::Status s = admin::v1::Admin::NewStub(channel_)->ListConflicts(&ctx, req, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(out.conflicts_size(), 1);
  EXPECT_EQ(out.conflicts(0).row(2).value().blob(), std::string("\x00\xff", 2));
  EXPECT_EQ(node_.listed(), "2  0");
}

TEST_F(PaneServerTest, ResolveConflictRefusesMalformedRequestsAndReachesTheNode) {
  StartPane("k");
  httplib::Client rest("127.0.0.1", pane_->port());
  const httplib::Headers auth = {{"Authorization", "k"}};
  auto resolve = [&](const std::string& body) {
    return rest.Post("/v1/conflicts:resolve", auth, body, "application/json");
  };
  auto denied = rest.Post("/v1/conflicts:resolve", R"({"all": true})", "application/json");
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 401);
  std::string too_many = R"({"ids": [)";
  for (int i = 1; i <= 10001; ++i) absl::StrAppend(&too_many, i == 1 ? "" : ",", i);
  too_many += "]}";
  for (const std::string& bad : std::vector<std::string>{
           "{}",  // names none
           R"({"conflicts": [{"originNode": "0", "table": "doc", "changeId": "3"}]})",
           R"({"conflicts": [{"originNode": "2", "table": "", "changeId": "3"}]})",
           R"({"conflicts": [{"originNode": "2", "table": "doc", "changeId": "-3"}]})",
           R"({"conflicts": [{"originNode": "18446744073709551616", "table": "doc"}]})",
           R"({"ids": ["-1"]})", R"({"ids": [0]})", R"({"ids": ["99999999999999999999"]})",
           R"({"ids": "x"})", R"({"ids": [{"id": 3}]})", R"({"all": "maybe"})",
           R"({"all": true, "ids": ["3"]})", R"({"table": "doc"})", R"({"conflicts": 5})",
           R"({"nope": 1})", "not json", too_many}) {
    auto res = resolve(bad);
    ASSERT_TRUE(res) << bad.substr(0, 80);
    EXPECT_EQ(res->status, 400) << bad.substr(0, 80) << ": " << res->body;
    EXPECT_THAT(res->body, HasSubstr("\"code\":3")) << bad.substr(0, 80);
  }
  EXPECT_EQ(node_.resolves(), 0);

  // What a request names reaches the node as it was given.
  auto res = resolve(
      R"({"conflicts": [{"originNode": "2", "table": "doc", "changeId": "7"}], "ids": ["4"]})");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_THAT(res->body, HasSubstr("\"resolved\":\"2\""));
  admin::v1::ResolveConflictRequest got = node_.resolve_request();
  ASSERT_EQ(got.conflicts_size(), 1);
  EXPECT_EQ(got.conflicts(0).origin_node(), 2u);
  EXPECT_EQ(got.conflicts(0).table(), "doc");
  EXPECT_EQ(got.conflicts(0).change_id(), 7);
  ASSERT_EQ(got.ids_size(), 1);
  EXPECT_EQ(got.ids(0), 4);
  ASSERT_TRUE(resolve(R"({"all": true, "table": "doc"})"));
  EXPECT_TRUE(node_.resolve_request().all());
  EXPECT_EQ(node_.resolve_request().table(), "doc");

  // A conflict the node does not keep: its NOT_FOUND, as 404.
  node_.set_status(absl::NotFoundError("this node keeps no conflict 9 (nothing was resolved)"));
  auto missing = resolve(R"({"ids": ["9"]})");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_THAT(missing->body, HasSubstr("keeps no conflict 9"));
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "k");
  admin::v1::ResolveConflictRequest req;
  req.add_ids(9);
  admin::v1::ResolveConflictResponse out;
  EXPECT_EQ(admin::v1::Admin::NewStub(channel_)->ResolveConflict(&ctx, req, &out).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(PaneServerTest, HealthIsOpenAndFollowsDraining) {
  StartPane("k");
  auto health = grpc::health::v1::Health::NewStub(channel_);
  auto check = [&](const std::string& service) {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status s = health->Check(&ctx, req, &resp);
    return s.ok() ? resp.status() : grpc::health::v1::HealthCheckResponse::UNKNOWN;
  };
  EXPECT_EQ(check(""), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(check("marmot.admin.v1.Admin"), grpc::health::v1::HealthCheckResponse::SERVING);
  pane_->SetServing(false);
  EXPECT_EQ(check(""), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
}

TEST_F(PaneServerTest, ReflectionListsAndDescribesTheServices) {
  StartPane("k");
  auto reflection = grpc::reflection::v1alpha::ServerReflection::NewStub(channel_);
  grpc::ClientContext ctx;
  auto stream = reflection->ServerReflectionInfo(&ctx);
  grpc::reflection::v1alpha::ServerReflectionRequest list;
  list.set_list_services("");
  ASSERT_TRUE(stream->Write(list));
  grpc::reflection::v1alpha::ServerReflectionResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  std::vector<std::string> names;
  for (const auto& s : resp.list_services_response().service()) names.push_back(s.name());
  EXPECT_THAT(names, ::testing::IsSupersetOf({"marmot.admin.v1.Admin", "grpc.health.v1.Health"}));
  // Each service can be described (grpcurl needs its file descriptor, imports included).
  for (const char* symbol : {"marmot.admin.v1.Admin", "grpc.health.v1.Health"}) {
    grpc::reflection::v1alpha::ServerReflectionRequest describe;
    describe.set_file_containing_symbol(symbol);
    ASSERT_TRUE(stream->Write(describe));
    ASSERT_TRUE(stream->Read(&resp));
    EXPECT_GT(resp.file_descriptor_response().file_descriptor_proto_size(), 0) << symbol;
  }
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(PaneServerTest, ABusyAddressIsAClearError) {
  StartPane("k");
  FixedNode other;
  auto second = PaneServer::Start({.address = absl::StrCat("127.0.0.1:", pane_->port())}, &other);
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("cannot listen"));
}

// README, "Security": without AUTH_KEY only health, readiness, metrics and reflection answer;
// every Admin call, over gRPC and over REST, needs it. Walks every method of the service, so a
// call added later is covered too.
TEST_F(PaneServerTest, WithoutTheKeyOnlyHealthReadinessMetricsAndReflectionAnswer) {
  namespace pb = google::protobuf;
  auto pane = PaneServer::Start({.address = "127.0.0.1:0",
                                 .auth_key = "k",
                                 .ready = [] { return true; },
                                 .metrics = [] { return std::string("marmot_up 1\n"); }},
                                &node_);
  ASSERT_TRUE(pane.ok()) << pane.status();
  pane_ = *std::move(pane);
  channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", pane_->port()),
                                 grpc::InsecureChannelCredentials());
  httplib::Client rest("127.0.0.1", pane_->port());
  const pb::ServiceDescriptor* admin =
      pb::DescriptorPool::generated_pool()->FindServiceByName("marmot.admin.v1.Admin");
  ASSERT_NE(admin, nullptr);
  grpc::TemplatedGenericStub<pb::Message, pb::Message> generic(channel_);
  for (int i = 0; i < admin->method_count(); ++i) {
    const pb::MethodDescriptor* m = admin->method(i);
    // gRPC, without and with a wrong key.
    for (const char* key : {static_cast<const char*>(nullptr), "wrong"}) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      if (key != nullptr) ctx.AddMetadata("authorization", key);
      grpc::Status status;
      if (m->server_streaming()) {
        auto reader = admin::v1::Admin::NewStub(channel_)->Backup(&ctx, {});
        admin::v1::BackupChunk chunk;
        EXPECT_FALSE(reader->Read(&chunk)) << m->name();
        status = reader->Finish();
      } else {
        std::unique_ptr<pb::Message> request(
            pb::MessageFactory::generated_factory()->GetPrototype(m->input_type())->New());
        std::unique_ptr<pb::Message> response(
            pb::MessageFactory::generated_factory()->GetPrototype(m->output_type())->New());
        std::promise<grpc::Status> done;
        generic.UnaryCall(&ctx, absl::StrCat("/", admin->full_name(), "/", m->name()),
                          grpc::StubOptions(), request.get(), response.get(),
                          [&done](grpc::Status s) { done.set_value(std::move(s)); });
        status = done.get_future().get();
      }
      EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
          << m->name() << " " << status.error_message();
    }
    // REST: its google.api.http route, path parameters filled.
    const google::api::HttpRule& rule = m->options().GetExtension(google::api::http);
    auto call = [&](const std::string& filled) -> httplib::Result {
      const std::string body = "{}";
      switch (rule.pattern_case()) {
        case google::api::HttpRule::kGet:
          return rest.Get(filled);
        case google::api::HttpRule::kPost:
          return rest.Post(filled, body, "application/json");
        case google::api::HttpRule::kPut:
          return rest.Put(filled, body, "application/json");
        case google::api::HttpRule::kDelete:
          return rest.Delete(filled);
        default:
          return rest.Patch(filled, body, "application/json");
      }
    };
    std::string path;
    switch (rule.pattern_case()) {
      case google::api::HttpRule::kGet:
        path = rule.get();
        break;
      case google::api::HttpRule::kPost:
        path = rule.post();
        break;
      case google::api::HttpRule::kPut:
        path = rule.put();
        break;
      case google::api::HttpRule::kDelete:
        path = rule.delete_();
        break;
      case google::api::HttpRule::kPatch:
        path = rule.patch();
        break;
      default:
        ADD_FAILURE() << m->name() << " has no REST route";
    }
    path = absl::StrReplaceAll(path, {{"{shard}", "1"}, {"{node_id}", "2"}});
    EXPECT_EQ(path.find('{'), std::string::npos) << path;
    httplib::Result res = call(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 401) << path << ": " << res->body;
  }
  // What answers without a key: health and readiness, metrics, reflection.
  for (const char* path : {"/healthz", "/readyz", "/metrics"}) {
    auto res = rest.Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 200) << path;
  }
  grpc::ClientContext health_ctx;
  grpc::health::v1::HealthCheckResponse health;
  EXPECT_TRUE(grpc::health::v1::Health::NewStub(channel_)->Check(&health_ctx, {}, &health).ok());
  grpc::ClientContext reflection_ctx;
  auto reflection =
      grpc::reflection::v1alpha::ServerReflection::NewStub(channel_)->ServerReflectionInfo(
          &reflection_ctx);
  grpc::reflection::v1alpha::ServerReflectionRequest list;
  list.set_list_services("");
  ASSERT_TRUE(reflection->Write(list));
  grpc::reflection::v1alpha::ServerReflectionResponse listed;
  ASSERT_TRUE(reflection->Read(&listed));
  EXPECT_GT(listed.list_services_response().service_size(), 0);
  reflection->WritesDone();
  EXPECT_TRUE(reflection->Finish().ok());
}

TEST(AuthTest, ConstantTimeEqualsIsEquality) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(Authenticator(std::string("")).Allows(""));  // Empty key: not configured.
}

}  // namespace
}  // namespace marmot::pane
