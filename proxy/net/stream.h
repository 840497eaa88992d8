#pragma once
// Stream: one TCP connection's byte I/O on the event loop, for the client side and the MTA side.
// Plain TCP is done here directly rather than with bufferevents: a persistent read event, reads
// without a FIONREAD ioctl, and writes coalesced per loop iteration and sent at once (a deferred
// flush event), so that the common case needs no epoll_ctl at all. Only when the kernel's send
// buffer is full is a write event armed. (The benchmark showed bufferevents spending ~45 of
// ~110 syscalls per relayed message on epoll_ctl and ioctl.) TLS, once started, runs through
// libevent's bufferevent_openssl on the same socket; the interface does not change.
// Callbacks run from the event loop, never inside a Stream method. A callback never destroys
// the Stream: its owner lets go of it through Dispatcher::deferredDelete (DESIGN: one lifetime
// idiom), so the Stream may go on touching itself after a callback returns.

#include <event2/event.h>
#include <openssl/ssl.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/base/event_util.h"
#include "proxy/base/net_util.h"
#include "proxy/base/recycled.h"
#include "proxy/net/byte_stream.h"

namespace portcullis {

// TCP_NODELAY: replies and commands are small and each one is awaited by the peer. Linux
// accepted sockets inherit it from their listener, so the server sets it once per listener.
void setNoDelay(evutil_socket_t fd);

class Stream final : public ByteStream, public Recycled<Stream> {
 public:
  // Takes ownership of an accepted, connected socket (TCP_NODELAY already set: setNoDelay on
  // the listener).
  Stream(event_base* base, evutil_socket_t fd);
  // A new non-blocking connection to `to`; kConnected or kError follows through onEvent.
  static std::unique_ptr<Stream> connect(event_base* base, const SocketAddress& to,
                                         std::string* error);
  ~Stream() override;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  void setCallbacks(Callbacks callbacks) override;
  void start() override;
  InputBuffer& input() override { return input_; }
  void write(std::string_view data) override;
  // Plain TCP: queued by reference and sent with the rest in one sendmsg (no copy of the
  // message). Pieces under kMinShared bytes, and everything over TLS, are copied.
  void writeShared(std::string_view data, const std::shared_ptr<const void>& owner) override;
  std::size_t pendingOutput() const override;
  // Plain TCP only, and not while the kernel pushes back, a connect is under way or a FIN is
  // to be corked with the last bytes (shutdownWrite): then the flush does it all.
  void sendNow() override;
  void setReadLimit(std::size_t bytes) override { readLimit_ = bytes; }
  void updateReading() override;
  void stopReading() override;
  bool eof() const override { return eof_; }
  void detach() override {
    detached_ = true;
    stopReading();
  }
  void shutdownWrite() override;
  // Best effort: nothing is sent when other output is still queued (it must not jump the
  // queue), and what the kernel does not take at once is dropped.
  void writeFinal(std::string_view data) override;

  evutil_socket_t fd() const { return fd_; }
  bool tls() const override { return static_cast<bool>(tls_); }
  void startTls(SSL* ssl, bool server, PreTlsInput pre = PreTlsInput::kDiscard) override;
  SSL* ssl() const override;

 private:
  static void onReadable(evutil_socket_t, short, void* self);
  static void onWritable(evutil_socket_t, short, void* self);
  static void onFlush(evutil_socket_t, short, void* self);
  static void onTlsRead(bufferevent*, void* self);
  static void onTlsWrite(bufferevent*, void* self);
  static void onTlsEvent(bufferevent*, short what, void* self);

  void readSome();
  void deliverTlsInput();
  void flush();
  void scheduleFlush();
  ssize_t sendGathered(int flags);
  ssize_t sendQueued(std::size_t pending, int flags);
  void consumeOutput(std::size_t n);
  void compactOutput();
  void fail(Event e, std::string detail);
  void beginTls();
  void finishWrite();
  void sendCloseNotify();

  event_base* base_;
  evutil_socket_t fd_;
  Callbacks cb_;
  // Plain TCP and TLS alike: over TLS the bufferevent's input is moved here as it comes.
  InputBuffer input_;
  // Plain TCP: what write() queued, sent from outSent_ on. A string, not an evbuffer, because
  // an evbuffer frees its last chain whenever it drains and allocates one at the next write:
  // a malloc for every reply. Emptied (its capacity kept, up to kKeepOutputCapacity) once sent.
  std::string output_;
  std::size_t outSent_ = 0;
  // writeShared's bytes, in order, each with its place in output_ (it goes before output_[at]).
  // Those before shared_ are sent (their owners let go); shared_[sharedHead_] is sent up to
  // sharedSent_. Emptied, its capacity kept, with output_.
  struct SharedBytes {
    std::size_t at;
    std::string_view bytes;
    std::shared_ptr<const void> owner;
  };
  std::vector<SharedBytes> shared_;
  std::size_t sharedHead_ = 0;
  std::size_t sharedSent_ = 0;
  std::size_t sharedPending_ = 0;  // bytes of shared_ not yet sent
  InlineEvent readEvent_;
  InlineEvent writeEvent_;
  InlineEvent flushEvent_;
  std::size_t readLimit_ = 64 * 1024;
  bool connecting_ = false;
  bool reading_ = false;
  bool writeArmed_ = false;
  bool flushScheduled_ = false;
  int flushHolds_ = 0;  // times the scheduled flush went to the back of the pass
  bool shutdownPending_ = false;
  bool closed_ = false;
  bool eof_ = false;       // the peer's FIN was read
  bool detached_ = false;  // the owner let go: no more callbacks
  bool stopped_ = false;
  bool tlsPending_ = false;
  bool tlsServer_ = false;
  SSL* pendingSsl_ = nullptr;
  std::string tlsPrefix_;  // PreTlsInput::kKeep: read before the handshake, fed to it first
  BufferEventPtr tls_;     // set once TLS starts; then all I/O goes through it
};

}  // namespace portcullis
