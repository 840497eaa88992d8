#pragma once
// Logging: spdlog set-up and the key=value helpers every log line uses. One line per event,
// session id first: "a3f9c2d1e0b4 event=reject stage=rcpt filter=dnsbl code=554 reason=\"...\"".
// Message bodies and AUTH payloads are never logged. Values are quoted and sanitised so that a
// hostile HELO cannot forge log lines.

#include <spdlog/spdlog.h>

#include <string>
#include <string_view>

namespace portcullis {

// Configures the default logger (stderr, ISO timestamps). level: trace..off.
void setupLogging(const std::string& level);

// A value for key=value: bare when it is a simple token, otherwise double-quoted with
// backslash escapes; control characters become \xHH. Bounded to maxLen octets.
std::string logValue(std::string_view value, std::size_t maxLen = 256);

// A random 12-hex-digit session id.
std::string newSessionId();

}  // namespace portcullis
