#include "pane/rest_gateway.h"

#include <glog/logging.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <httplib.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <type_traits>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "google/api/annotations.pb.h"
#include "proto/admin.grpc.pb.h"

namespace marmot::pane {
namespace {

namespace pb = google::protobuf;

// One annotated route: an HTTP verb and a path template like /v1/nodes/{node_id}.
struct Route {
  std::string verb;
  std::vector<std::string> segments;  // "{field}" marks a path parameter.
  bool body_all = false;
  const pb::MethodDescriptor* method = nullptr;
  // A server-streaming call served as a file (admin.proto, HttpDownload): the `bytes` field its
  // rule names as response_body, of every response in order.
  const pb::FieldDescriptor* download_field = nullptr;
  admin::v1::HttpDownload download;
};

std::vector<Route> RoutesOf(const pb::ServiceDescriptor* service) {
  std::vector<Route> routes;
  for (int i = 0; i < service->method_count(); ++i) {
    const pb::MethodDescriptor* m = service->method(i);
    const google::api::HttpRule& rule = m->options().GetExtension(google::api::http);
    Route r;
    r.method = m;
    std::string path;
    switch (rule.pattern_case()) {
      case google::api::HttpRule::kGet:
        r.verb = "GET";
        path = rule.get();
        break;
      case google::api::HttpRule::kPost:
        r.verb = "POST";
        path = rule.post();
        break;
      case google::api::HttpRule::kPut:
        r.verb = "PUT";
        path = rule.put();
        break;
      case google::api::HttpRule::kDelete:
        r.verb = "DELETE";
        path = rule.delete_();
        break;
      case google::api::HttpRule::kPatch:
        r.verb = "PATCH";
        path = rule.patch();
        break;
      default:
        continue;
    }
    r.segments = absl::StrSplit(path, '/', absl::SkipEmpty());
    r.body_all = rule.body() == "*";
    if (m->server_streaming() && !m->client_streaming() && !rule.response_body().empty()) {
      const pb::FieldDescriptor* f = m->output_type()->FindFieldByName(rule.response_body());
      CHECK(f != nullptr && f->type() == pb::FieldDescriptor::TYPE_BYTES && !f->is_repeated())
          << m->full_name() << ": response_body must name a bytes field";
      r.download_field = f;
      r.download = m->options().GetExtension(admin::v1::http_download);
    }
    routes.push_back(std::move(r));
  }
  return routes;
}

// Parses `text` as T and stores it with `set`; false when it does not parse.
template <typename T, typename Setter>
bool ParseAndSet(const std::string& text, Setter set) {
  T v;
  bool ok;
  if constexpr (std::is_same_v<T, bool>) {
    ok = absl::SimpleAtob(text, &v);
  } else {
    ok = absl::SimpleAtoi(text, &v);
  }
  if (ok) set(v);
  return ok;
}

// Sets a scalar field of `msg` from its text form (path and query parameters).
bool SetField(pb::Message* msg, const std::string& name, const std::string& text) {
  const pb::FieldDescriptor* f = msg->GetDescriptor()->FindFieldByName(name);
  if (f == nullptr || f->is_repeated()) return false;
  const pb::Reflection* r = msg->GetReflection();
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_STRING:
      r->SetString(msg, f, text);
      return true;
    case pb::FieldDescriptor::CPPTYPE_UINT32:
      return ParseAndSet<uint32_t>(text, [&](uint32_t v) { r->SetUInt32(msg, f, v); });
    case pb::FieldDescriptor::CPPTYPE_UINT64:
      return ParseAndSet<uint64_t>(text, [&](uint64_t v) { r->SetUInt64(msg, f, v); });
    case pb::FieldDescriptor::CPPTYPE_INT32:
      return ParseAndSet<int32_t>(text, [&](int32_t v) { r->SetInt32(msg, f, v); });
    case pb::FieldDescriptor::CPPTYPE_INT64:
      return ParseAndSet<int64_t>(text, [&](int64_t v) { r->SetInt64(msg, f, v); });
    case pb::FieldDescriptor::CPPTYPE_BOOL:
      return ParseAndSet<bool>(text, [&](bool v) { r->SetBool(msg, f, v); });
    default:
      return false;
  }
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
  return out;
}

void SendError(httplib::Response& res, int grpc_code, const std::string& message) {
  res.status = RestGateway::HttpStatusFor(grpc_code);
  if (grpc_code == static_cast<int>(grpc::StatusCode::UNAUTHENTICATED)) {
    res.set_header("WWW-Authenticate", "Basic realm=\"marmot\"");
  }
  res.set_content(absl::StrCat("{\"code\":", grpc_code, ",\"message\":\"", JsonEscape(message),
                               "\",\"details\":[]}\n"),
                  "application/json");
}

using GenericStub = grpc::TemplatedGenericStub<pb::Message, pb::Message>;

// One server-streaming call of the pane, made on a completion queue of its own and driven one
// operation at a time by the thread that serves the download.
class DownloadCall {
 public:
  DownloadCall(const pb::MethodDescriptor* method, const std::string& authorization)
      : response_(
            pb::MessageFactory::generated_factory()->GetPrototype(method->output_type())->New()) {
    if (!authorization.empty()) ctx_.AddMetadata("authorization", authorization);
  }
  ~DownloadCall() {
    if (stream_ != nullptr && !finished_) {
      ctx_.TryCancel();
      (void)Finish();
    }
    cq_.Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (cq_.Next(&tag, &ok)) {
    }
  }

  // Starts the call with `request`; false when it could not be (Finish tells why).
  bool Start(GenericStub& stub, const pb::MethodDescriptor* method, const pb::Message& request) {
    stream_ = stub.PrepareCall(
        &ctx_, absl::StrCat("/", method->service()->full_name(), "/", method->name()), &cq_);
    if (stream_ == nullptr) return false;
    stream_->StartCall(this);
    if (!Await()) return false;
    stream_->Write(request, this);
    if (!Await()) return false;
    stream_->WritesDone(this);
    return Await();
  }
  // The next response; null at the end of the stream or on failure (Finish tells which).
  const pb::Message* Next() {
    stream_->Read(response_.get(), this);
    return Await() ? response_.get() : nullptr;
  }
  grpc::Status Finish() {
    grpc::Status status;
    if (stream_ == nullptr) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "the pane's call could not be made");
    }
    stream_->Finish(&status, this);
    void* tag = nullptr;
    bool ok = false;
    if (!cq_.Next(&tag, &ok)) {
      status = grpc::Status(grpc::StatusCode::INTERNAL, "the pane's call did not complete");
    }
    finished_ = true;
    return status;
  }

 private:
  bool Await() {
    void* tag = nullptr;
    bool ok = false;
    return cq_.Next(&tag, &ok) && ok;
  }

  grpc::ClientContext ctx_;
  grpc::CompletionQueue cq_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<pb::Message, pb::Message>> stream_;
  std::unique_ptr<pb::Message> response_;
  bool finished_ = false;
};

// Serves `route` as a file, streamed response by response. Errors before the first response
// (auth, failure) answer as any call; a failure later breaks the chunked response, so the client
// sees it incomplete.
void StreamDownload(const httplib::Request& req, httplib::Response& res, const Route& route,
                    const pb::Message& request, const std::shared_ptr<GenericStub>& stub) {
  auto call = std::make_shared<DownloadCall>(
      route.method, req.has_header("Authorization") ? req.get_header_value("Authorization") : "");
  std::string first;
  const pb::Message* response = nullptr;
  if (call->Start(*stub, route.method, request)) response = call->Next();
  if (response == nullptr) {
    grpc::Status status = call->Finish();
    if (status.ok()) status = grpc::Status(grpc::StatusCode::INTERNAL, "the download was empty");
    SendError(res, static_cast<int>(status.error_code()), status.error_message());
    return;
  }
  const pb::FieldDescriptor* field = route.download_field;
  first = response->GetReflection()->GetString(*response, field);
  if (!route.download.file_name().empty()) {
    res.set_header("Content-Disposition",
                   absl::StrCat("attachment; filename=\"", route.download.file_name(), "\""));
  }
  const std::string media_type = route.download.media_type().empty() ? "application/octet-stream"
                                                                     : route.download.media_type();
  res.set_chunked_content_provider(
      media_type, [call, field, first = std::move(first), sent_first = false,
                   name = route.method->name()](size_t, httplib::DataSink& sink) mutable {
        if (!sent_first) {
          sent_first = true;
          return sink.write(first.data(), first.size());
        }
        const pb::Message* next = call->Next();
        if (next == nullptr) {
          grpc::Status status = call->Finish();
          if (!status.ok()) {
            LOG(WARNING) << name << " over REST ended early: " << status.error_message();
            return false;
          }
          sink.done();
          return true;
        }
        const std::string bytes = next->GetReflection()->GetString(*next, field);
        return sink.write(bytes.data(), bytes.size());
      });
}

// A connection the pane's listener accepted, as cpp-httplib's server reads and writes it: with
// its read and write timeouts, and ending at once when the pane stops. Reads are buffered (the
// server reads request lines byte by byte); one stream serves every request of a connection.
class SocketStream final : public httplib::Stream {
 public:
  SocketStream(int fd, absl::Duration read_timeout, absl::Duration request_read_timeout,
               absl::Duration write_timeout, StopSignals signals)
      : fd_(fd),
        read_timeout_(read_timeout),
        request_read_timeout_(request_read_timeout),
        write_timeout_(write_timeout),
        signals_(signals) {}

  // Between requests: true once the next request starts, false when the client stays silent
  // for `timeout`, or the pane drains or stops. Idle meanwhile (StopSignals::idle). The request
  // that starts must then be read within request_read_timeout.
  bool WaitForRequest(absl::Duration timeout) {
    bool ready = pos_ < len_;
    if (!ready) {
      if (signals_.idle) signals_.idle(fd_);
      ready = WaitForSocket(fd_, POLLIN, timeout, {signals_.drain_fd, signals_.stop_fd}) ==
              WaitResult::kReady;
      if (signals_.idle) signals_.idle(-1);
    }
    request_read_deadline_ = absl::Now() + request_read_timeout_;
    return ready;
  }

  bool is_readable() const override {
    if (pos_ < len_) return true;
    const absl::Duration left = request_read_deadline_ - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    return WaitForSocket(fd_, POLLIN, std::min(read_timeout_, left), {signals_.stop_fd}) ==
           WaitResult::kReady;
  }
  bool is_writable() const override {
    return WaitForSocket(fd_, POLLOUT, write_timeout_, {signals_.stop_fd}) == WaitResult::kReady;
  }

  ssize_t read(char* ptr, size_t size) override {
    while (pos_ == len_) {
      if (!is_readable()) return -1;
      const ssize_t n = ::recv(fd_, buffer_, sizeof buffer_, MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) return n;
      pos_ = 0;
      len_ = static_cast<size_t>(n);
    }
    const size_t n = std::min(size, len_ - pos_);
    std::memcpy(ptr, buffer_ + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }

  // Writes all of `size` bytes or fails (-1): cpp-httplib writes headers in one call.
  ssize_t write(const char* ptr, size_t size) override {
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::send(fd_, ptr + done, size - done, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        done += static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && errno == EAGAIN) {
        if (!is_writable()) return -1;
      } else {
        return -1;
      }
    }
    return static_cast<ssize_t>(size);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    if (!PeerEndpoint(fd_, &ip, &port)) {
      ip.clear();
      port = -1;
    }
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip.clear();
    port = -1;
  }
  int socket() const override { return fd_; }

 private:
  const int fd_;
  const absl::Duration read_timeout_, request_read_timeout_, write_timeout_;
  absl::Time request_read_deadline_ = absl::InfiniteFuture();
  const StopSignals signals_;
  char buffer_[4096];
  size_t pos_ = 0, len_ = 0;
};

}  // namespace

// cpp-httplib's server, fed the connections the pane's listener accepted instead of accepting
// them itself: its routing and request handling are the library's, through the protected
// process_request that the library's own listening loops and its TLS server call.
class RestGateway::ConnectionServer final : public httplib::Server {
 public:
  explicit ConnectionServer(absl::Duration request_read_timeout)
      : placeholder_(::eventfd(0, EFD_CLOEXEC)), request_read_timeout_(request_read_timeout) {
    // The library stops streaming chunked responses once its listening socket is gone
    // (INVALID_SOCKET); this server has none, so a descriptor of its own stands in for it.
    svr_sock_ = placeholder_.get();
  }
  ~ConnectionServer() override { svr_sock_ = INVALID_SOCKET; }

  void Serve(int fd, const StopSignals& signals) {
    SocketStream stream(fd, absl::Seconds(read_timeout_sec_), request_read_timeout_,
                        absl::Seconds(write_timeout_sec_), signals);
    for (size_t left = keep_alive_max_count_; left > 0; --left) {
      if (!stream.WaitForRequest(absl::Seconds(keep_alive_timeout_sec_))) return;
      bool connection_closed = false;
      if (!process_request(stream, /*close_connection=*/left == 1, connection_closed, nullptr) ||
          connection_closed) {
        return;
      }
    }
  }

 private:
  OwnedFd placeholder_;
  const absl::Duration request_read_timeout_;
};

int RestGateway::HttpStatusFor(int grpc_code) {
  switch (static_cast<grpc::StatusCode>(grpc_code)) {
    case grpc::StatusCode::OK:
      return 200;
    case grpc::StatusCode::CANCELLED:
      return 499;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return 400;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 504;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
      return 409;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::UNAUTHENTICATED:
      return 401;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return 400;
    case grpc::StatusCode::ABORTED:
      return 409;
    case grpc::StatusCode::OUT_OF_RANGE:
      return 400;
    case grpc::StatusCode::UNIMPLEMENTED:
      return 501;
    case grpc::StatusCode::UNAVAILABLE:
      return 503;
    default:
      return 500;
  }
}

absl::StatusOr<std::unique_ptr<RestGateway>> RestGateway::Create(
    RestOptions options, std::shared_ptr<grpc::Channel> pane) {
  std::unique_ptr<RestGateway> gw(new RestGateway());
  gw->server_ = std::make_unique<ConnectionServer>(options.request_read_timeout);
  httplib::Server& svr = *gw->server_;
  svr.set_payload_max_length(options.max_body_bytes);

  auto routes = std::make_shared<std::vector<Route>>(
      RoutesOf(pb::DescriptorPool::generated_pool()->FindServiceByName("marmot.admin.v1.Admin")));
  auto stub = std::make_shared<GenericStub>(pane);

  svr.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  svr.Get("/readyz", [ready = options.ready](const httplib::Request&, httplib::Response& res) {
    bool ok = !ready || ready();
    res.status = ok ? 200 : 503;
    res.set_content(ok ? "ready\n"
                       : "not ready: a shard has no leader, or this node is not yet a caught-up "
                         "member of every shard (GetStatus tells which)\n",
                    "text/plain");
  });
  svr.Get("/metrics", [metrics = options.metrics](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics ? metrics() : "", "text/plain; version=0.0.4");
  });

  auto handle = [routes, stub](const httplib::Request& req, httplib::Response& res) {
    std::vector<std::string> segments = absl::StrSplit(req.path, '/', absl::SkipEmpty());
    const Route* match = nullptr;
    std::vector<std::pair<std::string, std::string>> params;
    bool path_known = false;
    for (const Route& r : *routes) {
      if (r.segments.size() != segments.size()) continue;
      std::vector<std::pair<std::string, std::string>> p;
      bool ok = true;
      for (size_t i = 0; i < segments.size() && ok; ++i) {
        const std::string& s = r.segments[i];
        if (s.size() > 2 && s.front() == '{' && s.back() == '}') {
          p.emplace_back(s.substr(1, s.size() - 2), segments[i]);
        } else {
          ok = s == segments[i];
        }
      }
      if (!ok) continue;
      path_known = true;
      if (r.verb != req.method) continue;
      match = &r;
      params = std::move(p);
      break;
    }
    if (match == nullptr) {
      if (path_known) {
        res.status = 405;
        res.set_content("{\"code\":12,\"message\":\"method not allowed\",\"details\":[]}\n",
                        "application/json");
      } else {
        SendError(res, static_cast<int>(grpc::StatusCode::NOT_FOUND), "no such route: " + req.path);
      }
      return;
    }
    if ((match->method->server_streaming() || match->method->client_streaming()) &&
        match->download_field == nullptr) {
      SendError(res, static_cast<int>(grpc::StatusCode::UNIMPLEMENTED),
                "streaming calls are available over gRPC only");
      return;
    }
    const pb::Message* prototype =
        pb::MessageFactory::generated_factory()->GetPrototype(match->method->input_type());
    std::unique_ptr<pb::Message> request(prototype->New());
    if (match->body_all && !req.body.empty()) {
      auto parsed = pb::util::JsonStringToMessage(req.body, request.get());
      if (!parsed.ok()) {
        SendError(res, static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT),
                  absl::StrCat("request body is not a valid ", match->method->input_type()->name(),
                               ": ", std::string(parsed.message())));
        return;
      }
    }
    for (const auto& [name, value] : params) {
      if (!SetField(request.get(), name, value)) {
        SendError(res, static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT),
                  absl::StrCat("path parameter ", name, " has an invalid value '", value, "'"));
        return;
      }
    }
    // Query parameters from the URL only: httplib also files form-encoded bodies under params
    // (curl -d sends that content type), but bodies here are always JSON.
    httplib::Params query;
    if (size_t q = req.target.find('?'); q != std::string::npos) {
      httplib::detail::parse_query_text(req.target.substr(q + 1), query);
    }
    for (const auto& [name, value] : query) {
      if (!SetField(request.get(), name, value)) {
        SendError(res, static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT),
                  absl::StrCat("query parameter ", name, " is unknown or has an invalid value"));
        return;
      }
    }
    if (match->download_field != nullptr) {
      StreamDownload(req, res, *match, *request, stub);
      return;
    }
    std::unique_ptr<pb::Message> response(
        pb::MessageFactory::generated_factory()->GetPrototype(match->method->output_type())->New());
    grpc::ClientContext ctx;
    // Longer than the slowest call waits by itself (AddNode: a minute), so that its own answer
    // (what is still under way) reaches REST clients rather than a bare deadline.
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(90));
    if (req.has_header("Authorization")) {
      ctx.AddMetadata("authorization", req.get_header_value("Authorization"));
    }
    // The call completes on this thread's own completion queue: the response and status are
    // filled here, so no memory of this request crosses to a gRPC thread.
    grpc::CompletionQueue cq;
    grpc::Status status;
    {
      std::unique_ptr<grpc::ClientAsyncResponseReader<pb::Message>> call = stub->PrepareUnaryCall(
          &ctx,
          absl::StrCat("/", match->method->service()->full_name(), "/", match->method->name()),
          *request, &cq);
      void* tag = nullptr;
      bool ok = false;
      if (call == nullptr) {
        status = grpc::Status(grpc::StatusCode::INTERNAL, "the pane's call could not be made");
      } else {
        call->StartCall();
        call->Finish(response.get(), &status, call.get());
        if (!cq.Next(&tag, &ok) || tag != call.get()) {
          status = grpc::Status(grpc::StatusCode::INTERNAL, "the pane's call did not complete");
        }
      }
      cq.Shutdown();
      while (cq.Next(&tag, &ok)) {
      }
    }
    if (!status.ok()) {
      SendError(res, static_cast<int>(status.error_code()), status.error_message());
      return;
    }
    std::string json;
    pb::util::JsonPrintOptions print;
    print.preserve_proto_field_names = false;
    print.always_print_primitive_fields = true;
    auto printed = pb::util::MessageToJsonString(*response, &json, print);
    if (!printed.ok()) {
      SendError(res, static_cast<int>(grpc::StatusCode::INTERNAL), std::string(printed.message()));
      return;
    }
    res.set_content(json + "\n", "application/json");
  };
  // Errors that cpp-httplib answers itself (a PUT without Content-Length, a body past the limit,
  // a malformed request line) come with an empty body: give them the same JSON error body as
  // every other error.
  svr.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    const int code = res.status == 404   ? static_cast<int>(grpc::StatusCode::NOT_FOUND)
                     : res.status == 413 ? static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED)
                     : res.status >= 500 ? static_cast<int>(grpc::StatusCode::INTERNAL)
                                         : static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT);
    const int http = res.status;
    SendError(res, code, absl::StrCat("the request was refused with HTTP status ", http));
    res.status = http;
  });
  svr.Get(R"(/v1/.*)", handle);
  svr.Post(R"(/v1/.*)", handle);
  svr.Delete(R"(/v1/.*)", handle);
  svr.Put(R"(/v1/.*)", handle);
  svr.Patch(R"(/v1/.*)", handle);

  return gw;
}

void RestGateway::ServeConnection(int fd, const StopSignals& signals) {
  OwnedFd owned(fd);
  if (!SetNonBlocking(fd)) return;
  server_->Serve(fd, signals);
}

RestGateway::~RestGateway() = default;

}  // namespace marmot::pane
