#pragma once
// What the logs say about each reply a session sends: who gave it (a filter, portcullis itself,
// or the MTA), the event=reject line for every 4xx/5xx, the reference on our own refusals, and
// the event=transaction line that records a transaction's envelope. With these an admin finds,
// from a bounce's reference or a client's address, where in the SMTP sequence the session
// failed, who failed it and why (`portcullis explain`).
// Addresses are logged as the client sent them, sanitised by logValue(); bodies and AUTH data
// never are.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "portcullis/reply.h"
#include "proxy/api/session_record.h"

namespace portcullis {

// Who a reply comes from, and why.
struct ReplySource {
  enum class Who : std::uint8_t { kPortcullis, kFilter, kMta };
  Who who = Who::kPortcullis;
  std::string_view filter;     // the filter's label (kFilter)
  std::string_view reason;     // the filter's reason or our own cause; the MTA's: its reply
  std::string_view recipient;  // the address a RCPT reply answers

  static ReplySource mta(std::string_view recipient = {}) { return {Who::kMta, {}, {}, recipient}; }
  static ReplySource filterVerdict(std::string_view label, std::string_view reason,
                                   std::string_view recipient = {}) {
    return {Who::kFilter, label, reason, recipient};
  }
  static ReplySource local(std::string_view reason = {}, std::string_view recipient = {}) {
    return {Who::kPortcullis, {}, reason, recipient};
  }
  // "mta", "portcullis" or the filter's label: the by= of the logs.
  std::string_view by() const;
};

// What became of one RCPT.
struct RecipientOutcome {
  std::string address;
  int code = 0;
  std::string by;
};

// A transaction's record for its event=transaction line.
struct TransactionLog {
  bool mailAccepted = false;  // only a transaction the MAIL opened gets a line
  std::vector<RecipientOutcome> recipients;
  int endCode = 0;  // the reply to the dot (0: the transaction ended before one)
  std::string endBy;
  std::string endReply;
  std::string queuedAs;
  bool discarded = false;
};

// The reject line's stage for the command a reply answers: the filter stage names where one
// applies (connect helo mail rcpt data end_of_message), else the command in lower case.
std::string rejectStage(std::string_view verb);

// `r` with " [ref=REF]" at the end of its last line (its text shortened if the line would
// otherwise be too long).
Reply withReference(const Reply& r, std::string_view ref);

// The MTA's queue id in its reply to the dot: Postfix "250 2.0.0 Ok: queued as F3F5DA74037",
// Exim "250 OK id=1vQ2x5-000Abc-Ql", or "" when it names none. Only [A-Za-z0-9._-], bounded.
std::string queueIdFromReply(const Reply& r);

// "<a@b>", or "<>" for the null sender, or "" before MAIL.
std::string senderForLog(const Envelope& e);

// The event=reject line (info); event=discard, in the same shape, for a discard verdict's 250.
void logReject(const SessionRecord& s, const Reply& sent, std::string_view verb,
               const ReplySource& source, std::string_view ref, std::string_view event = "reject");

// The event=transaction line (info); `sender` as senderForLog gives it.
void logTransaction(const SessionRecord& s, std::string_view sender, const TransactionLog& t);

}  // namespace portcullis
