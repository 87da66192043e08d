// The REST gateway of the control pane: curl-friendly routes for every Admin call, following
// the google.api.http annotations of admin.proto, with proto3 JSON bodies.
//
// Each HTTP request becomes a gRPC call to the pane on an in-process channel, with the
// Authorization header passed on as metadata, so auth and behaviour are the pane's own. Errors
// come back as grpc-gateway does it: `{"code": <gRPC code>, "message": "...", "details": []}`
// with the HTTP status of its table (UNAUTHENTICATED is 401 with `WWW-Authenticate: Basic`).
// Plus, without auth: `/healthz` (the process answers), `/readyz` (joined every shard and
// caught up), and `/metrics` (Prometheus text, from a callback).
#ifndef MARMOT_PANE_REST_GATEWAY_H_
#define MARMOT_PANE_REST_GATEWAY_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace grpc {
class Channel;
}
namespace httplib {
class Server;
}

namespace marmot::pane {

struct RestOptions {
  std::string address;  // host:port; port 0 picks a free one.
  size_t max_body_bytes = 1 << 20;
  std::function<bool()> ready;           // For /readyz.
  std::function<std::string()> metrics;  // Prometheus text for /metrics.
};

class RestGateway {
 public:
  // Serves on options.address, forwarding to `pane` (a channel to the gRPC pane).
  static absl::StatusOr<std::unique_ptr<RestGateway>> Start(RestOptions options,
                                                            std::shared_ptr<grpc::Channel> pane);
  ~RestGateway();

  int port() const { return port_; }
  void Stop();

  // The HTTP status grpc-gateway uses for a gRPC status code.
  static int HttpStatusFor(int grpc_code);

 private:
  RestGateway() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace marmot::pane

#endif  // MARMOT_PANE_REST_GATEWAY_H_
