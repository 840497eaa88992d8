// Reply attribution, reject and transaction lines. See reply_log.h.

#include "proxy/relay/reply_log.h"

#include <algorithm>
#include <cctype>

#include "proxy/base/log.h"

namespace portcullis {
namespace {

constexpr std::size_t kMaxQueueId = 64;
constexpr std::size_t kMaxAddressList = 2048;

std::string lower(std::string_view s) {
  std::string out(s);
  std::ranges::transform(out, out.begin(),
                         [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string token(std::string_view s) {
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (!(std::isalnum(u) || c == '.' || c == '_' || c == '-') || out.size() >= kMaxQueueId) {
      break;
    }
    out += c;
  }
  while (!out.empty() && out.back() == '.') out.pop_back();  // "queued as X." ends a sentence
  return out;
}

std::string client(const SessionRecord& s) {
  return (s.client.name.empty() ? std::string("unknown") : s.client.name) + "[" + s.client.address +
         "]:" + std::to_string(s.client.port);
}

// The accepted recipients, "<a>,<b>", bounded.
std::string acceptedRecipients(const Envelope& e) {
  std::string out;
  for (const auto& r : e.recipients) {
    if (out.size() > kMaxAddressList) {
      out += ",...";
      break;
    }
    out += (out.empty() ? "<" : ",<") + r + ">";
  }
  return out;
}

// The text of a reply without its codes (code= and dsn= have them), lines joined with " / ":
// "<x@y>: Recipient address rejected: User unknown".
std::string replyText(const Reply& r) {
  std::string out;
  for (std::size_t i = 0; i < r.lines().size(); ++i) {
    if (i > 0) out += " / ";
    out += r.lines()[i];
  }
  return out;
}

}  // namespace

std::string_view ReplySource::by() const {
  switch (who) {
    case Who::kMta:
      return "mta";
    case Who::kFilter:
      return filter;
    case Who::kPortcullis:
      break;
  }
  return "portcullis";
}

std::string rejectStage(std::string_view verb) {
  if (verb == "CONNECT") return "connect";
  if (verb == "EHLO" || verb == "HELO") return "helo";
  if (verb == "MAIL") return "mail";
  if (verb == "RCPT") return "rcpt";
  if (verb == "DATA" || verb == "DATA-TIMEOUT" || verb == "DATA-RATE") return "data";
  if (verb == ".") return "end_of_message";
  return lower(verb);
}

Reply withReference(const Reply& r, std::string_view ref) {
  std::vector<std::string> lines = r.lines();
  const std::string suffix = " [ref=" + std::string(ref) + "]";
  std::string& last = lines.back();
  // The whole line fits in 512 octets (RFC 5321 4.5.3.1.5): code, enhanced code, text, CRLF.
  const std::size_t room = Reply::kMaxLineLength - 4 - (r.enhanced().size() + 1) - 2;
  if (last.size() + suffix.size() > room) last.resize(room - suffix.size());
  last += suffix;
  if (auto out = Reply::make(r.code(), r.enhanced(), std::move(lines))) return *out;
  return r;  // unreachable: the text was valid and stays so
}

std::string queueIdFromReply(const Reply& r) {
  for (const auto& line : r.lines()) {
    const std::string l = lower(line);
    if (const auto p = l.find("queued as "); p != std::string::npos) {
      return token(std::string_view(line).substr(p + 10));
    }
    if (const auto p = l.find("id="); p != std::string::npos && (p == 0 || l[p - 1] == ' ')) {
      return token(std::string_view(line).substr(p + 3));
    }
  }
  return "";
}

std::string senderForLog(const Envelope& e) {
  if (e.nullSender) return "<>";
  if (e.mailFrom.empty()) return "";
  return "<" + e.mailFrom + ">";
}

void logReject(const SessionRecord& s, const Reply& sent, std::string_view verb,
               const ReplySource& source, std::string_view ref, std::string_view event) {
  if (!spdlog::should_log(spdlog::level::info)) return;
  const std::string stage = rejectStage(verb);
  std::string to;
  if (!source.recipient.empty()) {
    to = "<" + std::string(source.recipient) + ">";
  } else if (stage == "data" || stage == "end_of_message") {
    to = acceptedRecipients(s.envelope);
  }
  const std::string text = replyText(sent);
  std::string_view reason = source.reason;
  if (source.who == ReplySource::Who::kMta || reason.empty()) {
    reason = text;  // the reply says why; without the reference, which has its own key
    if (!ref.empty() && reason.ends_with("]")) reason = reason.substr(0, reason.rfind(" [ref="));
  }
  spdlog::info(
      "{} event={} from={}{} helo={} client={} stage={} code={} dsn={} filter={} "
      "reason={}{}{}",
      s.id, event, logValue(senderForLog(s.envelope)), to.empty() ? "" : " to=" + logValue(to),
      logValue(s.helo), client(s), stage, sent.code(),
      sent.enhanced().empty() ? "-" : sent.enhanced(), logValue(source.by()), logValue(reason, 512),
      ref.empty() ? "" : " ref=" + std::string(ref),
      source.who == ReplySource::Who::kMta ? "" : " reply=" + logValue(text, 512));
}

void logTransaction(const SessionRecord& s, const std::string& sender, const TransactionLog& t) {
  if (!spdlog::should_log(spdlog::level::info)) return;
  std::string to;
  std::size_t accepted = 0;
  for (const auto& r : t.recipients) {
    if (r.code >= 200 && r.code < 300) ++accepted;
    if (to.size() > kMaxAddressList) continue;
    to += (to.empty() ? "<" : ",<") + r.address + ">:" + std::to_string(r.code) + ":" + r.by;
  }
  const char* result = "aborted";
  if (t.endCode >= 200 && t.endCode < 300) {
    result = t.discarded ? "discarded" : "delivered";
  } else if (t.endCode >= 400) {
    result = "refused";
  } else if (accepted == 0) {
    result = "no-recipients";
  }
  std::string end;
  if (t.endCode != 0) {
    end = " code=" + std::to_string(t.endCode) + " by=" + logValue(t.endBy);
    if (!t.queuedAs.empty()) end += " queued_as=" + t.queuedAs;
    end += " reply=" + logValue(t.endReply, 512);
  }
  spdlog::info("{} event=transaction from={} rcpts={}/{} to={} size={} result={}{}", s.id,
               logValue(sender), accepted, t.recipients.size(), logValue(to, 4096), s.message.size,
               result, end);
}

}  // namespace portcullis
