// Logging helpers. See log.h.

#include "proxy/base/log.h"

#include <openssl/rand.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <random>

namespace portcullis {

void setupLogging(const std::string& level) {
  auto logger = spdlog::stderr_logger_mt("portcullis");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

std::string logValue(std::string_view value, std::size_t maxLen) {
  bool simple = !value.empty();
  for (const char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || c == '=') {
      simple = false;
      break;
    }
  }
  if (simple && value.size() <= maxLen) return std::string(value);
  std::string out = "\"";
  static constexpr char kHex[] = "0123456789abcdef";
  std::size_t n = 0;
  for (const char ch : value) {
    if (++n > maxLen) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
  return out;
}

std::string newSessionId() {
  // Unique, not secret: a per-process generator seeded once from the CSPRNG.
  static std::mt19937_64 generator = [] {
    std::uint64_t seed = 0;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&seed), sizeof seed) != 1) {
      seed = std::random_device{}();
    }
    return std::mt19937_64(seed);
  }();
  const std::uint64_t v = generator();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(12, '0');
  for (int i = 0; i < 12; ++i) id[static_cast<std::size_t>(i)] = kHex[(v >> (4 * i)) & 15];
  return id;
}

}  // namespace portcullis
