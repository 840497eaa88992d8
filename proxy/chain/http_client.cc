// EvhttpClient. See http_client.h.

#include "proxy/chain/http_client.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <algorithm>
#include <string>
#include <utility>

#include "proxy/base/event_util.h"

namespace portcullis {
namespace {

// A reply's status line and headers; rspamd's are a few hundred bytes.
constexpr ev_ssize_t kMaxReplyHeaders = 16 * 1024;
// The fallback for a reader that is neither memory nor a file: a copy, a chunk at a time.
constexpr std::size_t kCopyChunk = 64 * 1024;

struct EvhttpConnectionDeleter {
  void operator()(evhttp_connection* c) const { evhttp_connection_free(c); }
};
using EvhttpConnectionPtr = std::unique_ptr<evhttp_connection, EvhttpConnectionDeleter>;

bool singleLine(std::string_view s) {
  return std::ranges::none_of(s, [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

std::string_view errorName(evhttp_request_error error) {
  switch (error) {
    case EVREQ_HTTP_TIMEOUT:
      return "timeout";
    case EVREQ_HTTP_EOF:
      return "closed before a complete reply";
    case EVREQ_HTTP_INVALID_HEADER:
      return "invalid reply header";
    case EVREQ_HTTP_BUFFER_ERROR:
      return "connection error";
    case EVREQ_HTTP_REQUEST_CANCEL:
      return "cancelled";
    case EVREQ_HTTP_DATA_TOO_LONG:
      return "reply too long";
  }
  return "error";
}

class EvhttpCall final : public HttpCall {
 public:
  EvhttpCall(Dispatcher& dispatcher, std::function<void(HttpResult)> done)
      : done_(std::move(done)), completeLater_(dispatcher, [this] { complete(); }) {}
  ~EvhttpCall() override {
    // Frees the pending request with the connection; evhttp calls no callback from here.
    completeLater_.cancel();
  }
  EvhttpCall(const EvhttpCall&) = delete;
  EvhttpCall& operator=(const EvhttpCall&) = delete;

  void start(Dispatcher& dispatcher, const HttpRequest& r) {
    timeout_ = r.timeout;
    // Numeric only (checked at config load): evhttp's lookup of a literal needs no resolver.
    conn_.reset(evhttp_connection_base_new(dispatcher.base(), nullptr, r.host.c_str(), r.port));
    if (!conn_) {
      finishWith(HttpResult::Kind::kError, "cannot create the connection");
      return;
    }
    // Connect, every write and every read wait; the filter's own deadline bounds the whole.
    const timeval tv = toTimeval(r.timeout);
    evhttp_connection_set_timeout_tv(conn_.get(), &tv);
    evhttp_connection_set_retries(conn_.get(), 0);
    evhttp_connection_set_max_headers_size(conn_.get(), kMaxReplyHeaders);
    evhttp_connection_set_max_body_size(conn_.get(), static_cast<ev_ssize_t>(r.maxReplyBody));

    evhttp_request* req = evhttp_request_new(&EvhttpCall::onDone, this);
    if (req == nullptr) {
      finishWith(HttpResult::Kind::kError, "cannot create the request");
      return;
    }
    evhttp_request_set_error_cb(req, &EvhttpCall::onError);
    evkeyvalq* headers = evhttp_request_get_output_headers(req);
    const std::string host = r.host.find(':') == std::string::npos
                                 ? r.host + ":" + std::to_string(r.port)
                                 : "[" + r.host + "]:" + std::to_string(r.port);
    evhttp_add_header(headers, "Host", host.c_str());
    for (const auto& [name, value] : r.headers) {
      if (!singleLine(name) || !singleLine(value) || name.empty()) continue;
      evhttp_add_header(headers, name.c_str(), value.c_str());
    }
    const bool get = r.method == HttpRequest::Method::kGet;
    if (!get && r.body != nullptr && !addBody(evhttp_request_get_output_buffer(req), *r.body)) {
      evhttp_request_free(req);  // not queued yet: ours to free
      finishWith(HttpResult::Kind::kError, "cannot read the spooled message");
      return;
    }
    if (evhttp_make_request(conn_.get(), req, get ? EVHTTP_REQ_GET : EVHTTP_REQ_POST,
                            r.path.c_str()) != 0) {
      // Not queued and not freed by evhttp (http.c, evhttp_make_request's error path).
      evhttp_request_free(req);
      finishWith(HttpResult::Kind::kError, "cannot send the request");
    }
  }

 private:
  // False when the message cannot be read whole (a spool error): nothing is sent then.
  [[nodiscard]] static bool addBody(evbuffer* out, const MessageReader& body) {
    const std::uint64_t size = body.size();
    if (size == 0) return true;
    // The reader outlives the call (HttpClient's contract): its bytes go by reference.
    if (const auto bytes = body.bytes(); bytes && bytes->head.size() <= size) {
      const std::uint64_t rest = size - bytes->head.size();
      if (!bytes->head.empty()) {
        evbuffer_add_reference(out, bytes->head.data(), bytes->head.size(), nullptr, nullptr);
      }
      if (bytes->memory && bytes->memory->size() == rest) {
        if (rest > 0) evbuffer_add_reference(out, bytes->memory->data(), rest, nullptr, nullptr);
        return true;
      }
      if (bytes->fd >= 0 && addFile(out, bytes->fd, rest)) return true;
      evbuffer_drain(out, evbuffer_get_length(out));  // start again with copies
    }
    std::string chunk(kCopyChunk, '\0');
    for (std::uint64_t offset = 0; offset < size;) {
      const std::size_t n = body.read(offset, chunk.data(), chunk.size());
      if (n == 0) return false;
      evbuffer_add(out, chunk.data(), n);
      offset += n;
    }
    return true;
  }

  // A sendfile segment (the flag lets evbuffer keep it one when evhttp moves the body to the
  // socket's buffer); without sendfile, libevent maps the file rather than reading it. The
  // segment does not own the descriptor.
  static bool addFile(evbuffer* out, int fd, std::uint64_t length) {
    if (length == 0) return true;
    evbuffer_set_flags(out, EVBUFFER_FLAG_DRAINS_TO_FD);
    evbuffer_file_segment* seg = evbuffer_file_segment_new(fd, 0, static_cast<ev_off_t>(length), 0);
    if (seg == nullptr) return false;
    const int rc = evbuffer_add_file_segment(out, seg, 0, static_cast<ev_off_t>(length));
    evbuffer_file_segment_free(seg);  // the buffer holds its own reference
    return rc == 0;
  }

  static void onError(evhttp_request_error error, void* self) {
    auto* call = static_cast<EvhttpCall*>(self);
    call->error_ = error;
    call->sawError_ = true;
  }

  // evhttp's completion: req is null on a failure (after onError). Only records; the caller
  // hears it from the loop.
  static void onDone(evhttp_request* req, void* self) {
    auto* call = static_cast<EvhttpCall*>(self);
    if (call->finished_) return;
    if (req == nullptr || evhttp_request_get_response_code(req) == 0) {
      if (call->sawError_ && call->error_ == EVREQ_HTTP_TIMEOUT) {
        call->finishWith(HttpResult::Kind::kTimeout,
                         "timeout after " + std::to_string(call->timeout_.count()) + "ms");
      } else {
        call->finishWith(HttpResult::Kind::kError, call->sawError_
                                                       ? std::string(errorName(call->error_))
                                                       : std::string("connection failed"));
      }
      return;
    }
    HttpResult r;
    r.kind = HttpResult::Kind::kReply;
    r.status = evhttp_request_get_response_code(req);
    evbuffer* in = evhttp_request_get_input_buffer(req);
    r.body.resize(evbuffer_get_length(in));
    evbuffer_remove(in, r.body.data(), r.body.size());
    call->result_ = std::move(r);
    call->finished_ = true;
    call->completeLater_.schedule();
  }

  void finishWith(HttpResult::Kind kind, std::string error) {
    finished_ = true;
    result_ = HttpResult{};
    result_.kind = kind;
    result_.error = std::move(error);
    completeLater_.schedule();
  }

  void complete() {
    std::function<void(HttpResult)> done = std::move(done_);
    done(std::move(result_));  // may destroy this: touch nothing afterwards
  }

  std::function<void(HttpResult)> done_;
  std::chrono::milliseconds timeout_{0};
  HttpResult result_;
  bool finished_ = false;
  bool sawError_ = false;
  evhttp_request_error error_ = EVREQ_HTTP_BUFFER_ERROR;
  DeferredCall completeLater_;
  EvhttpConnectionPtr conn_;  // last: freed first, with its pending request and callbacks
};

}  // namespace

std::unique_ptr<HttpCall> EvhttpClient::post(HttpRequest request,
                                             std::function<void(HttpResult)> done) {
  auto call = std::make_unique<EvhttpCall>(dispatcher_, std::move(done));
  call->start(dispatcher_, request);
  return call;
}

}  // namespace portcullis
