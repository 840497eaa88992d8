// Stream's input: lines split across reads arrive whole, and reading stops at the read limit
// (plain TCP and TLS alike) until the owner drains what it has.

#include "proxy/net/stream.h"

#include <event2/event.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>

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

}  // namespace
}  // namespace portcullis
