#pragma once
// The RFC 5321 4.3.2 session state machine, as pure functions of (state, command, reply code).
// The session calls checkSequence() before acting on a command and nextState() with the reply
// it sent; Session::enterState() is the only place the state actually changes (and logs it).
// Table-tested against every command-reply sequence of RFC 5321 4.3.2.

#include <cstdint>
#include <optional>
#include <string_view>

#include "portcullis/reply.h"
#include "portcullis/stage.h"
#include "proxy/smtp/smtp_parser.h"

namespace portcullis {

enum class SmtpState : std::uint8_t {
  kConnected,  // accepted; greeting not sent yet (connect stage running)
  kGreeted,    // 220 sent; EHLO/HELO required
  kReady,      // after EHLO/HELO; no transaction
  kMail,       // MAIL accepted; no recipient yet
  kRcpt,       // at least one RCPT accepted
  kData,       // 354 sent; receiving the message
  kClosed,     // QUIT answered or 421 sent
};

std::string_view stateName(SmtpState s);

// One row of the command table: where a command may appear and which filter stage it runs.
struct CommandRule {
  Verb verb;
  std::uint8_t allowed;        // bit mask of SmtpState values
  std::optional<Stage> stage;  // the filter stage this command runs, if any
  bool implemented;            // false -> 502 5.5.1 whatever the state
};

const CommandRule& commandRule(Verb verb);

// nullopt when the command is allowed in `state`; otherwise the reply (503 5.5.1 mostly).
std::optional<Reply> checkSequence(SmtpState state, Verb verb);

// The state after replying `code` to `verb` in `state` (RFC 5321 4.3.2, 4.1.1.5 for RSET,
// 4.1.4 for EHLO resetting a transaction, 3.8 for 421).
SmtpState nextState(SmtpState state, Verb verb, int code);
// The state after the final reply to the end of data.
SmtpState nextStateAfterData(SmtpState state, int code);

constexpr std::uint8_t stateBit(SmtpState s) {
  return static_cast<std::uint8_t>(1u << static_cast<unsigned>(s));
}

}  // namespace portcullis
