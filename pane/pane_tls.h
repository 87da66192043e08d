// TLS on the control pane's port (-pane-tls-cert-file, -pane-tls-key-file). gRPC's own TLS
// cannot take a connection someone else accepted, so the pane's listener terminates TLS
// itself (OpenSSL) and relays the plaintext over a socket pair to the server of the protocol
// the client speaks, told by the first decrypted bytes exactly as on a plaintext port
// (protocol_sniff.h).
//
// ALPN steers clients to a protocol they can speak: a client that offers http/1.1 (curl,
// browsers; curl offers h2 too) is answered http/1.1 and served REST; one that offers h2 but
// not http/1.1 (gRPC clients: grpcurl, the gRPC libraries) is answered h2; a client that offers
// nothing is served by what it sends. Anything but a TLS handshake (a plaintext request) is
// refused: the connection closes without an answer. TLS 1.2 or newer, no renegotiation.
#ifndef MARMOT_PANE_PANE_TLS_H_
#define MARMOT_PANE_PANE_TLS_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pane/protocol_sniff.h"
#include "pane/socket_io.h"

struct ssl_ctx_st;

namespace marmot::pane {

class PaneTls {
 public:
  // Takes the plaintext end of a relayed connection that speaks `protocol`; false when it is
  // not served (the connection is then closed).
  using Dispatch = std::function<bool(PaneProtocol protocol, OwnedFd plaintext)>;

  // Loads the certificate chain and the private key (PEM). InvalidArgumentError naming the file
  // and OpenSSL's reason when one cannot be read or they do not belong together.
  static absl::StatusOr<std::unique_ptr<PaneTls>> Load(const std::string& cert_file,
                                                       const std::string& key_file);
  ~PaneTls();
  PaneTls(const PaneTls&) = delete;
  PaneTls& operator=(const PaneTls&) = delete;

  // Serves one accepted connection: the handshake and the first decrypted bytes within
  // `first_bytes_timeout` (or `signals.drain_fd` fires), then relays between the client and the
  // plaintext end handed to `dispatch` until either side ends, or `signals.stop_fd` fires.
  // Blocks; closes `connection`. Thread-safe.
  void Serve(OwnedFd connection, absl::Duration first_bytes_timeout, const StopSignals& signals,
             const Dispatch& dispatch) const;

 private:
  explicit PaneTls(ssl_ctx_st* ctx) : ctx_(ctx) {}
  ssl_ctx_st* ctx_;
};

}  // namespace marmot::pane

#endif  // MARMOT_PANE_PANE_TLS_H_
