// Fuzz target: DataFramer. The first two octets choose a split point, the next two the size
// limit, the fifth the line limit (0: none); the rest is DATA input. Invariants: never crash;
// split and unsplit runs give identical results; the end of data is only ever <CRLF>.<CRLF>
// (or "." CRLF at the very start); bytes after it are not consumed; the sink never holds a bare
// CR or LF (beyond a CR cut off exactly at the size limit) nor more than the limit; for clean
// input the line flag is set exactly when an unstuffed line exceeds the line limit, and the
// dot-led flag exactly when an unstuffed line begins with a dot; a clean message survives
// DotStuffer and back.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "proxy/smtp/data_framer.h"

namespace {

using portcullis::DataFramer;

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

class StringSink final : public portcullis::ByteSink {
 public:
  void append(const char* data, std::size_t n) override { out.append(data, n); }
  std::string out;
};

struct Outcome {
  bool ended = false;
  std::size_t consumed = 0;
  std::string output;
  std::uint64_t size = 0;
  bool oversized = false;
  bool bareCr = false;
  bool bareLf = false;
  bool lineTooLong = false;
  bool dotLedLine = false;
  bool operator==(const Outcome&) const = default;
};

Outcome run(std::string_view in, std::uint64_t max, std::size_t cut, std::uint64_t maxLine) {
  DataFramer f(max, maxLine);
  StringSink sink;
  Outcome o;
  const auto first = f.feed(in.substr(0, cut), sink);
  require(first.consumed <= cut, "consumed more than given");
  if (first.ended) {
    o.ended = true;
    o.consumed = first.consumed;
  } else {
    require(first.consumed == cut, "did not consume a chunk without the end");
    const auto second = f.feed(in.substr(cut), sink);
    require(second.consumed <= in.size() - cut, "consumed more than given");
    o.ended = second.ended;
    o.consumed = cut + second.consumed;
    if (!second.ended) require(o.consumed == in.size(), "did not consume everything");
  }
  o.output = std::move(sink.out);
  o.size = f.size();
  o.oversized = f.oversized();
  o.bareCr = f.bareCr();
  o.bareLf = f.bareLf();
  o.lineTooLong = f.lineTooLong();
  o.dotLedLine = f.dotLedLine();
  return o;
}

// The longest line of clean (no bare CR or LF) framer input, as RFC 5321 4.5.3.1.6 counts it:
// without the CRLF and without a leading (stuffing) dot. An unfinished last line counts what
// the framer has seen of it: a trailing CR may still be the start of a CRLF.
std::size_t longestLine(std::string_view used) {
  std::size_t longest = 0;
  std::size_t start = 0;
  while (start < used.size()) {
    const std::size_t end = used.find("\r\n", start);
    std::string_view line = used.substr(start, end == std::string_view::npos ? end : end - start);
    if (end == std::string_view::npos && !line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (!line.empty() && line.front() == '.') line.remove_prefix(1);
    if (line.size() > longest) longest = line.size();
    if (end == std::string_view::npos) break;
    start = end + 2;
  }
  return longest;
}

bool hasDotLedLine(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '.' && (i == 0 || s[i - 1] == '\n')) return true;
  }
  return false;
}

bool hasBareCrOrLf(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && (i + 1 >= s.size() || s[i + 1] != '\n')) return true;
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 5) return 0;
  const std::size_t cutSeed = (std::size_t{data[0]} << 8) | data[1];
  const std::uint64_t max = (std::uint64_t{data[2]} << 8) | data[3];
  const std::uint64_t maxLine = data[4];
  const std::string_view in(reinterpret_cast<const char*>(data) + 5, size - 5);
  const std::size_t cut = cutSeed % (in.size() + 1);

  const Outcome whole = run(in, max, in.size(), maxLine);
  const Outcome split = run(in, max, cut, maxLine);
  require(whole == split, "the result depends on where the input was split");

  require(whole.output.size() <= max, "sink holds more than the size limit");
  require(whole.oversized == (whole.size > max), "oversized flag");
  std::string_view out = whole.output;
  if (whole.oversized && out.size() == max && !out.empty() && out.back() == '\r') {
    out.remove_suffix(1);  // the limit may cut a CRLF in half; the message is rejected anyway
  }
  require(!hasBareCrOrLf(out), "the sink got a bare CR or LF");

  if (!whole.bareCr && !whole.bareLf) {
    const std::size_t longest = longestLine(in.substr(0, whole.consumed));
    require(whole.lineTooLong == (maxLine != 0 && longest > maxLine), "line limit flag");
  }
  if (maxLine == 0) require(!whole.lineTooLong, "line limit 0 is no limit");
  // Upstream sends the spool unstuffed when no line is dot-led: the flag must not miss one.
  if (!whole.bareCr && !whole.bareLf && !whole.oversized) {
    require(whole.dotLedLine == hasDotLedLine(whole.output), "dot-led line flag");
  }

  if (whole.ended) {
    const std::string_view used = in.substr(0, whole.consumed);
    require(used.size() >= 3 && used.substr(used.size() - 3) == ".\r\n", "end without dot CRLF");
    require(used.size() == 3 || (used.size() >= 5 && used.substr(used.size() - 5, 2) == "\r\n"),
            "end of data not preceded by CRLF");
  } else {
    require(whole.consumed == in.size(), "not ended but not everything consumed");
  }

  // A clean, complete message round-trips through DotStuffer and the framer.
  if (whole.ended && !whole.oversized && !whole.bareCr && !whole.bareLf &&
      (whole.output.empty() || whole.output.size() >= 2) &&
      (whole.output.empty() || whole.output.substr(whole.output.size() - 2) == "\r\n")) {
    std::string wire;
    portcullis::DotStuffer stuffer;
    stuffer.stuff(whole.output, [&](std::string_view piece) { wire.append(piece); });
    wire += ".\r\n";
    const Outcome again = run(wire, max, wire.size() / 2, maxLine);
    require(again.ended && again.consumed == wire.size(), "re-stuffed message did not end");
    require(again.output == whole.output, "unstuff(stuff(x)) != x");
    require(again.lineTooLong == whole.lineTooLong, "stuffing changed the line count");
  }
  return 0;
}
