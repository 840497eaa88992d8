// Stream. See stream.h.

#include "proxy/net/stream.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/bufferevent_struct.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "proxy/net/tls.h"

namespace portcullis {
namespace {

constexpr std::size_t kReadChunk = 32 * 1024;
constexpr std::size_t kLastWriteMax = 4096;
// How many times a flush waits behind writes to come (WritesToCome) before it goes anyway: a
// group of that many pipelined commands leaves in one send, and the callbacks one client's long
// group queues cannot hold every other stream's flush for as long as the group lasts.
constexpr int kMaxFlushHolds = 16;
// The output buffer a stream keeps between writes; one that grew past it (a message body to a
// slow MTA) is released once it drains, so a pooled connection does not hold it.
constexpr std::size_t kKeepOutputCapacity = 64 * 1024;
// Reserved at once: every reply of a session fits, so the buffer is allocated once, not grown
// reply by reply.
constexpr std::size_t kInitialOutputCapacity = 512;
// writeShared copies pieces shorter than this (a dot added by dot-stuffing, a line end, the
// lines between two dot-led ones): an iovec of its own would cost more than the copy, and a
// message cut into many short pieces would need a sendmsg every few of them.
constexpr std::size_t kMinShared = 4096;
// iovecs per sendmsg (at least 128 KiB of shared pieces); a longer queue goes in several calls.
constexpr int kMaxIov = 64;

std::string sslErrors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "TLS error" : out;
}

}  // namespace

void setNoDelay(evutil_socket_t fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

Stream::Stream(event_base* base, evutil_socket_t fd)
    : base_(base),
      fd_(fd),
      readEvent_(base, fd, EV_READ | EV_PERSIST, &Stream::onReadable, this),
      writeEvent_(base, fd, EV_WRITE | EV_PERSIST, &Stream::onWritable, this),
      flushEvent_(base, -1, 0, &Stream::onFlush, this) {
  output_.reserve(kInitialOutputCapacity);
}

std::unique_ptr<Stream> Stream::connect(event_base* base, const SocketAddress& to,
                                        std::string* error) {
  const evutil_socket_t fd =
      ::socket(to.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    return nullptr;
  }
  setNoDelay(fd);
  auto s = std::make_unique<Stream>(base, fd);
  if (::connect(fd, to.get(), to.length) != 0 && errno != EINPROGRESS) {
    *error = std::string("connect: ") + std::strerror(errno);
    return nullptr;
  }
  s->connecting_ = true;  // completion (or failure) shows as writability
  return s;
}

Stream::~Stream() {
  if (pendingSsl_ != nullptr) SSL_free(pendingSsl_);
  readEvent_.reset();
  writeEvent_.reset();
  flushEvent_.reset();
  if (tls_) {
    tls_.reset();  // BEV_OPT_CLOSE_ON_FREE: frees the SSL and closes the socket
  } else if (fd_ >= 0) {
    ::close(fd_);
  }
}

void Stream::setCallbacks(Callbacks callbacks) { cb_ = std::move(callbacks); }

void Stream::start() {
  if (connecting_) {
    event_add(writeEvent_.get(), nullptr);
    writeArmed_ = true;
    return;
  }
  updateReading();
}

std::size_t Stream::pendingOutput() const {
  if (tls_) return evbuffer_get_length(bufferevent_get_output(tls_.get()));
  return output_.size() - outSent_ + sharedPending_;
}

void Stream::write(std::string_view data) {
  if (closed_) return;
  if (tls_) {
    bufferevent_write(tls_.get(), data.data(), data.size());
    return;
  }
  output_.append(data);
  scheduleFlush();
}

void Stream::writeShared(std::string_view data, const std::shared_ptr<const void>& owner) {
  if (tls_ || data.size() < kMinShared) {
    write(data);
    return;
  }
  if (closed_) return;
  shared_.push_back({output_.size(), data, owner});
  sharedPending_ += data.size();
  scheduleFlush();
}

void Stream::sendNow() {
  if (closed_ || connecting_ || tls_ || tlsPending_ || writeArmed_ || shutdownPending_) return;
  const std::size_t pending = pendingOutput();
  if (pending == 0) return;
  const ssize_t n = sendQueued(pending, MSG_NOSIGNAL | MSG_DONTWAIT);
  // The flush that write() scheduled still runs: it sends the rest (or meets the error again)
  // and calls onDrained, from the loop as ever.
  if (n > 0) consumeOutput(static_cast<std::size_t>(n));
}

void Stream::scheduleFlush() {
  if (!flushScheduled_ && !writeArmed_) {
    // Coalesce everything written during this callback into one send, later in this same
    // loop iteration; no syscall until then, and no write event unless the kernel pushes back.
    flushScheduled_ = true;
    event_active(flushEvent_.get(), 0, 0);
  }
}

void Stream::updateReading() {
  if (tlsPending_) return;  // beginTls decides
  if (tls_) {
    const bool want = !closed_ && !stopped_ && input_.size() < readLimit_;
    if (want == reading_) return;
    reading_ = want;
    if (!want) {
      bufferevent_disable(tls_.get(), EV_READ);
      return;
    }
    bufferevent_enable(tls_.get(), EV_READ);
    // What OpenSSL decrypted before reading was switched off and libevent has not taken yet
    // (the rest of a record) is announced by no socket event: libevent's read handler is run
    // once from the loop to take it (its events are public: event2/bufferevent_struct.h).
    event_active(&tls_->ev_read, EV_READ, 1);
    return;
  }
  const bool want = !closed_ && !eof_ && !connecting_ && !stopped_ && input_.size() < readLimit_;
  if (want && !reading_) {
    event_add(readEvent_.get(), nullptr);
    reading_ = true;
  } else if (!want && reading_) {
    event_del(readEvent_.get());
    reading_ = false;
  }
}

void Stream::stopReading() {
  stopped_ = true;
  updateReading();
}

void Stream::shutdownWrite() {
  if (pendingOutput() > 0) {
    shutdownPending_ = true;
    return;
  }
  finishWrite();
}

void Stream::finishWrite() {
  if (tls_) sendCloseNotify();
  ::shutdown(fd_, SHUT_WR);
}

void Stream::writeFinal(std::string_view data) {
  if (closed_ || connecting_ || tlsPending_ || pendingOutput() > 0) return;
  if (!tls_) {
    ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    return;
  }
  SSL* s = ssl();
  if (s == nullptr || SSL_is_init_finished(s) != 1) return;
  // The output buffer is empty, so the bufferevent has no SSL_write of its own outstanding.
  // A write the kernel cannot take whole leaves a partial record: then no close_notify either.
  ERR_clear_error();
  if (SSL_write(s, data.data(), static_cast<int>(data.size())) <= 0) {
    ERR_clear_error();
    return;
  }
  finishWrite();
}

void Stream::onReadable(evutil_socket_t, short, void* self) {
  static_cast<Stream*>(self)->readSome();
}

void Stream::readSome() {
  // One scratch buffer for every stream of the thread. Into an empty input it is lent for the
  // owner's callback, and only what the owner leaves is copied (InputBuffer); a callback never
  // reads another stream, so the scratch is not reused while lent.
  thread_local char scratch[kReadChunk];
  const ssize_t n = ::read(fd_, scratch, sizeof scratch);
  if (n > 0) {
    const std::string_view got(scratch, static_cast<std::size_t>(n));
    const bool lend = input_.empty();
    if (lend) {
      input_.lend(got);
    } else {
      input_.append(got);
    }
    if (!detached_ && cb_.onRead) cb_.onRead();
    if (lend) input_.endLoan();
    updateReading();
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n < 0) {
    fail(Event::kError, std::strerror(errno));
    return;
  }
  // The peer's FIN ends its input only: it may be a half-close (shutdown(SHUT_WR)) with its
  // commands still to be answered. Reading stops for good; writing goes on until the owner
  // closes (RFC 9293 3.6: a half-closed connection still carries data the other way).
  eof_ = true;
  if (reading_) {
    event_del(readEvent_.get());
    reading_ = false;
  }
  if (!detached_ && cb_.onEvent) cb_.onEvent(Event::kEof, "end of stream");
}

void Stream::onFlush(evutil_socket_t, short, void* self) {
  auto* s = static_cast<Stream*>(self);
  if (WritesToCome::queued > 0 && s->flushHolds_ < kMaxFlushHolds) {
    // Callbacks queued in this pass will write more (the next command of a pipelined group):
    // to the back of the pass, behind them, so that it all leaves in one send.
    ++s->flushHolds_;
    event_active(s->flushEvent_.get(), 0, 0);
    return;
  }
  s->flushHolds_ = 0;
  s->flushScheduled_ = false;
  s->flush();
}

void Stream::onWritable(evutil_socket_t, short, void* self) {
  auto* s = static_cast<Stream*>(self);
  if (s->connecting_) {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(s->fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    s->connecting_ = false;
    event_del(s->writeEvent_.get());
    s->writeArmed_ = false;
    if (err != 0) {
      s->fail(Event::kError, std::strerror(err));
      return;
    }
    if (!s->detached_ && s->cb_.onEvent) s->cb_.onEvent(Event::kConnected, {});
    s->updateReading();
    if (s->pendingOutput() > 0) s->flush();
    return;
  }
  s->flush();
}

// The unsent output in order, output_'s bytes and shared ones interleaved, in one sendmsg.
ssize_t Stream::sendGathered(int flags) {
  iovec iov[kMaxIov];
  int count = 0;
  std::size_t pos = outSent_;
  std::size_t i = sharedHead_;
  for (; i < shared_.size() && count + 2 <= kMaxIov; ++i) {
    const SharedBytes& s = shared_[i];
    if (s.at > pos) {
      iov[count++] = {output_.data() + pos, s.at - pos};
      pos = s.at;
    }
    const std::size_t skip = i == sharedHead_ ? sharedSent_ : 0;
    // sendmsg does not write through iov_base.
    iov[count++] = {const_cast<char*>(s.bytes.data() + skip), s.bytes.size() - skip};
  }
  // What follows the last shared piece, if it has room (else the next call sends it).
  if (i == shared_.size() && pos < output_.size() && count < kMaxIov) {
    iov[count++] = {output_.data() + pos, output_.size() - pos};
  }
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = static_cast<std::size_t>(count);
  return ::sendmsg(fd_, &msg, flags);
}

// One system call for the unsent output (`pending` bytes): a plain send while nothing is
// shared, else sendGathered.
ssize_t Stream::sendQueued(std::size_t pending, int flags) {
  return sharedHead_ < shared_.size() ? sendGathered(flags)
                                      : ::send(fd_, output_.data() + outSent_, pending, flags);
}

// `n` bytes of the output were sent: output_'s up to the next shared piece, then that piece.
void Stream::consumeOutput(std::size_t n) {
  while (n > 0) {
    if (sharedHead_ < shared_.size() && shared_[sharedHead_].at == outSent_) {
      SharedBytes& s = shared_[sharedHead_];
      const std::size_t take = std::min(n, s.bytes.size() - sharedSent_);
      sharedSent_ += take;
      sharedPending_ -= take;
      n -= take;
      if (sharedSent_ == s.bytes.size()) {
        s.owner.reset();  // sent: its owner may go
        ++sharedHead_;
        sharedSent_ = 0;
      }
      continue;
    }
    const std::size_t end = sharedHead_ < shared_.size() ? shared_[sharedHead_].at : output_.size();
    const std::size_t take = std::min(n, end - outSent_);
    if (take == 0) break;  // more than was queued: cannot happen
    outSent_ += take;
    n -= take;
  }
}

// Drops what was sent, keeping the shared pieces' places in the rest.
void Stream::compactOutput() {
  output_.erase(0, outSent_);
  shared_.erase(shared_.begin(), shared_.begin() + static_cast<std::ptrdiff_t>(sharedHead_));
  for (SharedBytes& s : shared_) s.at -= outSent_;
  sharedHead_ = 0;
  outSent_ = 0;
}

void Stream::flush() {
  if (closed_ || connecting_ || tls_) return;
  while (const std::size_t pending = pendingOutput()) {
    int flags = MSG_NOSIGNAL | MSG_DONTWAIT;
    // The last bytes before our FIN (a 221 or 421): corked with MSG_MORE, so that the
    // shutdown below sends them and the FIN in one segment instead of two.
    if (shutdownPending_ && pending <= kLastWriteMax) flags |= MSG_MORE;
    const ssize_t n = sendQueued(pending, flags);
    if (n <= 0) {
      if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK) {
        // The kernel pushes back: keep only what is unsent (bounded by the owners' high-water
        // marks), and wait until the socket takes more.
        compactOutput();
        if (!writeArmed_) {
          event_add(writeEvent_.get(), nullptr);
          writeArmed_ = true;
        }
        return;
      }
      if (errno == EINTR) continue;
      fail(Event::kError, std::strerror(errno));
      return;
    }
    consumeOutput(static_cast<std::size_t>(n));
  }
  output_.clear();
  outSent_ = 0;
  if (output_.capacity() > kKeepOutputCapacity) output_.shrink_to_fit();
  shared_.clear();
  sharedHead_ = 0;
  sharedSent_ = 0;
  if (writeArmed_) {
    event_del(writeEvent_.get());
    writeArmed_ = false;
  }
  const bool fin = std::exchange(shutdownPending_, false);
  if (tlsPending_) {
    if (fin) finishWrite();
    beginTls();
    return;
  }
  if (!detached_ && cb_.onDrained) cb_.onDrained();
  // An owner that lets go of the stream now (stopReading or detach in onDrained, as a session
  // does after its 221 when nothing is unread) leaves the FIN to the close in the destructor,
  // which sends it with the corked last bytes: a shutdown() first would be one more system
  // call for the same segment. An owner that stays (lingering for the peer) gets it now.
  if (fin && !stopped_) finishWrite();
}

void Stream::fail(Event e, std::string detail) {
  closed_ = true;
  if (reading_) {
    event_del(readEvent_.get());
    reading_ = false;
  }
  if (writeArmed_) {
    event_del(writeEvent_.get());
    writeArmed_ = false;
  }
  if (!detached_ && cb_.onEvent) cb_.onEvent(e, std::move(detail));
}

// ---- TLS ----

SSL* Stream::ssl() const { return tls_ ? bufferevent_openssl_get_ssl(tls_.get()) : nullptr; }

void Stream::startTls(SSL* ssl, bool server, PreTlsInput pre) {
  pendingSsl_ = ssl;
  tlsServer_ = server;
  if (pre == PreTlsInput::kKeep) tlsPrefix_ = input_.view();
  // Otherwise plaintext that arrived after the STARTTLS command (or after the server's 220) is
  // thrown away, never fed to the TLS session (CVE-2011-0411).
  input_.clear();
  if (reading_) {
    event_del(readEvent_.get());
    reading_ = false;
  }
  tlsPending_ = true;
  // The plaintext reply that announced TLS must leave first.
  if (pendingOutput() > 0) {
    if (!flushScheduled_ && !writeArmed_) {
      flushScheduled_ = true;
      event_active(flushEvent_.get(), 0, 0);
    }
    return;
  }
  flushScheduled_ = true;
  event_active(flushEvent_.get(), 0, 0);  // begin from the loop, never inline
}

void Stream::beginTls() {
  tlsPending_ = false;
  readEvent_.reset();
  writeEvent_.reset();
  if (!tlsPrefix_.empty()) {
    // The kept bytes are already out of the socket, so readability cannot announce them; the
    // handshake still starts at once: the bufferevent begins writable and tries it then.
    const bool attached = attachSocketWithPrefix(pendingSsl_, fd_, std::move(tlsPrefix_));
    tlsPrefix_.clear();
    if (!attached) {
      fail(Event::kError, "cannot start TLS");
      return;
    }
  }
  bufferevent* bev = bufferevent_openssl_socket_new(
      base_, fd_, pendingSsl_, tlsServer_ ? BUFFEREVENT_SSL_ACCEPTING : BUFFEREVENT_SSL_CONNECTING,
      BEV_OPT_CLOSE_ON_FREE);
  pendingSsl_ = nullptr;
  if (bev == nullptr) {
    fail(Event::kError, "cannot start TLS");
    return;
  }
  tls_.reset(bev);
  bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
  bufferevent_setcb(bev, &Stream::onTlsRead, &Stream::onTlsWrite, &Stream::onTlsEvent, this);
  // Each of libevent's reads is bounded by its watermark (deliverTlsInput empties its input).
  bufferevent_setwatermark(bev, EV_READ, 0, readLimit_);
  reading_ = !stopped_;
  bufferevent_enable(bev, reading_ ? (EV_READ | EV_WRITE) : EV_WRITE);
}

void Stream::onTlsRead(bufferevent*, void* self) { static_cast<Stream*>(self)->deliverTlsInput(); }

void Stream::deliverTlsInput() {
  // All of it, as a plain read may overshoot the limit by one read: libevent's reads are
  // bounded by its own watermark (the same limit) and a record; updateReading then stops them.
  evbuffer* in = bufferevent_get_input(tls_.get());
  evbuffer_iovec v{};
  while (evbuffer_peek(in, -1, nullptr, &v, 1) >= 1 && v.iov_len > 0) {
    input_.append(std::string_view(static_cast<const char*>(v.iov_base), v.iov_len));
    evbuffer_drain(in, v.iov_len);
  }
  if (!detached_ && cb_.onRead) cb_.onRead();
  updateReading();
}

void Stream::onTlsWrite(bufferevent*, void* self) {
  auto* s = static_cast<Stream*>(self);
  if (s->shutdownPending_) {
    s->shutdownPending_ = false;
    s->finishWrite();
  }
  if (!s->detached_ && s->cb_.onDrained) s->cb_.onDrained();
}

// Not const although it could compile so: it writes to the connection.
void Stream::sendCloseNotify() {  // NOLINT(readability-make-member-function-const)
  SSL* s = ssl();
  if (s == nullptr || SSL_is_init_finished(s) != 1 || (SSL_get_shutdown(s) & SSL_SENT_SHUTDOWN)) {
    return;
  }
  // RFC 8446 6.1 (RFC 5246 7.2.1): close_notify tells the peer that the end is intended, not a
  // truncation (Exim: "TLS connection was non-properly terminated" without it). Sent once, and
  // never waited for: the initiator may close without the peer's answer, and the FIN follows
  // at once. If the kernel cannot take the alert now, the FIN goes alone.
  ERR_clear_error();
  if (SSL_shutdown(s) < 0) ERR_clear_error();
}

void Stream::onTlsEvent(bufferevent*, short what, void* self) {
  auto* s = static_cast<Stream*>(self);
  if (what & BEV_EVENT_CONNECTED) {
    if (!s->detached_ && s->cb_.onEvent) s->cb_.onEvent(Event::kTlsReady, {});
    return;
  }
  if (what & BEV_EVENT_EOF) {
    s->closed_ = true;
    s->eof_ = true;
    if (!s->detached_ && s->cb_.onEvent) s->cb_.onEvent(Event::kEof, "end of stream");
    return;
  }
  if (what & BEV_EVENT_ERROR) {
    s->closed_ = true;
    if (!s->detached_ && s->cb_.onEvent) s->cb_.onEvent(Event::kError, sslErrors());
  }
}

}  // namespace portcullis
