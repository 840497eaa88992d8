// SessionSummary: the transcript and the closing event=session line.

#include "proxy/relay/session_summary.h"

#include <charconv>
#include <iterator>

#include "proxy/base/log.h"

namespace portcullis {
namespace {

constexpr std::size_t kMaxTranscript = 64;

// Reply::summary() ("550 5.7.1 text | second line") written over `out`, reusing its buffer:
// a session's replies are short, so after the greeting they cost no allocation.
void assignSummary(std::string& out, const Reply& r) {
  out.clear();
  if (out.capacity() < 128) out.reserve(128);  // the EHLO reply's summary fits: one allocation
  char code[3];
  std::to_chars(code, code + sizeof code, r.code());  // a Reply's code has three digits
  out.append(code, sizeof code);
  if (!r.enhanced().empty()) {
    out += ' ';
    out += r.enhanced();
  }
  for (std::size_t i = 0; i < r.lines().size(); ++i) {
    out += i == 0 ? " " : " | ";
    out += r.lines()[i];
  }
}

}  // namespace

void SessionSummary::reply(std::string_view verb, const Reply& r) {
  if (transcript_.size() < kMaxTranscript) {
    if (transcript_.empty()) transcript_.reserve(16);  // a whole ordinary session, one allocation
    std::string& t = transcript_.emplace_back(verb);
    t += ':';
    t += std::to_string(r.code());
  } else {
    ++transcriptDropped_;
  }
  assignSummary(lastReply_, r);
  lastVerb_ = verb;
}

void SessionSummary::transaction(std::string sender, std::size_t accepted, std::size_t given,
                                 const std::string& queuedAs) {
  sender_ = std::move(sender);
  accepted_ = accepted;
  given_ = given;
  if (!queuedAs.empty() && queuedAs_.size() < 1024) {
    queuedAs_ += (queuedAs_.empty() ? "" : ",") + queuedAs;
  }
}

void SessionSummary::reached(SmtpState s) {
  if (s != SmtpState::kClosed && static_cast<int>(s) > static_cast<int>(furthest_)) furthest_ = s;
}

void SessionSummary::log(const SessionRecord& view, const std::vector<VerdictRecord>& verdicts,
                         Dispatcher::Clock::time_point now) const {
  if (!spdlog::should_log(spdlog::level::info)) return;
  const auto out = [](LogBuilder::Buffer& b) { return std::back_inserter(b); };
  LogBuilder::Buffer commands;
  for (const auto& t : transcript_) {
    fmt::format_to(out(commands), "{}{}", commands.size() ? "," : "", t);
  }
  if (transcriptDropped_) fmt::format_to(out(commands), ",+{}", transcriptDropped_);
  LogBuilder::Buffer decided;
  for (const auto& v : verdicts) {
    fmt::format_to(out(decided), "{}{}@{}:{}", decided.size() ? ";" : "", v.filter,
                   stageName(v.stage), verdictName(v.kind));
    if (v.code) fmt::format_to(out(decided), ":{}", v.code);
    if (v.observed) fmt::format_to(out(decided), "(observe)");
    if (v.deferred) fmt::format_to(out(decided), "(deferred)");
    if (v.error) fmt::format_to(out(decided), "(error)");
    // The reason too: from this line alone an admin sees what decided, where and why.
    if (!v.reason.empty()) {
      const std::string_view reason = v.reason;
      fmt::format_to(out(decided), "[{}{}]", reason.substr(0, reason.size() > 160 ? 157 : 160),
                     reason.size() > 160 ? "..." : "");
    }
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - started_).count();
  LogBuilder line;
  line.add("{} event=session client={}[{}]:{} helo=", view.id,
           view.client.name.empty() ? "unknown" : std::string_view(view.client.name),
           view.client.address, view.client.port);
  line.value(view.helo);
  line.add(" tls={}", view.tls.active ? std::string_view(view.tls.protocol) : "no");
  if (view.tls.active) line.add(" tls_cipher={}", view.tls.cipher);
  line.add(" stage={} commands=", stateName(furthest_)).value(LogBuilder::view(commands), 2048);
  line.add(" messages={} closed_by={} quit={} duration={}.{:03d}s", delivered_,
           closedBy_ == ClosedBy::kClient ? "client" : "server", quit_ ? "yes" : "no", ms / 1000,
           static_cast<int>(ms % 1000));
  if (!sender_.empty()) {
    line.add(" from=").value(sender_).add(" rcpts={}/{}", accepted_, given_);
  }
  if (!queuedAs_.empty()) line.add(" queued_as={}", queuedAs_);
  if (decided.size()) line.add(" verdicts=").value(LogBuilder::view(decided), 2048);
  if (!reason_.empty()) line.add(" reason=").value(reason_);
  if (!lastReply_.empty()) line.add(" last_reply=").value(lastReply_);
  line.log(spdlog::level::info);
}

}  // namespace portcullis
