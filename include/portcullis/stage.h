#pragma once
// Stages of an SMTP session at which filters run (RFC 5321 4.3.2 sequences).
// A stage is where a verdict lands: a reject at kRcptTo is the reply to that RCPT.
// Pure data; no I/O. stageName() gives the stable lowercase name used in logs and config.

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>

namespace portcullis {

enum class Stage {
  kConnect,       // before the 220 greeting
  kHelo,          // EHLO/HELO
  kMailFrom,      // MAIL FROM
  kRcptTo,        // each RCPT TO
  kData,          // DATA, before the 354
  kEndOfHeaders,  // after end-of-data, header block parsed
  kEndOfMessage,  // after end-of-data, before the message goes upstream
};

inline constexpr std::size_t kStageCount = 7;

inline constexpr std::array<std::string_view, kStageCount> kStageNames = {
    "connect", "helo", "mail", "rcpt", "data", "end_of_headers", "end_of_message"};

constexpr std::string_view stageName(Stage s) { return kStageNames[static_cast<std::size_t>(s)]; }

constexpr std::optional<Stage> stageFromName(std::string_view name) {
  for (std::size_t i = 0; i < kStageCount; ++i) {
    if (kStageNames[i] == name) return static_cast<Stage>(i);
  }
  return std::nullopt;
}

}  // namespace portcullis
