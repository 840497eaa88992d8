#pragma once
// SessionView: the read-only picture of one SMTP session that filters receive at every stage,
// through accessors only (no struct layout a filter could depend on). The session owns the data
// and updates it between stages; a filter may keep a reference while its own call is pending
// (the session outlives its filters) but must not keep the string_views or list references it
// got across stages. Nothing here is client-supplied identity that the core has not checked:
// the address comes from the socket (or a trusted PROXY header), the hostname is FCrDNS-verified.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

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

// A read-only list owned by the session: size() and [i], and range-for.
template <typename T>
class ListView {
 public:
  class Iterator {
   public:
    Iterator(const ListView* list, std::size_t i) : list_(list), i_(i) {}
    T operator*() const { return (*list_)[i_]; }
    Iterator& operator++() {
      ++i_;
      return *this;
    }
    bool operator==(const Iterator& other) const { return i_ == other.i_; }

   private:
    const ListView* list_;
    std::size_t i_;
  };

  virtual std::size_t size() const = 0;
  virtual T operator[](std::size_t i) const = 0;
  bool empty() const { return size() == 0; }
  Iterator begin() const { return {this, 0}; }
  Iterator end() const { return {this, size()}; }

 protected:
  ~ListView() = default;
};

using StringListView = ListView<std::string_view>;
using HeaderListView = ListView<const HeaderField&>;

class ClientView {
 public:
  virtual std::string_view address() const = 0;  // textual IP without brackets
  virtual std::uint16_t port() const = 0;
  virtual bool ipv6() const = 0;
  virtual ReverseStatus reverse() const = 0;
  virtual std::string_view ptrName() const = 0;  // first PTR name, unverified; empty if none
  virtual std::string_view name() const = 0;     // verified hostname (kVerified only), else empty

 protected:
  ~ClientView() = default;
};

class TlsView {
 public:
  virtual bool active() const = 0;
  virtual std::string_view protocol() const = 0;  // "TLSv1.3"
  virtual std::string_view cipher() const = 0;    // "TLS_AES_256_GCM_SHA384"
  virtual int bits() const = 0;
  virtual bool resumed() const = 0;  // an abbreviated handshake (session resumption)

 protected:
  ~TlsView() = default;
};

class EnvelopeView {
 public:
  virtual bool nullSender() const = 0;
  virtual std::string_view mailFrom() const = 0;         // without angle brackets; "" for <>
  virtual const StringListView& mailParams() const = 0;  // verbatim "KEY" or "KEY=VALUE"
  virtual std::optional<std::uint64_t> declaredSize() const = 0;  // MAIL FROM ... SIZE=
  virtual bool smtputf8() const = 0;
  virtual const StringListView& recipients() const = 0;   // accepted so far, in order
  virtual std::string_view currentRecipient() const = 0;  // the RCPT being decided (rcpt only)
  virtual const StringListView& currentRecipientParams() const = 0;

 protected:
  ~EnvelopeView() = default;
};

// Random access to the spooled message (dot-unstuffed, CRLF line ends), for content filters.
class MessageReader {
 public:
  virtual ~MessageReader() = default;
  virtual std::uint64_t size() const = 0;
  // Copies up to n bytes from offset into buf; returns the count (0 at the end or on error).
  virtual std::size_t read(std::uint64_t offset, char* buf, std::size_t n) const = 0;
  // Where the bytes already are, so that a sender can hand them to the kernel without a copy
  // (the HTTP client's body): `head` in memory, then the rest either in `memory` or as the
  // first size() - head.size() bytes of the open file `fd` (owned by the reader: pread or
  // sendfile only, never read whole). nullopt (the default): read() is the only way.
  struct Bytes {
    std::string_view head;
    std::optional<std::string_view> memory;
    int fd = -1;
  };
  virtual std::optional<Bytes> bytes() const { return std::nullopt; }
};

class MessageView {
 public:
  virtual const HeaderListView& headers() const = 0;  // unfolded, in order (end_of_headers on)
  virtual std::uint64_t size() const = 0;             // octets after dot-unstuffing
  virtual bool oversized() const = 0;  // went over limits.max_message_size; spool truncated
  virtual const MessageReader* reader() const = 0;  // end_of_headers / end_of_message only

 protected:
  ~MessageView() = default;
};

class LimitsView {
 public:
  virtual std::uint64_t maxMessageSize() const = 0;
  virtual std::size_t maxRecipients() const = 0;

 protected:
  ~LimitsView() = default;
};

class SessionView {
 public:
  virtual std::string_view id() const = 0;  // short random id, first in every log line
  virtual const ClientView& client() const = 0;
  virtual std::string_view localAddress() const = 0;  // the address the client connected to
  virtual std::uint16_t localPort() const = 0;
  virtual std::string_view hostname() const = 0;  // our own name (config `hostname`)
  virtual std::string_view helo() const = 0;      // the client's EHLO/HELO argument, as sent
  virtual bool esmtp() const = 0;
  virtual const TlsView& tls() const = 0;
  virtual const LimitsView& limits() const = 0;
  virtual std::uint32_t transactions() const = 0;  // completed or aborted MAIL transactions
  virtual const EnvelopeView& envelope() const = 0;
  virtual const MessageView& message() const = 0;
  // The name the client authenticated as (SMTP AUTH, RFC 4954), as the MTA that checked the
  // credentials reports it; empty when the client has not authenticated. Milter mode: Postfix's
  // {auth_authen} macro, from the MAIL FROM stage on (Postfix sends it with MAIL; set
  // milter_mail_macros to include it, as Postfix's default does). Proxy mode: always empty. The
  // proxy does not relay AUTH to the MTA (it answers AUTH 502 and strips it from EHLO), so no
  // client is ever authenticated through it. Since API 1.3.
  virtual std::string_view authenticatedUser() const = 0;

 protected:
  ~SessionView() = default;
};

}  // namespace portcullis
