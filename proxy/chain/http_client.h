#pragma once
// EvhttpClient: the daemon's HttpClient (include/portcullis/http_client.h) on libevent's own
// evhttp client, one dispatcher's loop, no threads, no HTTP parsing of ours. One connection per
// request (a scan is one POST; the scanner's own keep-alive buys little next to its scan time).
// The body goes out without a copy: a spooled file as a sendfile segment of its descriptor, a
// message in memory by reference. The completion is handed to the loop through a DeferredCall,
// never run inside evhttp's callback, so the owner may destroy the call from `done`. The server
// owns the client; it outlives every session and so every call.

#include <memory>

#include "portcullis/http_client.h"
#include "proxy/base/dispatcher.h"

namespace portcullis {

class EvhttpClient final : public HttpClient {
 public:
  explicit EvhttpClient(Dispatcher& dispatcher) : dispatcher_(dispatcher) {}
  std::unique_ptr<HttpCall> post(HttpRequest request,
                                 std::function<void(HttpResult)> done) override;

 private:
  Dispatcher& dispatcher_;
};

}  // namespace portcullis
