#pragma once
// SessionRecord: the core's data behind a SessionView, and the adapter that shows it to filters.
// Not part of the public API: the session (proxy/relay/) writes these plain fields between
// stages; filters see them only through SessionView's accessors (SessionRecordView), so the
// layout here can change without touching a filter. A SessionRecordView holds a reference to
// its record and must not outlive it; it reads the record live (no copy, no allocation).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "portcullis/session_view.h"

namespace portcullis {

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

struct SessionRecord {
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
  std::string authenticatedUser;   // SMTP AUTH name as the MTA reports it (milter); else empty
  Envelope envelope;
  MessageInfo message;
};

// A vector shown as a ListView (reads the vector live).
template <typename Element, typename Shown>
class VectorListView final : public ListView<Shown> {
 public:
  explicit VectorListView(const std::vector<Element>& v) : v_(&v) {}
  virtual ~VectorListView() = default;  // never deleted through a base (those are protected)
  VectorListView(const VectorListView&) = default;
  VectorListView& operator=(const VectorListView&) = default;
  std::size_t size() const override { return v_->size(); }
  Shown operator[](std::size_t i) const override { return (*v_)[i]; }

 private:
  const std::vector<Element>* v_;
};

// SessionView over a SessionRecord. One object answers for the session and each of its parts
// (their accessor names do not collide; the lists are members, since every list has a size()),
// so showing a record to filters costs one small object.
class SessionRecordView final : public SessionView,
                                public ClientView,
                                public TlsView,
                                public LimitsView,
                                public EnvelopeView,
                                public MessageView {
 public:
  explicit SessionRecordView(const SessionRecord& record);
  virtual ~SessionRecordView() = default;  // never deleted through a base (those are protected)
  SessionRecordView(const SessionRecordView&) = delete;
  SessionRecordView& operator=(const SessionRecordView&) = delete;

  const SessionRecord& record() const { return *r_; }

  // SessionView
  std::string_view id() const override { return r_->id; }
  const ClientView& client() const override { return *this; }
  std::string_view localAddress() const override { return r_->localAddress; }
  std::uint16_t localPort() const override { return r_->localPort; }
  std::string_view hostname() const override { return r_->hostname; }
  std::string_view helo() const override { return r_->helo; }
  bool esmtp() const override { return r_->esmtp; }
  const TlsView& tls() const override { return *this; }
  const LimitsView& limits() const override { return *this; }
  std::uint32_t transactions() const override { return r_->transactions; }
  const EnvelopeView& envelope() const override { return *this; }
  const MessageView& message() const override { return *this; }
  std::string_view authenticatedUser() const override { return r_->authenticatedUser; }

  // ClientView
  std::string_view address() const override { return r_->client.address; }
  std::uint16_t port() const override { return r_->client.port; }
  bool ipv6() const override { return r_->client.ipv6; }
  ReverseStatus reverse() const override { return r_->client.reverse; }
  std::string_view ptrName() const override { return r_->client.ptrName; }
  std::string_view name() const override { return r_->client.name; }

  // TlsView
  bool active() const override { return r_->tls.active; }
  std::string_view protocol() const override { return r_->tls.protocol; }
  std::string_view cipher() const override { return r_->tls.cipher; }
  int bits() const override { return r_->tls.bits; }
  bool resumed() const override { return r_->tls.resumed; }

  // LimitsView
  std::uint64_t maxMessageSize() const override { return r_->limits.maxMessageSize; }
  std::size_t maxRecipients() const override { return r_->limits.maxRecipients; }

  // EnvelopeView
  bool nullSender() const override { return r_->envelope.nullSender; }
  std::string_view mailFrom() const override { return r_->envelope.mailFrom; }
  const StringListView& mailParams() const override { return mailParams_; }
  std::optional<std::uint64_t> declaredSize() const override { return r_->envelope.declaredSize; }
  bool smtputf8() const override { return r_->envelope.smtputf8; }
  const StringListView& recipients() const override { return recipients_; }
  std::string_view currentRecipient() const override { return r_->envelope.currentRecipient; }
  const StringListView& currentRecipientParams() const override { return rcptParams_; }

  // MessageView
  const HeaderListView& headers() const override { return headers_; }
  std::uint64_t size() const override { return r_->message.size; }
  bool oversized() const override { return r_->message.oversized; }
  const MessageReader* reader() const override { return r_->message.reader; }

 private:
  using Strings = VectorListView<std::string, std::string_view>;

  const SessionRecord* r_;
  Strings mailParams_;
  Strings recipients_;
  Strings rcptParams_;
  VectorListView<HeaderField, const HeaderField&> headers_;
};

}  // namespace portcullis
