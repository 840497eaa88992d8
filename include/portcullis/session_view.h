#pragma once
// SessionView: the read-only picture of one SMTP session that filters receive at every stage.
// The session owns it and updates it between stages; a filter may keep a reference while its
// own call is pending (the session outlives its filters) but must not cache pointers into it
// across stages. Nothing here is client-supplied identity that the core has not checked: the
// address comes from the socket (or a trusted PROXY header), the hostname is FCrDNS-verified.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "portcullis/verdict.h"

namespace portcullis {

// Outcome of the core's reverse lookup of the client address (like Postfix smtpd).
enum class ReverseStatus {
  kNotLooked,  // no lookup made (reverse lookups disabled)
  kVerified,   // PTR found and it resolves back to the client address (FCrDNS)
  kMismatch,   // PTR found but no forward record matches the address
  kNoPtr,      // NXDOMAIN / no PTR record
  kTempFail,   // timeout or server failure somewhere on the way
};

std::string_view reverseStatusName(ReverseStatus s);

struct ClientInfo {
  std::string address;  // textual IP without brackets: "192.0.2.1", "2001:db8::1"
  std::uint16_t port = 0;
  bool ipv6 = false;
  ReverseStatus reverse = ReverseStatus::kNotLooked;
  std::string ptrName;  // first PTR name, unverified; empty if none
  std::string name;     // verified hostname (kVerified only), else empty
};

struct TlsInfo {
  bool active = false;
  std::string protocol;  // "TLSv1.3"
  std::string cipher;    // "TLS_AES_256_GCM_SHA384"
  int bits = 0;
  bool resumed = false;  // an abbreviated handshake (session resumption)
};

struct Envelope {
  bool nullSender = false;
  std::string mailFrom;                       // without angle brackets; empty for <>
  std::vector<std::string> mailParams;        // verbatim "KEY" or "KEY=VALUE"
  std::optional<std::uint64_t> declaredSize;  // MAIL FROM ... SIZE=
  bool smtputf8 = false;
  std::vector<std::string> recipients;  // accepted so far, in order
  std::string currentRecipient;         // the RCPT being decided (rcpt stage only)
  std::vector<std::string> currentRecipientParams;
};

// Random access to the spooled message (dot-unstuffed, CRLF line ends), for content filters.
class MessageReader {
 public:
  virtual ~MessageReader() = default;
  virtual std::uint64_t size() const = 0;
  // Copies up to n bytes from offset into buf; returns the count (0 at the end or on error).
  virtual std::size_t read(std::uint64_t offset, char* buf, std::size_t n) const = 0;
};

struct MessageInfo {
  std::vector<HeaderField> headers;  // unfolded, in order (end_of_headers onward)
  std::uint64_t size = 0;            // octets after dot-unstuffing
  bool oversized = false;            // went over limits.max_message_size; the spool is truncated
  const MessageReader* reader = nullptr;  // end_of_headers / end_of_message only
};

struct SessionLimits {
  std::uint64_t maxMessageSize = 0;
  std::size_t maxRecipients = 0;
};

struct SessionView {
  std::string id;  // short random id, first in every log line
  ClientInfo client;
  std::string localAddress;  // the address the client connected to
  std::uint16_t localPort = 0;
  std::string hostname;  // our own name (config `hostname`)
  std::string helo;      // the client's EHLO/HELO argument, as sent
  bool esmtp = false;
  TlsInfo tls;
  SessionLimits limits;
  std::uint32_t transactions = 0;  // completed or aborted MAIL transactions so far
  Envelope envelope;
  MessageInfo message;
};

}  // namespace portcullis
