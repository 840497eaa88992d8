// TLS contexts. See tls.h.

#include "proxy/net/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>

namespace portcullis {
namespace {

std::string lastError(const std::string& what) {
  std::string out = what;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += ": ";
    out += buf;
  }
  return out;
}

// A filter BIO that hands out bytes read earlier, then reads through to the next BIO (the
// socket). Only a read side: once the prefix is used up it is a plain pass-through, so the
// event loop's view of the socket (readable or not) stays true.
struct PrefixData {
  std::string bytes;
  std::size_t offset = 0;
  std::size_t left() const { return bytes.size() - offset; }
};

int prefixRead(BIO* b, char* out, int len) {
  BIO_clear_retry_flags(b);
  auto* d = static_cast<PrefixData*>(BIO_get_data(b));
  if (d != nullptr && d->left() > 0) {
    if (out == nullptr || len <= 0) return 0;
    const std::size_t n = std::min(d->left(), static_cast<std::size_t>(len));
    std::memcpy(out, d->bytes.data() + d->offset, n);
    d->offset += n;
    return static_cast<int>(n);
  }
  BIO* next = BIO_next(b);
  if (next == nullptr) return 0;
  const int n = BIO_read(next, out, len);
  BIO_copy_next_retry(b);
  return n;
}

int prefixWrite(BIO* b, const char* in, int len) {
  BIO_clear_retry_flags(b);
  BIO* next = BIO_next(b);
  if (next == nullptr) return 0;
  const int n = BIO_write(next, in, len);
  BIO_copy_next_retry(b);
  return n;
}

long prefixCtrl(BIO* b, int cmd, long num, void* ptr) {
  BIO* next = BIO_next(b);
  const long below = next == nullptr ? 0 : BIO_ctrl(next, cmd, num, ptr);
  if (cmd == BIO_CTRL_PENDING) {
    const auto* d = static_cast<const PrefixData*>(BIO_get_data(b));
    return below + (d == nullptr ? 0 : static_cast<long>(d->left()));
  }
  return below;
}

int prefixCreate(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

int prefixDestroy(BIO* b) {
  delete static_cast<PrefixData*>(BIO_get_data(b));
  BIO_set_data(b, nullptr);
  return 1;
}

const BIO_METHOD* prefixMethod() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_FILTER, "portcullis prefix");
    if (m != nullptr) {
      BIO_meth_set_read(m, prefixRead);
      BIO_meth_set_write(m, prefixWrite);
      BIO_meth_set_ctrl(m, prefixCtrl);
      BIO_meth_set_create(m, prefixCreate);
      BIO_meth_set_destroy(m, prefixDestroy);
    }
    return m;
  }();
  return method;
}

}  // namespace

bool attachSocketWithPrefix(SSL* ssl, int fd, std::string prefix) {
  const BIO_METHOD* method = prefixMethod();
  if (method == nullptr) return false;
  BIO* filter = BIO_new(method);
  BIO* rsock = BIO_new_socket(fd, BIO_NOCLOSE);
  BIO* wsock = BIO_new_socket(fd, BIO_NOCLOSE);
  if (filter == nullptr || rsock == nullptr || wsock == nullptr) {
    BIO_free(filter);
    BIO_free(rsock);
    BIO_free(wsock);
    return false;
  }
  BIO_set_data(filter, new PrefixData{std::move(prefix)});
  BIO_push(filter, rsock);
  // The write BIO is the plain socket: libevent learns the fd from it (SSL_get_wbio).
  SSL_set_bio(ssl, filter, wsock);
  return true;
}

int tlsVersionFromName(const std::string& name) {
  if (name == "1.0") return TLS1_VERSION;
  if (name == "1.1") return TLS1_1_VERSION;
  if (name == "1.2") return TLS1_2_VERSION;
  if (name == "1.3") return TLS1_3_VERSION;
  return 0;
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

std::shared_ptr<const TlsContext> TlsContext::server(const TlsServerSettings& s,
                                                     std::string* error) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) {
    *error = lastError("cannot create a TLS context");
    return nullptr;
  }
  std::shared_ptr<const TlsContext> holder(new TlsContext(ctx, {}));
  SSL_CTX_set_min_proto_version(ctx, s.minVersion);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (!s.ciphers.empty() && SSL_CTX_set_cipher_list(ctx, s.ciphers.c_str()) != 1) {
    *error = lastError("tls.ciphers: no usable cipher in \"" + s.ciphers + "\"");
    return nullptr;
  }
  if (!s.ciphersuites.empty() && SSL_CTX_set_ciphersuites(ctx, s.ciphersuites.c_str()) != 1) {
    *error = lastError("tls.ciphersuites: no usable suite in \"" + s.ciphersuites + "\"");
    return nullptr;
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, s.cert.c_str()) != 1) {
    *error = lastError("tls.cert: cannot load " + s.cert);
    return nullptr;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, s.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    *error = lastError("tls.key: cannot load " + s.key);
    return nullptr;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    *error = lastError("tls.key: does not match tls.cert");
    return nullptr;
  }
  // Resumption: a server-side session cache plus tickets (OpenSSL's default), both keyed by a
  // fixed session-id context so that resumed sessions survive a certificate reload.
  static const unsigned char kSidContext[] = "portcullis";
  SSL_CTX_set_session_id_context(ctx, kSidContext, sizeof kSidContext - 1);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  SSL_CTX_sess_set_cache_size(ctx, 20000);
  return holder;
}

std::shared_ptr<const TlsContext> TlsContext::client(const TlsClientSettings& s,
                                                     std::string* error) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) {
    *error = lastError("cannot create a TLS context");
    return nullptr;
  }
  std::shared_ptr<const TlsContext> holder(new TlsContext(ctx, s.name));
  SSL_CTX_set_min_proto_version(ctx, s.minVersion);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (s.verify) {
    const int ok = s.caFile.empty() ? SSL_CTX_set_default_verify_paths(ctx)
                                    : SSL_CTX_load_verify_locations(ctx, s.caFile.c_str(), nullptr);
    if (ok != 1) {
      *error = lastError("upstream.ca_file: cannot load " + s.caFile);
      return nullptr;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  return holder;
}

SSL* TlsContext::newSsl() const {
  SSL* ssl = SSL_new(ctx_);
  if (ssl != nullptr && !name_.empty()) {
    SSL_set_tlsext_host_name(ssl, name_.c_str());
    if (SSL_CTX_get_verify_mode(ctx_) & SSL_VERIFY_PEER) SSL_set1_host(ssl, name_.c_str());
  }
  return ssl;
}

TlsInfo describeTls(SSL* ssl) {
  TlsInfo t;
  if (ssl == nullptr) return t;
  t.active = true;
  t.protocol = SSL_get_version(ssl);
  const SSL_CIPHER* c = SSL_get_current_cipher(ssl);
  if (c != nullptr) {
    t.cipher = SSL_CIPHER_get_name(c);
    t.bits = SSL_CIPHER_get_bits(c, nullptr);
  }
  t.resumed = SSL_session_reused(ssl) == 1;
  return t;
}

}  // namespace portcullis
