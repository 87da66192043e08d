// The control pane: the gRPC service `marmot.admin.v1.Admin` behind AUTH_KEY, `grpc.health.v1`
// open to probes, server reflection so that grpcurl and `buf curl` can call it without .proto
// files (Debian's gRPC serves reflection v1alpha, which both clients fall back to), and its REST
// gateway (rest_gateway.h), all on one port (pane_listener.h), or REST on a port of its own.
#ifndef MARMOT_PANE_PANE_SERVER_H_
#define MARMOT_PANE_PANE_SERVER_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pane/auth.h"
#include "pane/node_control.h"

namespace grpc {
class Channel;
class Server;
}  // namespace grpc

namespace marmot::pane {

class AdminService;
class HealthService;
class PaneListener;
class PaneTls;
class RestGateway;

struct PaneOptions {
  // host:port of the pane (gRPC, and REST unless `rest_address` is set); port 0 picks a free
  // one.
  std::string address;
  // host:port of a port of its own for REST; empty: REST shares `address` with gRPC.
  std::string rest_address;
  std::optional<std::string> auth_key;  // AUTH_KEY.
  // TLS for every pane connection, gRPC and REST (pane_tls.h): the certificate chain and its
  // private key (PEM). Both empty: plaintext.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::function<bool()> ready;           // /readyz: joined every shard and caught up.
  std::function<std::string()> metrics;  // /metrics: Prometheus text.
  size_t max_body_bytes = 1 << 20;       // REST request bodies.
  // A REST request must arrive whole within this time (RestOptions::request_read_timeout).
  absl::Duration rest_request_timeout = absl::Seconds(30);
  // A connection that has not said which protocol it speaks by then is closed.
  absl::Duration first_bytes_timeout = absl::Seconds(10);
  // A gRPC connection without a call for this long is closed (GOAWAY; clients reconnect on
  // their next call), so idle clients hold no connection slot, thread or TLS relay.
  absl::Duration grpc_idle_timeout = absl::Minutes(2);
};

class PaneServer {
 public:
  // Listens on options.address (and options.rest_address), or fails with UnavailableError
  // naming the address (InvalidArgumentError for TLS files that cannot be used). `control`
  // must outlive the server.
  static absl::StatusOr<std::unique_ptr<PaneServer>> Start(const PaneOptions& options,
                                                           NodeControl* control);
  ~PaneServer();

  int port() const;
  // The port REST is served on: port() unless options.rest_address was set.
  int rest_port() const;
  // Health reports SERVING or NOT_SERVING (while draining at shutdown).
  void SetServing(bool serving);
  // Stops accepting connections, waits up to `deadline_ms` for running calls and requests, then
  // ends every connection.
  void Shutdown(int deadline_ms = 2000);

 private:
  PaneServer() = default;
  // Gives an accepted connection that speaks HTTP/2 to the gRPC server.
  void AddGrpcConnection(int fd);

  std::unique_ptr<AdminService> admin_;
  std::unique_ptr<HealthService> health_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<RestGateway> rest_;
  std::unique_ptr<PaneTls> tls_;
  std::vector<std::unique_ptr<PaneListener>> listeners_;  // [0]: the pane's port.
  absl::Mutex grpc_mu_;
  bool grpc_open_ ABSL_GUARDED_BY(grpc_mu_) = true;
};

}  // namespace marmot::pane

#endif  // MARMOT_PANE_PANE_SERVER_H_
