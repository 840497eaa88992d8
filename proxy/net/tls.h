#pragma once
// TLS contexts (OpenSSL) for both sides: the server context that answers STARTTLS and implicit
// TLS listeners (RFC 3207, RFC 8314), and the client context for STARTTLS to the MTA.
// Contexts are immutable once built and shared by sessions through shared_ptr; loading new
// certificate files builds a new context (reloadable without a restart, see Server::reloadTls),
// and sessions already in TLS keep the one they started with. Session resumption: server-side
// session cache and tickets are on (OpenSSL defaults) with a fixed session-id context.

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "proxy/api/session_record.h"

namespace portcullis {

struct TlsServerSettings {
  std::string cert;          // PEM chain
  std::string key;           // PEM private key
  std::string ciphers;       // TLS <= 1.2 cipher list; empty: OpenSSL's default
  std::string ciphersuites;  // TLS 1.3; empty: OpenSSL's default
  int minVersion = TLS1_2_VERSION;
};

struct TlsClientSettings {
  bool verify = false;  // verify the MTA's certificate
  std::string caFile;   // CA bundle; empty: the system default paths
  std::string name;     // expected name (SNI and hostname check); empty: none
  int minVersion = TLS1_2_VERSION;
};

class TlsContext {
 public:
  static std::shared_ptr<const TlsContext> server(const TlsServerSettings& s, std::string* error);
  static std::shared_ptr<const TlsContext> client(const TlsClientSettings& s, std::string* error);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // A new SSL object for one connection (the caller hands it to a Stream).
  SSL* newSsl() const;

 private:
  TlsContext(SSL_CTX* ctx, std::string name) : ctx_(ctx), name_(std::move(name)) {}
  SSL_CTX* ctx_;
  std::string name_;  // client side: SNI / verified name
};

// "1.2" / "1.3" → TLS1_2_VERSION...; 0 when unknown.
int tlsVersionFromName(const std::string& name);
// Protocol, cipher and bits of an established connection.
TlsInfo describeTls(SSL* ssl);

// Gives `ssl` its socket BIOs for `fd`, reading `prefix` first and then the socket: bytes
// already read from the socket that belong to the TLS session (implicit TLS, where the
// ClientHello can arrive in the same segment as a PROXY header). Never for bytes read before a
// STARTTLS: those are discarded (CVE-2011-0411). The SSL owns the BIOs; `fd` stays open.
[[nodiscard]] bool attachSocketWithPrefix(SSL* ssl, int fd, std::string prefix);

}  // namespace portcullis
