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

// A set of stages (the hooks a filter overrides: Filter::hooks).
class StageSet {
 public:
  constexpr StageSet() = default;
  static constexpr StageSet all() { return StageSet((1U << kStageCount) - 1); }
  constexpr StageSet with(Stage s) const { return StageSet(bits_ | bit(s)); }
  constexpr bool has(Stage s) const { return (bits_ & bit(s)) != 0; }
  constexpr bool operator==(const StageSet&) const = default;

 private:
  constexpr explicit StageSet(unsigned bits) : bits_(bits) {}
  static constexpr unsigned bit(Stage s) { return 1U << static_cast<unsigned>(s); }
  unsigned bits_ = 0;
};

constexpr std::optional<Stage> stageFromName(std::string_view name) {
  for (std::size_t i = 0; i < kStageCount; ++i) {
    if (kStageNames[i] == name) return static_cast<Stage>(i);
  }
  return std::nullopt;
}

}  // namespace portcullis
