#pragma once
// ByteStream: what a session (or an MTA connection) needs from its connection: buffered input,
// queued output, end-of-input, half-close, and switching to TLS. Stream is the real one (a
// socket on the event loop); tests drive a session through an in-memory one
// (tests/unit/relay/fakes.h) with no socket at all.
// Callbacks run from the event loop, never inside a ByteStream method. An owner that is done
// with a stream inside one of its callbacks hands it to Dispatcher::deferredDelete.

#include <openssl/ssl.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/base/dispatcher.h"
#include "proxy/net/input_buffer.h"

namespace portcullis {

class ByteStream {
 public:
  enum class Event { kConnected, kEof, kError, kTlsReady };
  struct Callbacks {
    std::function<void()> onRead;     // input() has new bytes
    std::function<void()> onDrained;  // everything written has been handed to the kernel
    std::function<void(Event, std::string)> onEvent;
  };
  // What startTls does with input already read and not yet consumed.
  enum class PreTlsInput {
    // STARTTLS, on both sides: bytes sent before the handshake never reach the TLS session
    // (CVE-2011-0411 class).
    kDiscard,
    // Implicit TLS after a PROXY header: the rest of that read is the peer's first TLS bytes
    // (its ClientHello) and is fed to OpenSSL.
    kKeep,
  };

  virtual ~ByteStream() = default;

  virtual void setCallbacks(Callbacks callbacks) = 0;
  virtual void start() = 0;  // begin reading (and, for a connect, wait for the connection)

  virtual InputBuffer& input() = 0;
  virtual void write(std::string_view data) = 0;
  // Queues `data` by reference where the stream can: `owner` keeps the bytes alive, and they
  // must not change, until they are sent or the stream is gone (the spooled message on its way
  // to the MTA). This default copies them, as write() does.
  virtual void writeShared(std::string_view data,
                           [[maybe_unused]] const std::shared_ptr<const void>& owner) {
    write(data);
  }
  virtual std::size_t pendingOutput() const = 0;
  // Hands what is queued to the kernel now rather than at the end of the loop pass: for a reply
  // the peer waits for, when nothing else will be written to it in this pass, so that the work
  // which follows the reply (bookkeeping, log lines) is not between the peer and its answer.
  // Best effort and silent: what is not sent now, an error and onDrained are the end-of-pass
  // flush's, as without this call. This default leaves everything to that flush.
  virtual void sendNow() {}
  // Stop reading while input() holds at least this much; updateReading() re-evaluates after
  // the consumer drained input().
  virtual void setReadLimit(std::size_t bytes) = 0;
  virtual void updateReading() = 0;
  virtual void stopReading() = 0;
  // The peer ended its input (onEvent(kEof) was called): no more will be read. Over plain TCP
  // writing still works (a half-close); over TLS it is treated as the end of the connection.
  virtual bool eof() const = 0;
  // Orderly close of our direction once the output is flushed: over TLS a close_notify first
  // (RFC 8446 6.1), then the FIN. Never waits for the peer's close_notify.
  virtual void shutdownWrite() = 0;
  // Last words before the owner lets go, without waiting for anything (best effort).
  virtual void writeFinal(std::string_view data) = 0;

  // The owner is done with this stream, possibly inside one of its callbacks: no callback
  // runs after this. Then hand it to releaseStream (or Dispatcher::deferredDelete).
  virtual void detach() = 0;

  virtual bool tls() const = 0;
  // Switches to TLS (server or client side). Takes ownership of `ssl`. onEvent(kTlsReady) or
  // kError follows.
  virtual void startTls(SSL* ssl, bool server, PreTlsInput pre = PreTlsInput::kDiscard) = 0;
  virtual SSL* ssl() const = 0;
};

// Lets go of a stream from anywhere, its own callbacks included: detached now, freed from the
// loop.
inline void releaseStream(Dispatcher& dispatcher, std::unique_ptr<ByteStream> stream) {
  if (!stream) return;
  stream->detach();
  dispatcher.deferredDelete(std::move(stream));
}

}  // namespace portcullis
