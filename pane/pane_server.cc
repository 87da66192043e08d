#include "pane/pane_server.h"

#include <glog/logging.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/server_posix.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "pane/pane_listener.h"
#include "pane/pane_tls.h"
#include "pane/rest_gateway.h"
#include "proto/admin.grpc.pb.h"

namespace marmot::pane {
namespace {

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

}  // namespace

class AdminService final : public admin::v1::Admin::Service {
 public:
  AdminService(NodeControl* control, Authenticator auth)
      : control_(control), auth_(std::move(auth)) {}

  grpc::Status GetStatus(grpc::ServerContext* ctx, const admin::v1::GetStatusRequest*,
                         admin::v1::GetStatusResponse* out) override {
    if (grpc::Status s = Authorize(ctx); !s.ok()) return s;
    absl::StatusOr<admin::v1::GetStatusResponse> status = control_->GetStatus();
    if (!status.ok()) return ToGrpc(status.status());
    *out = *std::move(status);
    return grpc::Status::OK;
  }

  grpc::Status ListDeadLetters(grpc::ServerContext* ctx,
                               const admin::v1::ListDeadLettersRequest* req,
                               admin::v1::ListDeadLettersResponse* out) override {
    if (grpc::Status s = Authorize(ctx); !s.ok()) return s;
    if (req->limit() < 0) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "limit must not be negative");
    }
    absl::StatusOr<admin::v1::ListDeadLettersResponse> list =
        control_->ListDeadLetters(req->limit() == 0 ? 100 : req->limit());
    if (!list.ok()) return ToGrpc(list.status());
    *out = *std::move(list);
    return grpc::Status::OK;
  }

  grpc::Status ListNodes(grpc::ServerContext* ctx, const admin::v1::ListNodesRequest*,
                         admin::v1::ListNodesResponse* out) override {
    if (grpc::Status s = Authorize(ctx); !s.ok()) return s;
    absl::StatusOr<admin::v1::ListNodesResponse> nodes = control_->ListNodes();
    if (!nodes.ok()) return ToGrpc(nodes.status());
    *out = *std::move(nodes);
    return grpc::Status::OK;
  }
  grpc::Status AddNode(grpc::ServerContext* ctx, const admin::v1::AddNodeRequest* req,
                       admin::v1::AddNodeResponse*) override {
    if (grpc::Status s = Authorize(ctx); !s.ok()) return s;
    if (req->node_id() == 0 || req->address().empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "node_id and address are required");
    }
    return ToGrpc(control_->AddNode(req->node_id(), req->address()));
  }
  grpc::Status RemoveNode(grpc::ServerContext* ctx, const admin::v1::RemoveNodeRequest* req,
                          admin::v1::RemoveNodeResponse*) override {
    if (grpc::Status s = Authorize(ctx); !s.ok()) return s;
    if (req->node_id() == 0)
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "node_id is required");
    return ToGrpc(control_->RemoveNode(req->node_id()));
  }
  grpc::Status TransferLeader(grpc::ServerContext* ctx, const admin::v1::TransferLeaderRequest* req,
                              admin::v1::TransferLeaderResponse*) override {
    if (grpc::Status s = Authorize(ctx); !s.ok()) return s;
    if (req->node_id() == 0)
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "node_id is required");
    return ToGrpc(control_->TransferLeader(req->shard(), req->node_id()));
  }
  grpc::Status BalanceLeaders(grpc::ServerContext* ctx, const admin::v1::BalanceLeadersRequest*,
                              admin::v1::BalanceLeadersResponse* out) override {
    if (grpc::Status s = Authorize(ctx); !s.ok()) return s;
    absl::StatusOr<admin::v1::BalanceLeadersResponse> balanced = control_->BalanceLeaders();
    if (!balanced.ok()) return ToGrpc(balanced.status());
    *out = *std::move(balanced);
    return grpc::Status::OK;
  }
  grpc::Status TriggerSnapshot(grpc::ServerContext* ctx,
                               const admin::v1::TriggerSnapshotRequest* req,
                               admin::v1::TriggerSnapshotResponse* out) override {
    if (grpc::Status s = Authorize(ctx); !s.ok()) return s;
    if (absl::Status s =
            control_->TriggerSnapshot(req->all() ? -1 : static_cast<int>(req->shard()));
        !s.ok()) {
      return ToGrpc(s);
    }
    absl::StatusOr<admin::v1::GetStatusResponse> status = control_->GetStatus();
    if (!status.ok()) return ToGrpc(status.status());
    for (const admin::v1::ShardStatus& s : status->shards()) {
      if (req->all() || s.shard() == req->shard()) *out->add_shards() = s;
    }
    return grpc::Status::OK;
  }
  grpc::Status Backup(grpc::ServerContext* ctx, const admin::v1::BackupRequest*,
                      grpc::ServerWriter<admin::v1::BackupChunk>* writer) override {
    if (grpc::Status s = Authorize(ctx); !s.ok()) return s;
    return ToGrpc(control_->Backup([&](const admin::v1::BackupChunk& chunk) {
      return !ctx->IsCancelled() && writer->Write(chunk);
    }));
  }
  grpc::Status RetryDeadLetters(grpc::ServerContext* ctx,
                                const admin::v1::RetryDeadLettersRequest* req,
                                admin::v1::RetryDeadLettersResponse* out) override {
    if (grpc::Status s = Authorize(ctx); !s.ok()) return s;
    for (int64_t id : req->ids()) {
      if (id < 0) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            absl::StrCat("dead letter ids are not negative, got ", id));
      }
    }
    absl::StatusOr<admin::v1::RetryDeadLettersResponse> retried =
        control_->RetryDeadLetters({req->ids().begin(), req->ids().end()});
    if (!retried.ok()) return ToGrpc(retried.status());
    *out = *std::move(retried);
    return grpc::Status::OK;
  }
  grpc::Status Verify(grpc::ServerContext* ctx, const admin::v1::VerifyRequest* req,
                      admin::v1::VerifyResponse* out) override {
    if (grpc::Status s = Authorize(ctx); !s.ok()) return s;
    absl::Duration timeout;
    if (grpc::Status s = VerifyTimeout(ctx, req->timeout_seconds(), &timeout); !s.ok()) return s;
    std::vector<int> shards;
    for (uint32_t shard : req->shards()) {
      if (shard > (1u << 20)) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat("no shard ", shard));
      }
      shards.push_back(static_cast<int>(shard));
    }
    absl::StatusOr<admin::v1::VerifyResponse> verified = control_->Verify(shards, timeout);
    if (!verified.ok()) return ToGrpc(verified.status());
    *out = *std::move(verified);
    return grpc::Status::OK;
  }
  grpc::Status Repair(grpc::ServerContext* ctx, const admin::v1::RepairRequest* req,
                      admin::v1::RepairResponse* out) override {
    if (grpc::Status s = Authorize(ctx); !s.ok()) return s;
    absl::Duration timeout;
    if (grpc::Status s = VerifyTimeout(ctx, req->timeout_seconds(), &timeout); !s.ok()) return s;
    if (req->shard() > (1u << 20)) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("no shard ", req->shard()));
    }
    absl::StatusOr<admin::v1::RepairResponse> repaired =
        control_->Repair(static_cast<int>(req->shard()), timeout);
    if (!repaired.ok()) return ToGrpc(repaired.status());
    *out = *std::move(repaired);
    return grpc::Status::OK;
  }
  grpc::Status ListConflicts(grpc::ServerContext* ctx, const admin::v1::ListConflictsRequest* req,
                             admin::v1::ListConflictsResponse* out) override {
    if (grpc::Status s = Authorize(ctx); !s.ok()) return s;
    if (req->limit() < 0 || req->limit() > kMaxConflicts) {
      return grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("limit must be 0 to ", kMaxConflicts, ", not ", req->limit()));
    }
    if (req->before_id() < 0) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("before_id must not be negative, got ", req->before_id()));
    }
    absl::StatusOr<admin::v1::ListConflictsResponse> list = control_->ListConflicts(
        req->limit() == 0 ? 100 : req->limit(), req->table(), req->before_id());
    if (!list.ok()) return ToGrpc(list.status());
    *out = *std::move(list);
    return grpc::Status::OK;
  }
  grpc::Status ResolveConflict(grpc::ServerContext* ctx,
                               const admin::v1::ResolveConflictRequest* req,
                               admin::v1::ResolveConflictResponse* out) override {
    if (grpc::Status s = Authorize(ctx); !s.ok()) return s;
    if (grpc::Status s = CheckResolve(*req); !s.ok()) return s;
    absl::StatusOr<admin::v1::ResolveConflictResponse> resolved = control_->ResolveConflict(*req);
    if (!resolved.ok()) return ToGrpc(resolved.status());
    *out = *std::move(resolved);
    return grpc::Status::OK;
  }

 private:
  // The most conflicts one call lists, or names to resolve.
  static constexpr int kMaxConflicts = 10000;

  static grpc::Status CheckResolve(const admin::v1::ResolveConflictRequest& req) {
    auto invalid = [](std::string why) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::move(why));
    };
    const int named = req.conflicts_size() + req.ids_size();
    if (req.all() && named > 0) return invalid("all excludes conflicts and ids");
    if (!req.all() && !req.table().empty()) return invalid("table goes only with all");
    if (!req.all() && named == 0) {
      return invalid("name the conflicts to resolve (conflicts or ids), or set all");
    }
    if (named > kMaxConflicts) {
      return invalid(absl::StrCat("at most ", kMaxConflicts, " conflicts per call, not ", named));
    }
    for (const admin::v1::ConflictId& c : req.conflicts()) {
      if (c.origin_node() == 0 || c.table().empty() || c.change_id() <= 0) {
        return invalid(
            "each conflict needs its origin_node, table and change_id (positive), as "
            "ListConflicts shows them");
      }
    }
    for (int64_t id : req.ids()) {
      if (id <= 0) return invalid(absl::StrCat("conflict ids are positive, got ", id));
    }
    return grpc::Status::OK;
  }
  // Verify's and Repair's timeout: `seconds` (0: 30, at most 600), shortened so that the answer
  // reaches the caller before its own deadline (REST's is 90 seconds).
  static grpc::Status VerifyTimeout(grpc::ServerContext* ctx, uint32_t seconds,
                                    absl::Duration* timeout) {
    if (seconds > 600) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("timeout_seconds must be at most 600, not ", seconds));
    }
    *timeout = absl::Seconds(seconds == 0 ? 30 : seconds);
    if (ctx->deadline() != std::chrono::system_clock::time_point::max()) {
      const absl::Duration left =
          absl::FromChrono(ctx->deadline() - std::chrono::system_clock::now());
      *timeout = std::min(*timeout, left - std::min(absl::Seconds(1), left / 10));
      if (*timeout <= absl::ZeroDuration()) {
        return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                            "the call's deadline leaves no time to verify");
      }
    }
    return grpc::Status::OK;
  }
  grpc::Status Authorize(grpc::ServerContext* ctx) const {
    if (!auth_.configured()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "this node has no AUTH_KEY set, so its admin calls are closed");
    }
    const auto& md = ctx->client_metadata();
    auto it = md.find("authorization");
    if (it == md.end() || !auth_.Allows(absl::string_view(it->second.data(), it->second.size()))) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "missing or wrong authorization metadata (must equal AUTH_KEY)");
    }
    return grpc::Status::OK;
  }

  NodeControl* control_;
  Authenticator auth_;
};

// grpc.health.v1.Health, open to every caller (probes carry no credentials). The empty service
// name and "marmot.admin.v1.Admin" report the node's serving state.
class HealthService final : public grpc::health::v1::Health::Service {
 public:
  using Response = grpc::health::v1::HealthCheckResponse;

  grpc::Status Check(grpc::ServerContext*, const grpc::health::v1::HealthCheckRequest* req,
                     Response* out) override {
    if (!Known(req->service())) return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service");
    out->set_status(Current());
    return grpc::Status::OK;
  }

  grpc::Status Watch(grpc::ServerContext* ctx, const grpc::health::v1::HealthCheckRequest* req,
                     grpc::ServerWriter<Response>* writer) override {
    if (!Known(req->service())) {
      Response unknown;
      unknown.set_status(Response::SERVICE_UNKNOWN);
      writer->Write(unknown);
      return grpc::Status::OK;
    }
    std::optional<Response::ServingStatus> sent;
    while (!ctx->IsCancelled() && !stopping_.load()) {
      Response::ServingStatus now = Current();
      if (sent != now) {
        Response r;
        r.set_status(now);
        if (!writer->Write(r)) break;
        sent = now;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return grpc::Status::OK;
  }

  void SetServing(bool serving) { serving_.store(serving); }
  void Stop() { stopping_.store(true); }

 private:
  static bool Known(const std::string& service) {
    return service.empty() || service == "marmot.admin.v1.Admin";
  }
  Response::ServingStatus Current() const {
    return serving_.load() ? Response::SERVING : Response::NOT_SERVING;
  }
  std::atomic<bool> serving_{true};
  std::atomic<bool> stopping_{false};
};

absl::StatusOr<std::unique_ptr<PaneServer>> PaneServer::Start(const PaneOptions& options,
                                                              NodeControl* control) {
  Authenticator auth(options.auth_key);
  if (!auth.configured()) {
    LOG(WARNING) << "AUTH_KEY is not set: the control pane on " << options.address
                 << " refuses every call except health checks, readiness, metrics and reflection";
  }
  std::unique_ptr<PaneServer> pane(new PaneServer());
  pane->admin_ = std::make_unique<AdminService>(control, std::move(auth));
  pane->health_ = std::make_unique<HealthService>();
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  // No listening port of its own: the pane's listener hands it the connections that speak
  // HTTP/2 (AddGrpcConnection).
  grpc::ServerBuilder builder;
  builder.RegisterService(pane->admin_.get());
  builder.RegisterService(pane->health_.get());
  builder.SetMaxReceiveMessageSize(1 << 20);
  builder.AddChannelArgument(
      GRPC_ARG_MAX_CONNECTION_IDLE_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.grpc_idle_timeout)));
  pane->server_ = builder.BuildAndStart();
  if (pane->server_ == nullptr) {
    return absl::InternalError("the control pane's gRPC server did not start");
  }

  absl::StatusOr<std::unique_ptr<RestGateway>> rest =
      RestGateway::Create({.max_body_bytes = options.max_body_bytes,
                           .request_read_timeout = options.rest_request_timeout,
                           .ready = options.ready,
                           .metrics = options.metrics},
                          pane->server_->InProcessChannel([] {
                            // Answers are this server's own: one conflict's row may be larger
                            // than a client's default 4 MiB.
                            grpc::ChannelArguments args;
                            args.SetMaxReceiveMessageSize(-1);
                            return args;
                          }()));
  if (!rest.ok()) return rest.status();
  pane->rest_ = *std::move(rest);

  if (!options.tls_cert_file.empty() || !options.tls_key_file.empty()) {
    absl::StatusOr<std::unique_ptr<PaneTls>> tls =
        PaneTls::Load(options.tls_cert_file, options.tls_key_file);
    if (!tls.ok()) return tls.status();
    pane->tls_ = *std::move(tls);
  }
  ConnectionHandlers both;
  both.grpc = [raw = pane.get()](int fd) { raw->AddGrpcConnection(fd); };
  both.rest = [raw = pane->rest_.get()](int fd, const StopSignals& s) {
    raw->ServeConnection(fd, s);
  };
  ConnectionHandlers grpc_only{.grpc = both.grpc, .rest = nullptr};
  ConnectionHandlers rest_only{.grpc = nullptr, .rest = both.rest};
  const bool shared = options.rest_address.empty();
  absl::StatusOr<std::unique_ptr<PaneListener>> listener =
      PaneListener::Start({.address = options.address,
                           .tls = pane->tls_.get(),
                           .first_bytes_timeout = options.first_bytes_timeout},
                          shared ? both : grpc_only);
  if (!listener.ok()) return listener.status();
  pane->listeners_.push_back(*std::move(listener));
  if (!shared) {
    listener = PaneListener::Start({.address = options.rest_address,
                                    .tls = pane->tls_.get(),
                                    .first_bytes_timeout = options.first_bytes_timeout},
                                   rest_only);
    if (!listener.ok()) return listener.status();
    pane->listeners_.push_back(*std::move(listener));
  }
  const char* security = pane->tls_ != nullptr ? "TLS" : "plaintext";
  if (shared) {
    LOG(INFO) << "control pane listening on port " << pane->port() << " (" << security
              << ": gRPC with reflection, and REST)";
  } else {
    LOG(INFO) << "control pane listening on port " << pane->port() << " (" << security
              << ": gRPC with reflection), REST on port " << pane->rest_port();
  }
  return pane;
}

int PaneServer::port() const { return listeners_.empty() ? 0 : listeners_.front()->port(); }

int PaneServer::rest_port() const { return listeners_.empty() ? 0 : listeners_.back()->port(); }

void PaneServer::AddGrpcConnection(int fd) {
  absl::MutexLock lock(&grpc_mu_);
  if (!grpc_open_) {
    ::close(fd);
    return;
  }
  grpc::AddInsecureChannelFromFd(server_.get(), fd);
}

void PaneServer::SetServing(bool serving) { health_->SetServing(serving); }

void PaneServer::Shutdown(int deadline_ms) {
  if (server_ == nullptr) return;
  for (auto& l : listeners_) l->Drain();
  {
    absl::MutexLock lock(&grpc_mu_);
    grpc_open_ = false;
  }
  health_->Stop();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(deadline_ms));
  server_->Wait();
  // REST requests ran their calls on the gRPC server, which answered or cancelled them all.
  for (auto& l : listeners_) l->Stop();
  listeners_.clear();
  rest_.reset();
  server_.reset();
}

PaneServer::~PaneServer() { Shutdown(0); }

}  // namespace marmot::pane
