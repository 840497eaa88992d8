// SessionSummary: the transcript and the closing event=session line.

#include "proxy/relay/session_summary.h"

#include <charconv>

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
  std::string commands;
  for (const auto& t : transcript_) commands += (commands.empty() ? "" : ",") + t;
  if (transcriptDropped_) commands += ",+" + std::to_string(transcriptDropped_);
  std::string decided;
  for (const auto& v : verdicts) {
    decided += (decided.empty() ? "" : ";") + v.filter + "@" + std::string(stageName(v.stage)) +
               ":" + std::string(verdictName(v.kind));
    if (v.code) decided += ":" + std::to_string(v.code);
    if (v.observed) decided += "(observe)";
    if (v.deferred) decided += "(deferred)";
    if (v.error) decided += "(error)";
    // The reason too: from this line alone an admin sees what decided, where and why.
    if (!v.reason.empty()) {
      decided += "[" + (v.reason.size() > 160 ? v.reason.substr(0, 157) + "..." : v.reason) + "]";
    }
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - started_).count();
  const std::string name = view.client.name.empty() ? "unknown" : view.client.name;
  spdlog::info(
      "{} event=session client={}[{}]:{} helo={} tls={}{} stage={} commands={} messages={} "
      "closed_by={} quit={} duration={}.{:03d}s{}{}{}{}{}",
      view.id, name, view.client.address, view.client.port, logValue(view.helo),
      view.tls.active ? view.tls.protocol : "no",
      view.tls.active ? " tls_cipher=" + view.tls.cipher : "", stateName(furthest_),
      logValue(commands, 2048), delivered_, closedBy_ == ClosedBy::kClient ? "client" : "server",
      quit_ ? "yes" : "no", ms / 1000, static_cast<int>(ms % 1000),
      sender_.empty() ? ""
                      : " from=" + logValue(sender_) + " rcpts=" + std::to_string(accepted_) + "/" +
                            std::to_string(given_),
      queuedAs_.empty() ? "" : " queued_as=" + queuedAs_,
      decided.empty() ? "" : " verdicts=" + logValue(decided, 2048),
      reason_.empty() ? "" : " reason=" + logValue(reason_),
      lastReply_.empty() ? "" : " last_reply=" + logValue(lastReply_));
}

}  // namespace portcullis
