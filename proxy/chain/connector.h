#pragma once
// EventConnector: the daemon's Connector (include/portcullis/connector.h) on libevent
// bufferevents, one dispatcher's loop, no threads. Every handler call is deferred to the loop
// (BEV_OPT_DEFER_CALLBACKS, or a DeferredCall for an address that cannot even be tried), so a
// caller never hears back inside connect() or write(). The server owns the connector; it
// outlives every session and so every connection it made.

#include <memory>

#include "portcullis/connector.h"
#include "proxy/base/dispatcher.h"

namespace portcullis {

class EventConnector final : public Connector {
 public:
  explicit EventConnector(Dispatcher& dispatcher) : dispatcher_(dispatcher) {}
  std::unique_ptr<Connection> connect(std::string_view address, std::chrono::milliseconds timeout,
                                      ConnectionHandler& handler) override;

 private:
  Dispatcher& dispatcher_;
};

}  // namespace portcullis
