// Reply attribution, reject and transaction lines. See reply_log.h.

#include "proxy/relay/reply_log.h"

#include <algorithm>
#include <cctype>
#include <iterator>

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
  LogBuilder line;
  line.add("{} event={} from=", s.id, event).value(senderForLog(s.envelope));
  if (!to.empty()) line.add(" to=").value(to);
  line.add(" helo=").value(s.helo);
  line.add(" client={}[{}]:{}", s.client.name.empty() ? "unknown" : std::string_view(s.client.name),
           s.client.address, s.client.port);
  line.add(" stage={} code={} dsn={} filter=", stage, sent.code(),
           sent.enhanced().empty() ? "-" : sent.enhanced());
  line.value(source.by()).add(" reason=").value(reason, 512);
  if (!ref.empty()) line.add(" ref={}", ref);
  if (source.who != ReplySource::Who::kMta) line.add(" reply=").value(text, 512);
  line.log(spdlog::level::info);
}

void logTransaction(const SessionRecord& s, std::string_view sender, const TransactionLog& t) {
  if (!spdlog::should_log(spdlog::level::info)) return;
  LogBuilder::Buffer to;  // "<a>:250:mta,<b>:550:dnsbl", bounded
  std::size_t accepted = 0;
  for (const auto& r : t.recipients) {
    if (r.code >= 200 && r.code < 300) ++accepted;
    if (to.size() > kMaxAddressList) continue;
    fmt::format_to(std::back_inserter(to), "{}<{}>:{}:{}", to.size() == 0 ? "" : ",", r.address,
                   r.code, r.by);
  }
  const char* result = "aborted";
  if (t.endCode >= 200 && t.endCode < 300) {
    result = t.discarded ? "discarded" : "delivered";
  } else if (t.endCode >= 400) {
    result = "refused";
  } else if (accepted == 0) {
    result = "no-recipients";
  }
  LogBuilder line;
  line.add("{} event=transaction from=", s.id).value(sender);
  line.add(" rcpts={}/{} to=", accepted, t.recipients.size()).value(LogBuilder::view(to), 4096);
  line.add(" size={} result={}", s.message.size, result);
  if (t.endCode != 0) {
    line.add(" code={} by=", t.endCode).value(t.endBy);
    if (!t.queuedAs.empty()) line.add(" queued_as={}", t.queuedAs);
    line.add(" reply=").value(t.endReply, 512);
  }
  line.log(spdlog::level::info);
}

}  // namespace portcullis
