// Verdict constructors: each kind is paired with a reply of the right class, whatever the
// filter passed in (DESIGN: a filter's reply that is not a valid 4xx/5xx becomes a safe one).

#include "portcullis/verdict.h"

#include "portcullis/session_view.h"

namespace portcullis {

std::string_view verdictName(VerdictKind k) {
  switch (k) {
    case VerdictKind::kContinue:
      return "continue";
    case VerdictKind::kAccept:
      return "accept";
    case VerdictKind::kTempfail:
      return "tempfail";
    case VerdictKind::kReject:
      return "reject";
    case VerdictKind::kDisconnect:
      return "disconnect";
    case VerdictKind::kDiscard:
      return "discard";
  }
  return "unknown";
}

std::string_view reverseStatusName(ReverseStatus s) {
  switch (s) {
    case ReverseStatus::kNotLooked:
      return "not-looked-up";
    case ReverseStatus::kVerified:
      return "verified";
    case ReverseStatus::kMismatch:
      return "mismatch";
    case ReverseStatus::kNoPtr:
      return "no-ptr";
    case ReverseStatus::kTempFail:
      return "tempfail";
  }
  return "unknown";
}

Verdict Verdict::proceed() { return Verdict(VerdictKind::kContinue, std::nullopt, {}); }

Verdict Verdict::accept(std::string reason) {
  return Verdict(VerdictKind::kAccept, std::nullopt, std::move(reason));
}

Verdict Verdict::tempfail(Reply reply, std::string reason) {
  if (!reply.isTransient()) reply = Reply::transient(451, "4.7.1", reply.text());
  return Verdict(VerdictKind::kTempfail, std::move(reply), std::move(reason));
}

Verdict Verdict::reject(Reply reply, std::string reason) {
  if (!reply.isPermanent()) reply = Reply::permanent(550, "5.7.1", reply.text());
  return Verdict(VerdictKind::kReject, std::move(reply), std::move(reason));
}

Verdict Verdict::disconnect(Reply reply, std::string reason) {
  // RFC 5321 3.8 / 4.3.2: a server that closes says 421 (transient) or 554 (permanent).
  if (reply.isPermanent()) {
    reply = reply.withCode(554);
  } else if (reply.isTransient()) {
    reply = reply.withCode(421);
  } else {
    reply = Reply::transient(421, "4.7.0", reply.text());
  }
  return Verdict(VerdictKind::kDisconnect, std::move(reply), std::move(reason));
}

Verdict Verdict::discard(std::string reason) {
  return Verdict(VerdictKind::kDiscard, std::nullopt, std::move(reason));
}

Verdict& Verdict::addHeader(std::string name, std::string value) {
  headers_.push_back({std::move(name), std::move(value)});
  return *this;
}

Verdict Verdict::withReason(std::string reason) const {
  Verdict out = *this;
  out.reason_ = std::move(reason);
  return out;
}

Verdict& Verdict::removeHeader(std::string name, int occurrence) {
  edits_.push_back({HeaderEdit::Kind::kRemove, std::move(name), {}, occurrence});
  return *this;
}

Verdict& Verdict::replaceHeader(std::string name, std::string value) {
  edits_.push_back({HeaderEdit::Kind::kReplace, std::move(name), std::move(value), 0});
  return *this;
}

}  // namespace portcullis
