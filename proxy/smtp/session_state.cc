// RFC 5321 4.3.2 state machine: the command table and the transitions.

#include "proxy/smtp/session_state.h"

#include <array>

namespace portcullis {
namespace {

constexpr std::uint8_t kAfterGreeting = stateBit(SmtpState::kGreeted) |
                                        stateBit(SmtpState::kReady) | stateBit(SmtpState::kMail) |
                                        stateBit(SmtpState::kRcpt);
constexpr std::uint8_t kInTransaction = stateBit(SmtpState::kMail) | stateBit(SmtpState::kRcpt);

// The command table (OpenSMTPD style): verb, states it is allowed in, stage, implemented.
constexpr std::array<CommandRule, 19> kRules = {{
    {Verb::kEhlo, kAfterGreeting, Stage::kHelo, true},
    {Verb::kHelo, kAfterGreeting, Stage::kHelo, true},
    {Verb::kMail, stateBit(SmtpState::kReady), Stage::kMailFrom, true},
    {Verb::kRcpt, kInTransaction, Stage::kRcptTo, true},
    {Verb::kData, stateBit(SmtpState::kRcpt), Stage::kData, true},
    {Verb::kRset, kAfterGreeting, std::nullopt, true},
    {Verb::kNoop, kAfterGreeting, std::nullopt, true},
    {Verb::kQuit, kAfterGreeting, std::nullopt, true},
    {Verb::kVrfy, kAfterGreeting, std::nullopt, true},
    {Verb::kHelp, kAfterGreeting, std::nullopt, true},
    {Verb::kStartTls, kAfterGreeting, std::nullopt, true},
    // Not implemented: never advertised, never forwarded (DESIGN: strip what we don't do).
    {Verb::kExpn, kAfterGreeting, std::nullopt, false},
    {Verb::kAuth, kAfterGreeting, std::nullopt, false},
    {Verb::kBdat, kAfterGreeting, std::nullopt, false},
    {Verb::kEtrn, kAfterGreeting, std::nullopt, false},
    {Verb::kTurn, kAfterGreeting, std::nullopt, false},
    {Verb::kXclient, kAfterGreeting, std::nullopt, false},
    {Verb::kXforward, kAfterGreeting, std::nullopt, false},
    {Verb::kUnknown, 0, std::nullopt, false},
}};

Reply sequenceError(std::string_view text) {
  return *Reply::make(503, "5.5.1", {std::string(text)});
}

}  // namespace

std::string_view stateName(SmtpState s) {
  switch (s) {
    case SmtpState::kConnected:
      return "connect";
    case SmtpState::kGreeted:
      return "greeted";
    case SmtpState::kReady:
      return "helo";
    case SmtpState::kMail:
      return "mail";
    case SmtpState::kRcpt:
      return "rcpt";
    case SmtpState::kData:
      return "data";
    case SmtpState::kClosed:
      return "closed";
  }
  return "unknown";
}

const CommandRule& commandRule(Verb verb) {
  for (const auto& r : kRules) {
    if (r.verb == verb) return r;
  }
  return kRules.back();
}

std::optional<Reply> checkSequence(SmtpState state, Verb verb) {
  const CommandRule& rule = commandRule(verb);
  if (rule.verb == Verb::kUnknown) {
    return *Reply::make(500, "5.5.2", {"Error: command not recognized"});
  }
  if (!rule.implemented) return *Reply::make(502, "5.5.1", {"Error: command not implemented"});
  if (rule.allowed & stateBit(state)) return std::nullopt;
  switch (verb) {
    case Verb::kMail:
      return state == SmtpState::kGreeted ? sequenceError("Error: send HELO/EHLO first")
                                          : sequenceError("Error: nested MAIL command");
    case Verb::kRcpt:
      return state == SmtpState::kGreeted ? sequenceError("Error: send HELO/EHLO first")
                                          : sequenceError("Error: need MAIL command");
    case Verb::kData:
      if (state == SmtpState::kMail) return sequenceError("Error: no valid recipients");
      if (state == SmtpState::kGreeted) return sequenceError("Error: send HELO/EHLO first");
      return sequenceError("Error: need RCPT command");
    default:
      return sequenceError("Error: bad sequence of commands");
  }
}

SmtpState nextState(SmtpState state, Verb verb, int code) {
  if (code == 421) return SmtpState::kClosed;  // RFC 5321 3.8: the server closes
  const bool ok = code >= 200 && code < 300;
  switch (verb) {
    case Verb::kEhlo:
    case Verb::kHelo:
      return ok ? SmtpState::kReady : state;
    case Verb::kMail:
      return ok ? SmtpState::kMail : state;
    case Verb::kRcpt:
      return ok ? SmtpState::kRcpt : state;
    case Verb::kData:
      return code == 354 ? SmtpState::kData : state;
    case Verb::kRset:
      return (ok && state != SmtpState::kGreeted) ? SmtpState::kReady : state;
    case Verb::kQuit:
      return code == 221 ? SmtpState::kClosed : state;
    case Verb::kStartTls:
      // RFC 3207 4.2: after the handshake the client must start over with EHLO.
      return code == 220 ? SmtpState::kGreeted : state;
    default:
      return state;
  }
}

SmtpState nextStateAfterData(SmtpState state, int code) {
  if (code == 421) return SmtpState::kClosed;
  return state == SmtpState::kData ? SmtpState::kReady : state;
}

}  // namespace portcullis
