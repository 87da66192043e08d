#include "pane/pane_tls.h"

#include <glog/logging.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace marmot::pane {
namespace {

// Bytes buffered per direction before the relay stops reading that direction's source.
constexpr size_t kBufferCap = 256 << 10;
// How long the last bytes of a connection that ends may take to reach the client.
constexpr absl::Duration kFlushTimeout = absl::Seconds(5);

std::string OpenSslError() {
  std::string reasons;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    absl::StrAppend(&reasons, reasons.empty() ? "" : "; ", buf);
  }
  return reasons.empty() ? "no reason given" : reasons;
}

// Prefers http/1.1 when the client offers it: curl offers h2 as well, but the pane's REST
// gateway speaks HTTP/1.1, and gRPC clients never offer http/1.1.
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* out_len, const unsigned char* in,
               unsigned int in_len, void*) {
  static const unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  static const unsigned char kH2[] = {2, 'h', '2'};
  for (const auto& [proto, len] :
       {std::pair{kHttp11, sizeof kHttp11}, std::pair{kH2, sizeof kH2}}) {
    unsigned char* selected = nullptr;
    unsigned char selected_len = 0;
    if (SSL_select_next_proto(&selected, &selected_len, proto, static_cast<unsigned int>(len), in,
                              in_len) == OPENSSL_NPN_NEGOTIATED) {
      *out = selected;
      *out_len = selected_len;
      return SSL_TLSEXT_ERR_OK;
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// Writes what it can of `buffer` to the non-blocking `fd`; false when the other end is gone.
bool Flush(int fd, std::string& buffer) {
  while (!buffer.empty()) {
    const ssize_t n = ::send(fd, buffer.data(), buffer.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      buffer.erase(0, static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return n < 0 && errno == EAGAIN;
    }
  }
  return true;
}

// Reads what is there from the non-blocking `fd` into `append` (false: the other end failed);
// sets `eof` at the end of the stream.
bool Fill(int fd, const std::function<void(const char*, size_t)>& append, bool* eof) {
  char buf[16384];
  while (true) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      append(buf, static_cast<size_t>(n));
      return true;
    }
    if (n == 0) {
      *eof = true;
      return true;
    }
    if (errno == EINTR) continue;
    return errno == EAGAIN;
  }
}

// One TLS connection: OpenSSL works on memory buffers (never on the socket), and this relay
// moves bytes between the socket, those buffers and the plaintext socket pair, on one thread.
class TlsRelay {
 public:
  TlsRelay(SSL* ssl, OwnedFd net, const StopSignals& signals, const PaneTls::Dispatch& dispatch)
      : ssl_(ssl), net_(std::move(net)), signals_(signals), dispatch_(dispatch) {
    in_ = BIO_new(BIO_s_mem());
    out_ = BIO_new(BIO_s_mem());
    // An empty buffer means "more later", not the end of the stream.
    BIO_set_mem_eof_return(in_, -1);
    BIO_set_mem_eof_return(out_, -1);
    SSL_set_bio(ssl_, in_, out_);  // The SSL object owns both from here.
    SSL_set_accept_state(ssl_);
    peer_ = PeerAddress(net_.get());
  }

  void Run(absl::Duration first_bytes_timeout) {
    const absl::Time first_bytes_deadline = absl::Now() + first_bytes_timeout;
    absl::Time flush_deadline = absl::InfiniteFuture();
    while (true) {
      if (!Decrypt()) {
        SendAlert();
        return;
      }
      if (!app_.valid() && !OpenApp()) return;
      if (app_.valid() && !Encrypt()) return;
      MoveCiphertext();
      if (!Flush(net_.get(), to_net_)) return;
      if (app_.valid() && !Flush(app_.get(), to_app_)) return;
      if (app_.valid() && net_eof_ && to_app_.empty() && !app_write_shut_) {
        ::shutdown(app_.get(), SHUT_WR);  // The client is done sending: so is the pair.
        app_write_shut_ = true;
      }
      if (close_notify_sent_) {
        if (to_net_.empty()) return;  // The server side ended and everything reached the client.
        if (flush_deadline == absl::InfiniteFuture()) flush_deadline = absl::Now() + kFlushTimeout;
      }
      const absl::Time deadline = !app_.valid() ? first_bytes_deadline : flush_deadline;
      if (!Wait(deadline)) return;
    }
  }

 private:
  // Everything OpenSSL can decrypt now goes to `to_app_` (before the protocol is known, it is
  // the bytes to tell it by). OpenSSL answers the handshake on the way.
  bool Decrypt() {
    while (to_app_.size() < kBufferCap) {
      char buf[16384];
      const int n = SSL_read(ssl_, buf, sizeof buf);
      if (n > 0) {
        to_app_.append(buf, static_cast<size_t>(n));
        continue;
      }
      const int err = SSL_get_error(ssl_, n);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return true;
      if (err == SSL_ERROR_ZERO_RETURN) {  // The client's close_notify.
        net_eof_ = true;
        return true;
      }
      // A failed handshake (plaintext on this port, a client that refuses the certificate) or
      // a damaged record: rare enough to log, common enough (port scanners) to log quietly.
      VLOG(1) << "control pane: TLS with " << peer_ << " failed: " << OpenSslError();
      LOG_EVERY_N(WARNING, 100) << "control pane: a TLS connection failed (e.g. from " << peer_
                                << "; -verbose logs each)";
      ERR_clear_error();
      return false;
    }
    return true;
  }

  // Once the first decrypted bytes tell the protocol, opens the socket pair and hands its other
  // end on. False when the connection is to be closed.
  bool OpenApp() {
    if (!SSL_is_init_finished(ssl_) || to_app_.empty()) return !net_eof_;
    const PaneProtocol protocol = ClassifyFirstBytes(to_app_);
    if (protocol == PaneProtocol::kNeedMore) return !net_eof_;
    if (protocol == PaneProtocol::kUnknown) return false;
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return false;
    app_.Reset(pair[0]);
    if (!SetNonBlocking(app_.get())) return false;
    return dispatch_(protocol, OwnedFd(pair[1]));
  }

  // What the server side said goes through OpenSSL; once it closed, a close_notify follows.
  bool Encrypt() {
    while (!from_app_.empty()) {
      const int n = SSL_write(ssl_, from_app_.data(),
                              static_cast<int>(std::min<size_t>(from_app_.size(), INT_MAX)));
      if (n > 0) {
        from_app_.erase(0, static_cast<size_t>(n));
        continue;
      }
      const int err = SSL_get_error(ssl_, n);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) break;
      ERR_clear_error();
      return false;
    }
    if (app_eof_ && from_app_.empty() && !close_notify_sent_) {
      SSL_shutdown(ssl_);
      close_notify_sent_ = true;
    }
    return true;
  }

  void MoveCiphertext() {
    char buf[16384];
    while (BIO_ctrl_pending(out_) > 0) {
      const int n = BIO_read(out_, buf, sizeof buf);
      if (n <= 0) break;
      to_net_.append(buf, static_cast<size_t>(n));
    }
  }

  // After a failed handshake: the alert OpenSSL wrote, if the socket takes it at once.
  void SendAlert() {
    MoveCiphertext();
    Flush(net_.get(), to_net_);
  }

  // Waits for the next bytes either way; false when the connection is to be closed (the pane
  // stops, `deadline` passes, a socket failed).
  bool Wait(absl::Time deadline) {
    pollfd fds[4] = {};
    fds[0].fd = net_.get();
    fds[0].events = static_cast<short>(
        (!net_eof_ && to_app_.size() < kBufferCap && BIO_ctrl_pending(in_) < kBufferCap ? POLLIN
                                                                                        : 0) |
        (!to_net_.empty() ? POLLOUT : 0));
    fds[1].fd = app_.get();
    fds[1].events = static_cast<short>(
        (app_.valid() && !app_eof_ && from_app_.size() < kBufferCap && to_net_.size() < kBufferCap
             ? POLLIN
             : 0) |
        (app_.valid() && !to_app_.empty() ? POLLOUT : 0));
    // A socket not waited on must not wake the loop with a hang-up.
    if (fds[0].events == 0) fds[0].fd = -1;
    if (fds[1].events == 0) fds[1].fd = -1;
    fds[2] = {.fd = signals_.stop_fd, .events = POLLIN, .revents = 0};
    // Until the protocol is known the connection is idle work that a draining pane ends.
    fds[3] = {.fd = app_.valid() ? -1 : signals_.drain_fd, .events = POLLIN, .revents = 0};
    int timeout_ms = -1;
    if (deadline != absl::InfiniteFuture()) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return false;
      timeout_ms =
          static_cast<int>(absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))));
    }
    int n;
    do {
      n = ::poll(fds, 4, timeout_ms);
    } while (n < 0 && errno == EINTR);
    if (n <= 0 || fds[2].revents != 0 || fds[3].revents != 0) return false;
    for (const pollfd& p : {fds[0], fds[1]}) {
      if (p.revents & (POLLERR | POLLNVAL)) return false;
    }
    if (fds[0].revents & (POLLIN | POLLHUP)) {
      const bool ok = Fill(
          net_.get(), [&](const char* d, size_t len) { BIO_write(in_, d, static_cast<int>(len)); },
          &net_eof_);
      if (!ok) return false;
    }
    if (fds[1].revents & (POLLIN | POLLHUP)) {
      if (!Fill(
              app_.get(), [&](const char* d, size_t len) { from_app_.append(d, len); }, &app_eof_))
        return false;
    }
    return true;
  }

  SSL* const ssl_;
  BIO* in_ = nullptr;   // Ciphertext from the client, for OpenSSL to read.
  BIO* out_ = nullptr;  // Ciphertext OpenSSL wrote, for the client.
  OwnedFd net_;         // The client's socket.
  OwnedFd app_;         // This side of the plaintext socket pair.
  const StopSignals signals_;
  const PaneTls::Dispatch& dispatch_;
  std::string peer_;
  std::string to_app_, to_net_, from_app_;
  bool net_eof_ = false, app_eof_ = false, app_write_shut_ = false, close_notify_sent_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PaneTls>> PaneTls::Load(const std::string& cert_file,
                                                       const std::string& key_file) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return absl::InternalError(absl::StrCat("TLS: ", OpenSslError()));
  std::unique_ptr<PaneTls> tls(new PaneTls(ctx));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("the pane's TLS certificate ", cert_file,
                                                   " cannot be used: ", OpenSslError()));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the pane's TLS key ", key_file, " cannot be used: ", OpenSslError()));
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("the pane's TLS key ", key_file,
                                                   " does not belong to the certificate in ",
                                                   cert_file, ": ", OpenSslError()));
  }
  SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, nullptr);
  return tls;
}

PaneTls::~PaneTls() { SSL_CTX_free(ctx_); }

void PaneTls::Serve(OwnedFd connection, absl::Duration first_bytes_timeout,
                    const StopSignals& signals, const Dispatch& dispatch) const {
  if (!SetNonBlocking(connection.get())) return;
  std::unique_ptr<SSL, void (*)(SSL*)> ssl(SSL_new(ctx_), SSL_free);
  if (ssl == nullptr) {
    LOG_EVERY_N(WARNING, 100) << "control pane: cannot start TLS: " << OpenSslError();
    return;
  }
  TlsRelay(ssl.get(), std::move(connection), signals, dispatch).Run(first_bytes_timeout);
}

}  // namespace marmot::pane
