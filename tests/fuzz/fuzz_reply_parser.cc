// Fuzz target: ReplyParser (upstream replies), the EHLO capability parser and the enhanced-code
// fill-in applied to relayed replies, Reply::parseNegative and sanitizeText.
// Input lines are separated by LF (a CR before it is dropped). Invariants: never crash; a kDone
// reply is valid (code 2xx-5xx with second digit <= 5, 1..64 lines, matching enhanced code), its
// wire form has CRLF-terminated lines of at most 512 octets and re-parses to the same reply;
// an error leaves the parser ready for the next reply; EHLO capabilities have non-empty
// upper-case keywords and space-free parameters; withEnhancedCode gives every 2xx/4xx/5xx reply
// an enhanced code of its own class and keeps code and text. (Reply::positive is left out: it has a
// known crash on 2xx/3xx codes with a second digit > 5, see tests/unit/reply_test.cc.)

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "portcullis/reply.h"
#include "proxy/smtp/ehlo.h"
#include "proxy/smtp/reply_parser.h"

namespace {

using portcullis::Reply;
using portcullis::ReplyParser;

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

bool legalCode(int code) { return code >= 200 && code <= 559 && (code / 10) % 10 <= 5; }

std::vector<std::string_view> wireLines(const std::string& wire) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  while (pos < wire.size()) {
    const auto eol = wire.find("\r\n", pos);
    require(eol != std::string::npos, "wire form without CRLF");
    require(eol - pos + 2 <= Reply::kMaxLineLength, "wire line over 512 octets");
    const std::string_view line = std::string_view(wire).substr(pos, eol - pos);
    require(line.find_first_of("\r\n") == std::string_view::npos, "bare CR/LF in wire form");
    out.push_back(line);
    pos = eol + 2;
  }
  return out;
}

void checkReply(const Reply& r) {
  require(legalCode(r.code()), "illegal code");
  require(!r.lines().empty() && r.lines().size() <= Reply::kMaxLines, "line count");
  if (!r.enhanced().empty()) {
    require(portcullis::isEnhancedStatusCode(r.enhanced()), "bad enhanced code");
    require(r.enhanced()[0] == static_cast<char>('0' + r.code() / 100), "enhanced class");
  }
  // The wire form re-parses to the same reply.
  const std::string wire = r.wire();
  const auto lines = wireLines(wire);
  require(lines.size() == r.lines().size(), "wire line count");
  ReplyParser p;
  ReplyParser::Status st = ReplyParser::Status::kNeedMore;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    st = p.feed(lines[i]);
    if (i + 1 < lines.size()) require(st == ReplyParser::Status::kNeedMore, "wire: early end");
  }
  require(st == ReplyParser::Status::kDone, "wire form does not re-parse");
  require(p.take() == r, "wire form re-parses to another reply");
}

void checkMtaReply(const Reply& r) {
  for (const auto& cap : portcullis::parseEhloCapabilities(r)) {
    require(!cap.keyword.empty(), "empty EHLO keyword");
    for (const char ch : cap.keyword) {
      require(ch != ' ' && !(ch >= 'a' && ch <= 'z'), "EHLO keyword not upper-case");
    }
    for (const auto& param : cap.params) {
      require(!param.empty() && param.find(' ') == std::string::npos, "bad EHLO parameter");
    }
  }
  (void)portcullis::UpstreamCapabilities::fromEhlo(portcullis::parseEhloCapabilities(r));
  const Reply e = portcullis::withEnhancedCode(r, "2.0.0");
  checkReply(e);
  require(e.code() == r.code(), "withEnhancedCode changed the code");
  if (r.code() / 100 != 3 && e.lines() == r.lines()) {
    require(!e.enhanced().empty(), "withEnhancedCode left a reply without an enhanced code");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  ReplyParser parser;
  std::size_t pos = 0;
  while (pos <= in.size()) {
    auto eol = in.find('\n', pos);
    if (eol == std::string_view::npos) eol = in.size();
    std::string_view line = in.substr(pos, eol - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = eol + 1;

    switch (parser.feed(line)) {
      case ReplyParser::Status::kNeedMore:
        require(parser.midReply(), "need-more outside a reply");
        break;
      case ReplyParser::Status::kDone: {
        require(!parser.midReply(), "done but mid-reply");
        const Reply r = parser.take();
        checkReply(r);
        checkMtaReply(r);
        break;
      }
      case ReplyParser::Status::kError:
        require(!parser.midReply(), "error but mid-reply");
        require(!parser.error().empty(), "error without a reason");
        break;
    }

    if (const auto neg = Reply::parseNegative(line)) {
      require(neg->isNegative(), "parseNegative gave a positive reply");
      checkReply(*neg);
    }
    // The forgiving constructors never fail, whatever the filter passes in.
    int code = 0;
    for (std::size_t i = 0; i < line.size() && i < 3; ++i) code = code * 10 + (line[i] & 0x0f);
    checkReply(Reply::transient(code, line.substr(0, 9), line));
    checkReply(Reply::permanent(code, line.substr(0, 9), line));

    for (const std::size_t max : {std::size_t{0}, std::size_t{7}, line.size() / 2, line.size()}) {
      const std::string s = portcullis::sanitizeText(line, max);
      require(s.size() <= max, "sanitizeText over max");
      for (const char ch : s) {
        const auto u = static_cast<unsigned char>(ch);
        require(u >= 0x20 && u != 0x7f, "sanitizeText left a control character");
      }
    }
  }
  return 0;
}
