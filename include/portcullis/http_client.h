#pragma once
// HttpClient: outgoing HTTP/1.1 requests on the session's event loop, offered to filters through
// FilterContext so that no filter includes libevent or parses HTTP (a scanner such as rspamd).
// The daemon's implementation is libevent's evhttp client (proxy/chain/http_client.h).
// Ownership: the caller owns the returned HttpCall; destroying it cancels the request, closes
// its connection and guarantees `done` will not run. `done` runs exactly once, always from the
// loop, never inside post(). Every wait is bounded by the request's timeout (connect, each
// write, the reply) and the reply body by maxReplyBody; the message body is streamed from the
// MessageReader (a spooled file is never read whole into memory), which must outlive the call.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "portcullis/session_view.h"

namespace portcullis {

struct HttpRequest {
  enum class Method { kPost, kGet };
  Method method = Method::kPost;  // kGet sends no body (a health check)
  std::string host;               // numeric IPv4/IPv6 address, no brackets: never a name to resolve
  std::uint16_t port = 80;
  std::string path;  // "/checkv2"
  // Header fields to send, in order. Values must already be single-line (the client drops a
  // field whose name or value holds CR, LF or NUL rather than send it).
  std::vector<std::pair<std::string, std::string>> headers;
  const MessageReader* body = nullptr;  // sent whole as the POST body, with its Content-Length
  std::chrono::milliseconds timeout{30'000};
  std::size_t maxReplyBody = 256 * 1024;
};

struct HttpResult {
  enum class Kind {
    kReply,    // a complete reply: `status` and `body`
    kTimeout,  // the connect, a write or the reply took longer than the timeout
    kError,    // refused, reset, closed mid-reply, a reply over its bounds, not HTTP...
  };
  Kind kind = Kind::kError;
  int status = 0;
  std::string body;
  std::string error;  // kTimeout/kError: why, for the log
};

class HttpCall {
 public:
  virtual ~HttpCall() = default;  // cancels: `done` will not run afterwards
};

class HttpClient {
 public:
  virtual ~HttpClient() = default;
  // Sends `request` (a POST or a GET, as its method says).
  [[nodiscard]] virtual std::unique_ptr<HttpCall> post(HttpRequest request,
                                                       std::function<void(HttpResult)> done) = 0;
};

}  // namespace portcullis
