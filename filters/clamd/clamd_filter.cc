// clamd filter. See clamd_filter.h.

#include "filters/clamd/clamd_filter.h"

#include <memory>

#include "portcullis/log.h"

namespace portcullis {
namespace {

// A clamd reply is one short line; anything longer is not clamd talking.
constexpr std::size_t kMaxClamdReply = 1024;
constexpr std::string_view kStreamPrefix = "stream: ";
constexpr std::string_view kFoundSuffix = " FOUND";
constexpr std::string_view kErrorSuffix = " ERROR";
constexpr std::string_view kSizeLimit = "INSTREAM size limit exceeded.";

}  // namespace

ClamdReply parseClamdReply(std::string_view reply, bool closed) {
  // The z-prefixed command makes clamd end its reply with a NUL; a newline is accepted too
  // (an n-prefixed command), and so is a line cut short by the close.
  const std::size_t end = reply.find_first_of(std::string_view("\0\n", 2));
  if (end == std::string_view::npos) {
    if (!closed) return {};
    if (reply.empty()) return {ClamdReply::Kind::kError, "empty reply"};
  }
  std::string_view line = reply.substr(0, end);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line == "stream: OK") return {ClamdReply::Kind::kClean, {}};
  // (The length check first: in "stream: FOUND" the prefix and the suffix share the space.)
  if (line.size() > kStreamPrefix.size() + kFoundSuffix.size() && line.starts_with(kStreamPrefix) &&
      line.ends_with(kFoundSuffix)) {
    const std::string_view name =
        line.substr(kStreamPrefix.size(), line.size() - kStreamPrefix.size() - kFoundSuffix.size());
    std::string clean = sanitizeScannerText(name);
    if (!clean.empty()) return {ClamdReply::Kind::kFound, std::move(clean)};
  }
  if (line.starts_with(kSizeLimit)) {
    return {ClamdReply::Kind::kError, "INSTREAM size limit exceeded"};
  }
  if (line.ends_with(kErrorSuffix)) {
    std::string text = sanitizeScannerText(line.substr(0, line.size() - kErrorSuffix.size()));
    return {ClamdReply::Kind::kError, "clamd error: " + text};
  }
  return {ClamdReply::Kind::kError, "unexpected reply " + logQuote(line, 80)};
}

void frameClamdChunk(std::string_view chunk, std::string& out) {
  // clamd(8) INSTREAM: "<length><data>" where <length> is an unsigned 32-bit integer in
  // network byte order.
  const auto n = static_cast<std::uint32_t>(chunk.size());
  out.push_back(static_cast<char>((n >> 24) & 0xff));
  out.push_back(static_cast<char>((n >> 16) & 0xff));
  out.push_back(static_cast<char>((n >> 8) & 0xff));
  out.push_back(static_cast<char>(n & 0xff));
  out.append(chunk);
}

std::string ClamdProtocol::request(const SessionView&, std::uint64_t) const {
  return std::string("zINSTREAM\0", 10);
}

std::string ClamdProtocol::trailer() const { return std::string(4, '\0'); }

std::optional<bool> ClamdProtocol::parseProbeReply(std::string_view reply, bool closed) const {
  const std::size_t nul = reply.find('\0');
  if (nul == std::string_view::npos) {
    if (!closed && reply.size() < 64) return std::nullopt;
    return false;
  }
  return reply.substr(0, nul) == "PONG";
}

std::size_t ClamdProtocol::maxReply() const { return kMaxClamdReply; }

ScanResult ClamdProtocol::parseReply(std::string_view reply, bool closed) const {
  ClamdReply r = parseClamdReply(reply, closed);
  switch (r.kind) {
    case ClamdReply::Kind::kIncomplete:
      return {};
    case ClamdReply::Kind::kClean:
      return {ScanResult::Kind::kDone, Verdict::proceed(), "scan=clean", {}};
    case ClamdReply::Kind::kFound:
      // The client gets a short text; the virus name goes to the log (the reject line).
      return {ScanResult::Kind::kDone,
              Verdict::reject(Reply::permanent(554, "5.7.1", "Message rejected: virus found"),
                              "virus=" + logQuote(r.text)),
              "scan=found virus=" + logQuote(r.text),
              {}};
    case ClamdReply::Kind::kError:
      break;
  }
  return {ScanResult::Kind::kError, std::nullopt, {}, std::move(r.text)};
}

FilterCreator ClamdFilterFactory::configure(const ConfigSection& section) const {
  auto config = std::make_shared<const ScannerConfig>(
      parseScannerConfig(section, "unix:/run/clamav/clamd.ctl"));
  return makeScannerCreator(config, std::make_shared<const ClamdProtocol>());
}

}  // namespace portcullis
