// The control pane's gRPC server: `marmot.admin.v1.Admin` behind AUTH_KEY, `grpc.health.v1`
// open to probes, and server reflection so that grpcurl and `buf curl` can call it without
// .proto files. (Debian's gRPC serves reflection v1alpha, which both clients fall back to.)
#ifndef MARMOT_PANE_PANE_SERVER_H_
#define MARMOT_PANE_PANE_SERVER_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "pane/auth.h"
#include "pane/node_control.h"

namespace grpc {
class Channel;
class Server;
}

namespace marmot::pane {

class AdminService;
class HealthService;

struct PaneOptions {
  std::string address;                  // host:port; port 0 picks a free one.
  std::optional<std::string> auth_key;  // AUTH_KEY.
};

class PaneServer {
 public:
  // Listens on options.address. `control` must outlive the server.
  static absl::StatusOr<std::unique_ptr<PaneServer>> Start(const PaneOptions& options,
                                                           NodeControl* control);
  ~PaneServer();

  int port() const { return port_; }
  // A channel to this server that does not leave the process (for the REST gateway).
  std::shared_ptr<grpc::Channel> InProcessChannel();
  // Health reports SERVING or NOT_SERVING (while draining at shutdown).
  void SetServing(bool serving);
  // Stops accepting calls and waits up to `deadline_ms` for running ones.
  void Shutdown(int deadline_ms = 2000);

 private:
  PaneServer() = default;
  std::unique_ptr<AdminService> admin_;
  std::unique_ptr<HealthService> health_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace marmot::pane

#endif  // MARMOT_PANE_PANE_SERVER_H_
