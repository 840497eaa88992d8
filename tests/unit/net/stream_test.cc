// Stream's input: lines split across reads arrive whole, and reading stops at the read limit
// (plain TCP and TLS alike) until the owner drains what it has. Its output: what callbacks
// queued in the same loop pass write (DeferredCall::Flushes::kWait) leaves in the same send;
// bytes written by reference (writeShared) leave in order with the rest, their owner kept
// until they are sent.

#include "proxy/net/stream.h"

#include <event2/event.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "proxy/base/dispatcher.h"

namespace portcullis {
namespace {

struct EventBaseDeleter {
  void operator()(event_base* b) const { event_base_free(b); }
};

class StreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    ours_ = std::make_unique<Stream>(base_.get(), fds[0]);
    theirs_ = std::make_unique<Stream>(base_.get(), fds[1]);
  }

  // Runs the loop until nothing is left to do right now.
  void settle() {
    for (int i = 0; i < 50; ++i) event_base_loop(base_.get(), EVLOOP_NONBLOCK);
  }

  std::unique_ptr<event_base, EventBaseDeleter> base_{event_base_new()};
  std::unique_ptr<Stream> ours_;
  std::unique_ptr<Stream> theirs_;
};

TEST_F(StreamTest, ALineSplitAcrossReadsArrivesWhole) {
  std::vector<std::string> lines;
  ours_->setCallbacks({[&] {
                         InputBuffer& in = ours_->input();
                         for (std::size_t lf; (lf = in.view().find('\n')) != std::string::npos;) {
                           lines.emplace_back(in.view().substr(0, lf + 1));
                           in.drain(lf + 1);
                         }
                       },
                       {},
                       {}});
  ours_->start();
  theirs_->start();
  theirs_->write("EHLO a\r\nMAIL FR");
  settle();
  ASSERT_EQ(lines, std::vector<std::string>{"EHLO a\r\n"});
  EXPECT_EQ(ours_->input().view(), "MAIL FR");  // kept after the read's loan ended
  theirs_->write("OM:<>\r\n");
  settle();
  EXPECT_EQ(lines, (std::vector<std::string>{"EHLO a\r\n", "MAIL FROM:<>\r\n"}));
  EXPECT_TRUE(ours_->input().empty());
}

TEST_F(StreamTest, SharedBytesThatTheKernelPushesBackArriveWholeAndInOrder) {
  // 60 pieces of 5,000 bytes by reference, each after a few copied bytes: more iovecs than one
  // sendmsg takes, and far more bytes than the shrunk send buffer takes at once.
  const int small = 4096;
  ASSERT_EQ(::setsockopt(ours_->fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  auto owner = std::make_shared<std::string>();
  for (int i = 0; i < 60; ++i) owner->append(5000, static_cast<char>('a' + i % 26));
  const std::weak_ptr<std::string> watched = owner;
  std::string want;
  for (int i = 0; i < 60; ++i) {
    const std::string copied = "<" + std::to_string(i) + ">";
    ours_->write(copied);
    const std::string_view piece = std::string_view(*owner).substr(i * 5000, 5000);
    ours_->writeShared(piece, owner);
    want.append(copied).append(piece);
  }
  ours_->write("end");
  want += "end";
  owner.reset();
  EXPECT_EQ(ours_->pendingOutput(), want.size());
  std::string got;
  theirs_->setCallbacks({[&] {
                           got.append(theirs_->input().view());
                           theirs_->input().clear();
                         },
                         {},
                         {}});
  theirs_->start();
  event_base_loop(base_.get(), EVLOOP_ONCE | EVLOOP_NONBLOCK);  // one pass: one send's worth
  EXPECT_GT(ours_->pendingOutput(), 0U);
  EXPECT_FALSE(watched.expired()) << "let go of while its bytes wait";
  for (int i = 0; i < 5000 && got.size() < want.size(); ++i) {
    event_base_loop(base_.get(), EVLOOP_NONBLOCK);
  }
  EXPECT_EQ(got.size(), want.size());
  EXPECT_TRUE(got == want) << "bytes out of order";
  EXPECT_EQ(ours_->pendingOutput(), 0U);
  EXPECT_TRUE(watched.expired()) << "still held once sent";
}

TEST_F(StreamTest, ReadingStopsAtTheLimitUntilTheOwnerDrains) {
  ours_->setReadLimit(1000);
  ours_->setCallbacks({[] {}, {}, {}});  // an owner that reads nothing for now
  ours_->start();
  theirs_->start();
  theirs_->write(std::string(4000, 'a'));
  settle();
  EXPECT_EQ(ours_->input().size(), 4000u);  // one read may overshoot the limit
  theirs_->write(std::string(4000, 'b'));
  settle();
  EXPECT_EQ(ours_->input().size(), 4000u);  // then no more is read
  ours_->input().clear();
  ours_->updateReading();
  settle();
  EXPECT_EQ(ours_->input().view(), std::string(4000, 'b'));
}

// ---- TLS ----

struct SslCtxDeleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;

// A server context with a throwaway self-signed P-256 certificate.
SslCtxPtr selfSignedServerContext() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("stream.test"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509_sign(cert, key, EVP_sha256());
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  SSL_CTX_use_certificate(ctx.get(), cert);
  SSL_CTX_use_PrivateKey(ctx.get(), key);
  X509_free(cert);
  EVP_PKEY_free(key);
  return ctx;
}

TEST_F(StreamTest, OverTlsReadingStopsAtTheLimitUntilTheOwnerDrains) {
  SslCtxPtr serverCtx = selfSignedServerContext();
  SslCtxPtr clientCtx(SSL_CTX_new(TLS_client_method()));  // verifies nothing: a loopback pair
  bool serverReady = false;
  bool clientReady = false;
  ours_->setReadLimit(1000);
  ours_->setCallbacks({[] {},
                       {},
                       [&](ByteStream::Event e, const std::string&) {
                         serverReady = serverReady || e == ByteStream::Event::kTlsReady;
                       }});
  theirs_->setCallbacks({[] {},
                         {},
                         [&](ByteStream::Event e, const std::string&) {
                           clientReady = clientReady || e == ByteStream::Event::kTlsReady;
                         }});
  ours_->start();
  theirs_->start();
  ours_->startTls(SSL_new(serverCtx.get()), true);
  theirs_->startTls(SSL_new(clientCtx.get()), false);
  settle();
  ASSERT_TRUE(serverReady && clientReady);

  const std::size_t total = 256 * 1024;
  theirs_->write(std::string(total, 'x'));
  settle();
  const std::size_t first = ours_->input().size();
  EXPECT_GE(first, 1000u);
  EXPECT_LE(first, 64u * 1024);  // the limit and at most a read's worth of records past it
  std::size_t got = 0;
  for (int rounds = 0; !ours_->input().empty() && rounds < 10000; ++rounds) {
    // the owner drains: the rest follows, all of it, in order
    const std::string_view v = ours_->input().view();
    ASSERT_EQ(v.find_first_not_of('x'), std::string_view::npos);
    got += v.size();
    ours_->input().clear();
    ours_->updateReading();
    settle();
  }
  EXPECT_TRUE(ours_->input().empty());
  EXPECT_EQ(got, total) << "SSL_pending " << SSL_pending(ours_->ssl()) << " their output "
                        << theirs_->pendingOutput();
}

// Over a SOCK_SEQPACKET pair every send() is a record of its own, so the peer sees how many
// sends the stream made, which a byte stream would hide.
class StreamSendsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, fds), 0);
    ours_ = std::make_unique<Stream>(base_.get(), fds[0]);
    peer_ = fds[1];
  }
  void TearDown() override { ::close(peer_); }

  // One pass of the loop: what is active now, and what that activates in turn.
  void onePass() { event_base_loop(base_.get(), EVLOOP_NONBLOCK); }
  // Every send the stream made so far, one string each.
  std::vector<std::string> sends() const {
    std::vector<std::string> out;
    std::vector<char> buf(256 * 1024);  // a record longer than this would be cut short
    for (ssize_t n; (n = ::recv(peer_, buf.data(), buf.size(), MSG_DONTWAIT)) > 0;) {
      out.emplace_back(buf.data(), static_cast<std::size_t>(n));
    }
    return out;
  }

  std::unique_ptr<event_base, EventBaseDeleter> base_{event_base_new()};
  EventDispatcher dispatcher_{base_.get()};
  std::unique_ptr<Stream> ours_;
  int peer_ = -1;
};

TEST_F(StreamSendsTest, WritesOfCallsQueuedInThePassLeaveInTheSameSend) {
  // A pipelined group: each command's write comes from a callback the one before queued (as a
  // filter chain's inline outcome does), after the stream's flush was already queued.
  int left = 3;
  DeferredCall next(
      dispatcher_,
      [&] {
        ours_->write("RCPT\r\n");
        if (--left > 0) next.schedule();
      },
      DeferredCall::Flushes::kWait);
  ours_->write("MAIL\r\n");
  next.schedule();
  onePass();
  EXPECT_EQ(sends(), std::vector<std::string>{"MAIL\r\nRCPT\r\nRCPT\r\nRCPT\r\n"});
  EXPECT_EQ(WritesToCome::queued, 0);
}

TEST_F(StreamSendsTest, SendNowHandsTheQueueToTheKernelAtOnceAndTheFlushStillDrains) {
  // A reply the client waits for leaves before the loop runs again; what is written after it
  // leaves in the end-of-pass flush, which also tells the owner that all is written.
  int drained = 0;
  ours_->setCallbacks({nullptr, [&] { ++drained; }, nullptr});
  ours_->write("250 2.1.0 ");
  ours_->write("Ok\r\n");
  ours_->sendNow();
  EXPECT_EQ(sends(), std::vector<std::string>{"250 2.1.0 Ok\r\n"});
  EXPECT_EQ(ours_->pendingOutput(), 0U);
  EXPECT_EQ(drained, 0) << "a callback from inside sendNow";
  ours_->write("250 2.1.5 Ok\r\n");
  onePass();
  EXPECT_EQ(sends(), std::vector<std::string>{"250 2.1.5 Ok\r\n"});
  EXPECT_EQ(drained, 1);

  // Shared bytes go too; the last words before a FIN wait, to leave with it (MSG_MORE).
  auto owner = std::make_shared<std::string>(5000, 'm');
  ours_->writeShared(*owner, owner);
  ours_->sendNow();
  EXPECT_EQ(sends(), std::vector<std::string>{*owner});
  onePass();
  ours_->write("221 2.0.0 Bye\r\n");
  ours_->shutdownWrite();
  ours_->sendNow();
  EXPECT_TRUE(sends().empty()) << "sent apart from the FIN it waits for";
  onePass();
  EXPECT_EQ(sends(), std::vector<std::string>{"221 2.0.0 Bye\r\n"});
}

TEST_F(StreamSendsTest, ALongGroupLeavesInBoundedSends) {
  // A flush waits behind at most 16 such callbacks: a client's long pipelined group cannot hold
  // every stream's flush for its whole length; the bytes still leave whole and in order.
  int next = 0;
  DeferredCall call(
      dispatcher_,
      [&] {
        ours_->write("RCPT " + std::to_string(++next) + "\r\n");
        if (next < 40) call.schedule();
      },
      DeferredCall::Flushes::kWait);
  ours_->write("MAIL\r\n");
  call.schedule();
  onePass();
  const std::vector<std::string> got = sends();
  EXPECT_EQ(got.size(), 3U);
  std::string all;
  std::string want = "MAIL\r\n";
  for (int i = 1; i <= 40; ++i) want.append("RCPT ").append(std::to_string(i)).append("\r\n");
  for (const std::string& s : got) {
    EXPECT_LE(std::count(s.begin(), s.end(), '\n'), 17);
    all += s;
  }
  EXPECT_EQ(all, want);
}

TEST_F(StreamSendsTest, SharedBytesLeaveWithTheCopiedOnesInOneSend) {
  auto owner = std::make_shared<std::string>(std::string(5000, 'a') + std::string(6000, 'b'));
  const std::weak_ptr<std::string> watched = owner;
  const std::string_view bytes = *owner;
  ours_->write("DATA\r\n");
  ours_->writeShared(bytes.substr(0, 5000), owner);
  ours_->writeShared(".", owner);  // short: copied, its owner not kept for it
  ours_->writeShared(bytes.substr(5000), owner);
  ours_->writeShared(bytes.substr(0, 5000), owner);  // right after the last: the same place
  ours_->writeShared(bytes.substr(0, 100), owner);   // copied too
  ours_->write("\r\n.\r\n");
  owner.reset();
  EXPECT_FALSE(watched.expired()) << "let go of before its bytes were sent";
  EXPECT_EQ(ours_->pendingOutput(), 6U + 5000 + 1 + 6000 + 5000 + 100 + 5);
  onePass();
  EXPECT_EQ(sends(), std::vector<std::string>{"DATA\r\n" + std::string(5000, 'a') + "." +
                                              std::string(6000, 'b') + std::string(5000, 'a') +
                                              std::string(100, 'a') + "\r\n.\r\n"});
  EXPECT_TRUE(watched.expired()) << "still held once sent";
}

TEST_F(StreamSendsTest, SharedPiecesThatFillEveryIovecLeaveTheRestForTheNextSend) {
  // 32 pieces, each after copied bytes: 64 iovecs, all one sendmsg takes; the copied bytes
  // after the last piece go in a second send, after them.
  auto owner = std::make_shared<std::string>(32 * 4096, 's');
  const std::string_view bytes = *owner;
  std::string want;
  for (int i = 0; i < 32; ++i) {
    ours_->write(std::to_string(i));
    ours_->writeShared(bytes.substr(i * 4096, 4096), owner);
    want += std::to_string(i) + std::string(4096, 's');
  }
  ours_->write("tail");
  onePass();
  EXPECT_EQ(sends(), (std::vector<std::string>{want, "tail"}));
}

TEST_F(StreamSendsTest, AStreamGoneWithSharedBytesUnsentLetsGoOfTheirOwner) {
  auto owner = std::make_shared<std::string>(5000, 'm');
  const std::weak_ptr<std::string> watched = owner;
  ours_->writeShared(*owner, owner);
  owner.reset();
  EXPECT_FALSE(watched.expired());
  ours_.reset();
  EXPECT_TRUE(watched.expired());
  EXPECT_TRUE(sends().empty());
}

TEST_F(StreamSendsTest, AnOrdinaryDeferredCallDoesNotHoldTheFlush) {
  DeferredCall later(dispatcher_, [&] { ours_->write("RCPT\r\n"); });
  ours_->write("MAIL\r\n");
  later.schedule();
  onePass();
  EXPECT_EQ(sends(), (std::vector<std::string>{"MAIL\r\n", "RCPT\r\n"}));
}

TEST_F(StreamSendsTest, ACancelledOrDestroyedCallHoldsNothing) {
  DeferredCall cancelled(
      dispatcher_, [] {}, DeferredCall::Flushes::kWait);
  cancelled.schedule();
  cancelled.schedule();  // scheduled twice, counted once
  cancelled.cancel();
  {
    DeferredCall destroyed(
        dispatcher_, [] {}, DeferredCall::Flushes::kWait);
    destroyed.schedule();
    EXPECT_EQ(WritesToCome::queued, 1);
  }
  EXPECT_EQ(WritesToCome::queued, 0);
  ours_->write("QUIT\r\n");
  onePass();
  EXPECT_EQ(sends(), std::vector<std::string>{"QUIT\r\n"});
}

}  // namespace
}  // namespace portcullis
