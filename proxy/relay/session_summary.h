#pragma once
// SessionSummary: what one session's closing log line says, gathered as the session goes: the
// command:reply transcript, the furthest SMTP state reached, messages delivered, who closed
// and why, the last reply. One `event=session` line at close tells where in the SMTP sequence
// the session ended and which filter decided what.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "portcullis/reply.h"
#include "proxy/api/session_record.h"
#include "proxy/base/dispatcher.h"
#include "proxy/chain/filter_chain.h"
#include "proxy/smtp/session_state.h"

namespace portcullis {

class SessionSummary {
 public:
  enum class ClosedBy { kClient, kServer };

  explicit SessionSummary(Dispatcher::Clock::time_point started) : started_(started) {}

  void reply(std::string_view verb, const Reply& r);
  void reached(SmtpState s);
  void delivered() { ++delivered_; }
  void quit() { quit_ = true; }
  void closed(ClosedBy who, std::string reason) {
    closedBy_ = who;
    reason_ = std::move(reason);
  }
  void reason(std::string reason) { reason_ = std::move(reason); }

  // Records what the last transaction's envelope was, for the session line.
  void transaction(std::string sender, std::size_t accepted, std::size_t given,
                   const std::string& queuedAs);

  bool quitSeen() const { return quit_; }
  ClosedBy closedBy() const { return closedBy_; }
  // The command the last reply answered ("CONNECT" before any).
  std::string_view lastVerb() const { return lastVerb_; }
  const std::string& lastReply() const { return lastReply_; }

  // The event=session line (info level).
  void log(const SessionRecord& view, const std::vector<VerdictRecord>& verdicts,
           Dispatcher::Clock::time_point now) const;

 private:
  Dispatcher::Clock::time_point started_;
  std::vector<std::string> transcript_;
  std::size_t transcriptDropped_ = 0;
  SmtpState furthest_ = SmtpState::kConnected;
  std::uint32_t delivered_ = 0;
  ClosedBy closedBy_ = ClosedBy::kServer;
  bool quit_ = false;
  std::string reason_;
  std::string lastReply_;
  std::string lastVerb_ = "CONNECT";
  std::string sender_;  // the last transaction's, "" if none
  std::size_t accepted_ = 0;
  std::size_t given_ = 0;
  std::string queuedAs_;  // every queue id the MTA gave, comma-separated
};

}  // namespace portcullis
