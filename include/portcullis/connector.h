#pragma once
// Connector: outgoing stream connections (TCP or a unix socket) on the session's event loop,
// offered to filters through FilterContext so that no filter includes libevent. A scanner
// client (clamd, spamd...) connects, writes its request with backpressure, and reads the reply.
// Ownership: the caller owns the returned Connection and the ConnectionHandler outlives it;
// destroying the Connection closes the socket and guarantees no handler call afterwards, and
// the owner may destroy it from inside any handler call. Handler calls always come from the
// event loop, never inline inside connect() or write(). Every wait is bounded: the connect by
// its timeout, each write wait by the same timeout, the reply wait by setReadTimeout().

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace portcullis {

// Why a connection ended. After any of these the handler hears nothing more.
enum class ConnectionEnd {
  kClosed,   // the peer closed its side (end of stream), after or without a reply
  kTimeout,  // the connect, a write or the awaited reply took longer than its timeout
  kError,    // refused, reset, unreachable, bad address...
};

std::string_view connectionEndName(ConnectionEnd end);

class ConnectionHandler {
 public:
  virtual ~ConnectionHandler() = default;
  virtual void onConnected() {}
  // Bytes as they arrive, at most kMaxConnectionRead at a time; the handler keeps what it needs
  // (and bounds what it keeps).
  virtual void onReceived(std::string_view bytes) = 0;
  // Everything written so far has been handed to the kernel (pendingWrite() is 0).
  virtual void onDrained() {}
  // Terminal. `detail` is for the log ("connection refused", "timeout after 30000ms").
  virtual void onEnd(ConnectionEnd end, std::string_view detail) = 0;
};

// The most one onReceived() call delivers (and so the most the core buffers for a connection).
inline constexpr std::size_t kMaxConnectionRead = 64 * 1024;

class Connection {
 public:
  virtual ~Connection() = default;  // closes; the handler hears nothing afterwards
  // Queues bytes (allowed before onConnected: they go out once connected). The caller applies
  // backpressure itself: stop writing while pendingWrite() is large, resume at onDrained().
  virtual void write(std::string_view bytes) = 0;
  virtual std::size_t pendingWrite() const = 0;
  // Bounds the wait for the peer's next bytes (e.g. once the request is written); zero turns
  // it off again. Each arriving byte restarts it.
  virtual void setReadTimeout(std::chrono::milliseconds timeout) = 0;
};

class Connector {
 public:
  virtual ~Connector() = default;
  // Connects to `address`: "127.0.0.1:3310", "[::1]:3310" (numeric only: no name resolution)
  // or "unix:/run/clamav/clamd.ctl". `timeout` bounds the connect and each write wait. A bad
  // address or a refused connect is reported to the handler from the loop like any other end.
  [[nodiscard]] virtual std::unique_ptr<Connection> connect(std::string_view address,
                                                            std::chrono::milliseconds timeout,
                                                            ConnectionHandler& handler) = 0;
};

// Checks an address in the Connector's syntax at config load: nullopt when valid, else why not.
std::optional<std::string> checkConnectAddress(std::string_view address);

}  // namespace portcullis
