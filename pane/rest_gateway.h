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

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pane/socket_io.h"

namespace grpc {
class Channel;
}

namespace marmot::pane {

struct RestOptions {
  size_t max_body_bytes = 1 << 20;
  // A request (its line, headers and body) must arrive whole within this time, however
  // steadily its pieces come: a client trickling bytes cannot hold a connection for long.
  absl::Duration request_read_timeout = absl::Seconds(30);
  std::function<bool()> ready;           // For /readyz.
  std::function<std::string()> metrics;  // Prometheus text for /metrics.
};

class RestGateway {
 public:
  // Forwards to `pane` (a channel to the gRPC pane). Listens nowhere: the pane's listener
  // (pane_listener.h) hands it the connections that speak HTTP/1.
  static absl::StatusOr<std::unique_ptr<RestGateway>> Create(RestOptions options,
                                                             std::shared_ptr<grpc::Channel> pane);
  ~RestGateway();

  // Serves HTTP/1.1 requests on the connected stream socket `fd` (keep-alive: up to 5 requests,
  // 5 s idle between them; 5 s to read or write each piece, request_read_timeout to read a
  // whole request) until the client closes it, or it
  // stays idle, or `signals.drain_fd` fires between two requests, or `signals.stop_fd` fires.
  // Between requests it tells `signals.idle` so. Takes ownership of `fd` and closes it. Blocks:
  // one thread per connection; thread-safe.
  void ServeConnection(int fd, const StopSignals& signals);

  // The HTTP status grpc-gateway uses for a gRPC status code.
  static int HttpStatusFor(int grpc_code);

 private:
  class ConnectionServer;
  RestGateway() = default;
  std::unique_ptr<ConnectionServer> server_;
};

}  // namespace marmot::pane

#endif  // MARMOT_PANE_REST_GATEWAY_H_
