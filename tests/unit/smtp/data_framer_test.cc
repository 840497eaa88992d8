// DataFramer and DotStuffer (RFC 5321 4.1.1.4, 4.5.2; DESIGN invariant 1). Every framing case
// is run unsplit and again split at every possible boundary: the result must never depend on
// how the bytes arrived. Bare CR / bare LF never end the data and poison the message.

#include "proxy/smtp/data_framer.h"

#include <gtest/gtest.h>

#include "tests/support/test_text.h"

#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis {
namespace {

using testing::escape;

class StringSink final : public ByteSink {
 public:
  void append(const char* data, std::size_t n) override { out.append(data, n); }
  std::string out;
};

struct Outcome {
  bool ended = false;
  std::size_t consumed = 0;  // total input octets used
  std::string output;
  std::uint64_t size = 0;
  bool oversized = false;
  bool bareCr = false;
  bool bareLf = false;
  bool lineTooLong = false;
  bool dotLedLine = false;
  bool operator==(const Outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  return os << "{ended=" << o.ended << " consumed=" << o.consumed << " output=" << escape(o.output)
            << " size=" << o.size << " oversized=" << o.oversized << " bareCr=" << o.bareCr
            << " bareLf=" << o.bareLf << " lineTooLong=" << o.lineTooLong
            << " dotLedLine=" << o.dotLedLine << "}";
}

// Feeds `input` cut at the offsets in `cuts` (ascending), as the session does: stop at the end
// of data, and never feed again what was not consumed.
Outcome run(std::string_view input, std::uint64_t maxSize, const std::vector<std::size_t>& cuts,
            std::uint64_t maxLine = 0) {
  DataFramer f(maxSize, maxLine);
  StringSink sink;
  Outcome o;
  std::size_t start = 0;
  std::vector<std::size_t> ends = cuts;
  ends.push_back(input.size());
  for (const std::size_t end : ends) {
    if (end < start) continue;
    const auto r = f.feed(input.substr(start, end - start), sink);
    EXPECT_LE(r.consumed, end - start) << "consumed more than it was given";
    if (r.ended) {
      o.ended = true;
      o.consumed = start + r.consumed;
      break;
    }
    EXPECT_EQ(r.consumed, end - start) << "without the end of data every octet is consumed";
    start = end;
    o.consumed = start;
  }
  o.output = sink.out;
  o.size = f.size();
  o.oversized = f.oversized();
  o.bareCr = f.bareCr();
  o.bareLf = f.bareLf();
  o.lineTooLong = f.lineTooLong();
  o.dotLedLine = f.dotLedLine();
  return o;
}

Outcome run(std::string_view input, std::uint64_t maxSize = 1 << 20) {
  return run(input, maxSize, {});
}

// Every split into chunks of 1..4 octets, every single cut, and every pair of cuts for short
// inputs: all must give the unsplit outcome.
void expectSplitInvariant(std::string_view input, std::uint64_t maxSize, const Outcome& want,
                          std::uint64_t maxLine = 0) {
  for (std::size_t chunk = 1; chunk <= 4; ++chunk) {
    std::vector<std::size_t> cuts;
    for (std::size_t at = chunk; at < input.size(); at += chunk) cuts.push_back(at);
    const Outcome got = run(input, maxSize, cuts, maxLine);
    ASSERT_EQ(got, want) << escape(input) << " in " << chunk << "-octet chunks: got " << got
                         << ", want " << want;
  }
  for (std::size_t at = 0; at <= input.size(); ++at) {
    const Outcome got = run(input, maxSize, {at}, maxLine);
    ASSERT_EQ(got, want) << escape(input) << " cut at " << at << ": got " << got << ", want "
                         << want;
  }
  if (input.size() <= 48) {
    for (std::size_t a = 0; a <= input.size(); ++a) {
      for (std::size_t b = a; b <= input.size(); ++b) {
        const Outcome got = run(input, maxSize, {a, b}, maxLine);
        ASSERT_EQ(got, want) << escape(input) << " cut at " << a << " and " << b << ": got " << got
                             << ", want " << want;
      }
    }
  }
}

bool hasBareCrOrLf(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && (i + 1 >= s.size() || s[i + 1] != '\n')) return true;
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return true;
  }
  return false;
}

// A line of `s` (at its start or after an LF) begins with a dot.
bool hasDotLedLine(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '.' && (i == 0 || s[i - 1] == '\n')) return true;
  }
  return false;
}

struct FrameCase {
  std::string name;
  std::string input;
  bool ended;
  std::size_t consumed;  // npos: the whole input
  std::string output;    // checked only for clean (unpoisoned) messages
  bool bareCr;
  bool bareLf;
};

constexpr std::size_t kAll = std::string::npos;

TEST(DataFramer, FramingTable) {
  const std::vector<FrameCase> cases = {
      {"simple", "Subject: x\r\n\r\nbody\r\n.\r\n", true, kAll, "Subject: x\r\n\r\nbody\r\n", false,
       false},
      {"empty message: end marker at the very start", ".\r\n", true, 3, "", false, false},
      {"empty message, pipelined command after", ".\r\nQUIT\r\n", true, 3, "", false, false},
      {"bytes after the end are not consumed", "a\r\n.\r\nMAIL FROM:<x@y>\r\n", true, 6, "a\r\n",
       false, false},
      {"only the first end counts", "a\r\n.\r\n.\r\n", true, 6, "a\r\n", false, false},
      {"dot-stuffed line", "..leading dot\r\n.\r\n", true, kAll, ".leading dot\r\n", false, false},
      {"stuffed lone dot", "a\r\n..\r\n.\r\n", true, kAll, "a\r\n.\r\n", false, false},
      {"stuffed dots", "...\r\n.\r\n", true, kAll, "..\r\n", false, false},
      {"unstuffed leading dot (RFC 5321 4.5.2: the first dot is dropped)", ".x\r\n.\r\n", true,
       kAll, "x\r\n", false, false},
      {"dot space", ". \r\n.\r\n", true, kAll, " \r\n", false, false},
      {"dot CRLF inside a line is not the end", "a.\r\nb .\r\n.\r\n", true, kAll, "a.\r\nb .\r\n",
       false, false},
      {"CRLF.CRLF split over lines", "x\r\n.y\r\n.\r\n", true, kAll, "x\r\ny\r\n", false, false},
      {"no end yet", "a\r\nb\r\n", false, kAll, "a\r\nb\r\n", false, false},
      {"no end yet: dot CR", "a\r\n.\r", false, kAll, "a\r\n", false, false},
      {"no end yet: dot", "a\r\n.", false, kAll, "a\r\n", false, false},
      {"no end yet: CR", "a\r", false, kAll, "a", false, false},
      {"long line", std::string(3000, 'z') + "\r\n.\r\n", true, kAll,
       std::string(3000, 'z') + "\r\n", false, false},
      {"8-bit and NUL pass through", std::string("\xc3\xa9\0\x01\r\n.\r\n", 9), true, kAll,
       std::string("\xc3\xa9\0\x01\r\n", 6), false, false},
      // Bare LF / bare CR: never a line end, never rewritten, always poison.
      {"bare LF", "a\nb\r\n.\r\n", true, kAll, "", false, true},
      {"bare CR", "a\rb\r\n.\r\n", true, kAll, "", true, false},
      {"bare CR before CRLF", "a\r\r\n.\r\n", true, kAll, "", true, false},
      {"bare LF at the start", "\n.\r\n", false, kAll, "", false, true},
      {"bare CR at the start", "\r.\r\n", false, kAll, "", true, false},
      {"dot then bare LF", ".\n\r\n.\r\n", true, kAll, "", false, true},
      {"dot CR then not LF", ".\rX\r\n.\r\n", true, kAll, "", true, false},
      {"dot CR CR LF", ".\r\r\n.\r\n", true, kAll, "", true, false},
      // The smuggling terminators (CVE-2023-51764 and friends) never end the data.
      {"LF.LF", "a\n.\n", false, kAll, "", false, true},
      {"CRLF.LF", "a\r\n.\n", false, kAll, "", false, true},
      {"LF.CRLF", "a\n.\r\n", false, kAll, "", false, true},
      {"CR.CRLF", "a\r.\r\n", false, kAll, "", true, false},
      {"CR.CR", "a\r.\r", false, kAll, "", true, false},
      {"LF.LF then the real end", "a\r\n\n.\nb\r\n.\r\n", true, kAll, "", false, true},
      {"CRLF.LF then the real end", "a\r\n.\nb\r\n.\r\n", true, kAll, "", false, true},
      {"LF.CRLF then the real end", "a\r\n\n.\r\nb\r\n.\r\n", true, kAll, "", false, true},
      {"CR.CRLF then the real end", "a\r\n\r.\r\nb\r\n.\r\n", true, kAll, "", true, false},
      {"smuggled MAIL after LF.LF",
       "Subject: hi\r\n\r\nbody\n.\nMAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\nDATA\r\nevil\r\n.\r\n",
       true, kAll, "", false, true},
  };
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.name);
    const Outcome got = run(tc.input);
    const std::size_t wantConsumed = tc.consumed == kAll ? tc.input.size() : tc.consumed;
    EXPECT_EQ(got.ended, tc.ended) << tc.name << " " << escape(tc.input) << ": got " << got;
    EXPECT_EQ(got.consumed, wantConsumed)
        << tc.name << ": got consumed " << got.consumed << ", want " << wantConsumed;
    EXPECT_EQ(got.bareCr, tc.bareCr) << tc.name << ": got " << got;
    EXPECT_EQ(got.bareLf, tc.bareLf) << tc.name << ": got " << got;
    if (!tc.bareCr && !tc.bareLf) {
      EXPECT_EQ(got.output, tc.output)
          << tc.name << ": got " << escape(got.output) << ", want " << escape(tc.output);
      EXPECT_EQ(got.size, tc.output.size());
      // Only a stuffed ".." line is dot-led once unstuffed: then, and only then, the way out
      // must stuff again (Upstream passes the spool as it is otherwise).
      EXPECT_EQ(got.dotLedLine, hasDotLedLine(got.output)) << tc.name << ": got " << got;
    }
    EXPECT_FALSE(hasBareCrOrLf(got.output))
        << tc.name << ": the sink got a bare CR or LF: " << escape(got.output);
    expectSplitInvariant(tc.input, 1 << 20, got);
  }
}

TEST(DataFramer, LineEndsAndBareOnesAtEveryPlaceInALongLine) {
  // A CRLF, a bare CR, a bare LF or the end of the input at each offset of a long line, across
  // the word and vector sizes a scan for them works in, split every way.
  for (std::size_t at = 0; at <= 49; ++at) {
    SCOPED_TRACE("at " + std::to_string(at));
    const std::string before(at, 'a');
    // `at` octets, then `mid`, then the rest of 49, then `tail`.
    const auto line = [&](std::string_view mid, std::string_view tail) {
      return std::string(before).append(mid).append(49 - at, 'b').append(tail);
    };
    {
      const std::string input = line("\r\n", "\r\n.\r\n");
      const Outcome got = run(input);
      expectSplitInvariant(input, 1 << 20, got);
      EXPECT_TRUE(got.ended);
      EXPECT_FALSE(got.bareCr || got.bareLf) << got;
      EXPECT_EQ(got.output, line("\r\n", "\r\n"));
    }
    for (const bool cr : {true, false}) {  // a bare CR, a bare LF: nothing stored past it
      const std::string input = line(cr ? "\r" : "\n", "\r\n.\r\n");
      const Outcome got = run(input);
      expectSplitInvariant(input, 1 << 20, got);
      EXPECT_TRUE(got.ended);
      EXPECT_EQ(got.bareCr, cr) << got;
      EXPECT_EQ(got.bareLf, !cr) << got;
      EXPECT_EQ(got.output, before);
    }
    {
      const std::string unended = line("\r\n", "");
      const Outcome got = run(unended);
      EXPECT_FALSE(got.ended);
      EXPECT_EQ(got.consumed, unended.size());
      EXPECT_EQ(got.output, unended);  // stored as it comes; only the end is waited for
      expectSplitInvariant(unended, 1 << 20, got);
    }
  }
}

TEST(DataFramer, SizeCap) {
  const std::string body = "0123456789ABCDEF\r\n";  // 18 octets
  const std::string input = body + ".\r\n";
  const struct {
    std::uint64_t max;
    bool oversized;
    std::string sink;
  } cases[] = {
      {1000, false, body},      {18, false, body}, {17, true, body.substr(0, 17)},
      {10, true, "0123456789"}, {1, true, "0"},    {0, true, ""},
  };
  for (const auto& tc : cases) {
    const Outcome got = run(input, tc.max);
    EXPECT_TRUE(got.ended) << "max " << tc.max;
    EXPECT_EQ(got.consumed, input.size()) << "max " << tc.max << ": the end is still found";
    EXPECT_EQ(got.size, body.size()) << "max " << tc.max << ": size counts past the limit";
    EXPECT_EQ(got.oversized, tc.oversized)
        << "max " << tc.max << ": got oversized " << got.oversized << ", want " << tc.oversized;
    EXPECT_EQ(got.output, tc.sink) << "max " << tc.max << ": got " << escape(got.output) << " ("
                                   << got.output.size() << " octets), want " << escape(tc.sink);
    EXPECT_LE(got.output.size(), tc.max);
    expectSplitInvariant(input, tc.max, got);
  }
  // An empty message fits any limit, even 0.
  const Outcome empty = run(".\r\n", 0);
  EXPECT_TRUE(empty.ended);
  EXPECT_FALSE(empty.oversized);

  // A large message: the sink gets exactly maxSize octets, the count goes on.
  std::string big;
  for (int i = 0; i < 2000; ++i) big += "line " + std::to_string(i) + " of the message\r\n";
  const std::uint64_t max = 10'000;
  const Outcome got = run(big + ".\r\n", max, {4096, 8192, 12288});
  EXPECT_TRUE(got.ended);
  EXPECT_TRUE(got.oversized);
  EXPECT_EQ(got.output.size(), max) << "got " << got.output.size() << " octets, want " << max;
  EXPECT_EQ(got.output, big.substr(0, max));
  EXPECT_EQ(got.size, big.size());
}

TEST(DataFramer, PoisonStopsStoring) {
  // After a bare LF nothing more is stored: what the sink holds is a prefix of the message.
  const Outcome got = run("clean line\r\nbad\nline\r\nmore\r\n.\r\n");
  EXPECT_TRUE(got.ended);
  EXPECT_TRUE(got.bareLf);
  EXPECT_EQ(got.output, "clean line\r\nbad");
  EXPECT_EQ(got.size, std::string("clean line\r\nbadline\r\nmore\r\n").size())
      << "the size still counts every data octet";
}

// RFC 5321 4.5.3.1.6: a text line is at most 1000 octets including the CRLF, "not counting
// the leading dot duplicated for transparency". The limit counts what is left after
// unstuffing, without the CRLF: 998 by default (limits.max_line_length).
TEST(DataFramer, LineLengthLimit) {
  const auto x = [](std::size_t n) { return std::string(n, 'x'); };
  const struct {
    std::string name;
    std::string input;
    std::uint64_t maxLine;
    bool tooLong;
  } cases[] = {
      {"exactly 998", x(998) + "\r\n.\r\n", 998, false},
      {"999", x(999) + "\r\n.\r\n", 998, true},
      {"999 in the middle of the message", "a\r\n" + x(999) + "\r\nb\r\n.\r\n", 998, true},
      {"998 then 999", x(998) + "\r\n" + x(999) + "\r\n.\r\n", 998, true},
      {"many lines of 998: the count restarts at each CRLF",
       x(998) + "\r\n" + x(998) + "\r\n" + x(998) + "\r\n.\r\n", 998, false},
      {"stuffed: the added dot is not counted", "." + std::string(998, '.') + "\r\n.\r\n", 998,
       false},
      {"stuffed: one more is counted", "." + std::string(999, '.') + "\r\n.\r\n", 998, true},
      {"a leading dot followed by 998", "." + x(998) + "\r\n.\r\n", 998, false},
      {"limit 0: no limit", x(100'000) + "\r\n.\r\n", 0, false},
      {"small limit: 3 ok", "abc\r\n.\r\n", 3, false},
      {"small limit: 4 refused", "abcd\r\n.\r\n", 3, true},
      {"the end-of-data line is not a text line", "x\r\n.\r\n", 1, false},
      {"empty message", ".\r\n", 1, false},
      {"a bare CR is counted as an octet of the line", "ab\rc\r\n.\r\n", 3, true},
      {"a bare LF is counted as an octet of the line", "ab\nc\r\n.\r\n", 3, true},
  };
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.name);
    const Outcome got = run(tc.input, 1 << 20, {}, tc.maxLine);
    EXPECT_EQ(got.lineTooLong, tc.tooLong)
        << tc.name << ": got lineTooLong=" << got.lineTooLong << ", want " << tc.tooLong;
    EXPECT_TRUE(got.ended) << tc.name << ": framing goes on to the real end of data";
    EXPECT_EQ(got.consumed, tc.input.size()) << tc.name;
    if (tc.input.size() <= 64) {
      expectSplitInvariant(tc.input, 1 << 20, got, tc.maxLine);
    } else {
      // Long lines: a few cut patterns (every pair would be quadratic in the line length).
      for (const std::vector<std::size_t>& cuts :
           {std::vector<std::size_t>{1}, {997, 998, 999, 1000, 1001}, {500, 1001, 1002}}) {
        const Outcome split = run(tc.input, 1 << 20, cuts, tc.maxLine);
        ASSERT_EQ(split, got) << tc.name << ": got " << split << ", want " << got;
      }
    }
  }
}

TEST(DataFramer, LongLineAcrossManyFeeds) {
  // 8 MiB without a CRLF, in 4 KiB reads, then the end: one flag, the message still frames,
  // and the size limit still bounds what is stored.
  DataFramer f(1 << 20, 998);
  StringSink sink;
  const std::string chunk(4096, 'y');
  for (int i = 0; i < 2048; ++i) {
    const auto r = f.feed(chunk, sink);
    ASSERT_FALSE(r.ended);
    ASSERT_EQ(r.consumed, chunk.size());
  }
  EXPECT_TRUE(f.lineTooLong());
  const auto r = f.feed("\r\n.\r\nQUIT\r\n", sink);
  EXPECT_TRUE(r.ended);
  EXPECT_EQ(r.consumed, 5U) << "the next command is not consumed";
  EXPECT_EQ(f.size(), 8U * 1024 * 1024 + 2);
  EXPECT_LE(sink.out.size(), std::size_t{1} << 20) << "stored no more than the size limit";

  // One octet per feed: the same outcome as whole (split invariance on a long line).
  DataFramer g(1 << 20, 998);
  StringSink s2;
  const std::string line = std::string(999, 'z') + "\r\n.\r\n";
  for (std::size_t i = 0; i < line.size(); ++i) {
    const auto rr = g.feed(std::string_view(line).substr(i, 1), s2);
    if (rr.ended) {
      EXPECT_EQ(i, line.size() - 1);
      break;
    }
  }
  EXPECT_TRUE(g.lineTooLong());
}

// ---- DotStuffer ----

std::string stuffAll(std::string_view in, const std::vector<std::size_t>& cuts = {}) {
  DotStuffer s;
  std::string out;
  std::size_t start = 0;
  std::vector<std::size_t> ends = cuts;
  ends.push_back(in.size());
  for (const std::size_t end : ends) {
    if (end < start) continue;
    s.stuff(in.substr(start, end - start), [&](std::string_view piece) { out += piece; });
    start = end;
  }
  return out;
}

TEST(DotStuffer, Table) {
  const struct {
    std::string in;
    std::string want;
  } cases[] = {
      {"", ""},
      {"abc\r\n", "abc\r\n"},
      {".\r\n", "..\r\n"},
      {".hidden\r\n", "..hidden\r\n"},
      {"a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n"},
      {"a.b\r\n", "a.b\r\n"},
      {"..\r\n", "...\r\n"},
      {"x\r\n.", "x\r\n.."},
  };
  for (const auto& tc : cases) {
    const std::string got = stuffAll(tc.in);
    EXPECT_EQ(got, tc.want) << escape(tc.in) << ": got " << escape(got) << ", want "
                            << escape(tc.want);
    for (std::size_t at = 0; at <= tc.in.size(); ++at) {
      EXPECT_EQ(stuffAll(tc.in, {at}), tc.want) << escape(tc.in) << " cut at " << at;
    }
  }
  DotStuffer s;
  EXPECT_TRUE(s.atLineStart());
  s.stuff("abc", [](std::string_view) {});
  EXPECT_FALSE(s.atLineStart());
  s.stuff("\r\n", [](std::string_view) {});
  EXPECT_TRUE(s.atLineStart());
}

TEST(DotStuffer, PassSendsBytesAsTheyAreAndKeepsTheLineState) {
  // For a spool with no dot-led line (DataFramer::dotLedLine false): one piece per call, and
  // the state the final "." line depends on.
  DotStuffer s;
  std::vector<std::string> pieces;
  const auto out = [&](std::string_view v) { pieces.emplace_back(v); };
  s.pass("a\r\nb", out);
  EXPECT_FALSE(s.atLineStart());
  s.pass("", out);
  EXPECT_FALSE(s.atLineStart());
  s.pass("c\r\n", out);
  EXPECT_TRUE(s.atLineStart());
  EXPECT_EQ(pieces, (std::vector<std::string>{"a\r\nb", "c\r\n"}));
}

TEST(DotStuffer, RoundTripWithTheFramer) {
  // For random canonical messages m: framing stuff(m) + ".\r\n" gives m back, and stuffing that
  // again gives the same wire bytes: stuff(unstuff(x)) == x for canonical x.
  std::mt19937 rng(5321);
  const std::string alphabet = "..ab .x\t";
  for (int iter = 0; iter < 3000; ++iter) {
    std::string m;
    const int lines = static_cast<int>(rng() % 8);
    for (int l = 0; l < lines; ++l) {
      const int len = static_cast<int>(rng() % 6);
      for (int i = 0; i < len; ++i) m.push_back(alphabet[rng() % alphabet.size()]);
      m += "\r\n";
    }
    const std::string wire = stuffAll(m) + ".\r\n";
    std::vector<std::size_t> cuts;
    for (std::size_t at = 0; at < wire.size(); at += 1 + rng() % 5) cuts.push_back(at);
    const Outcome got = run(wire, 1 << 20, cuts);
    ASSERT_TRUE(got.ended) << escape(wire);
    ASSERT_EQ(got.consumed, wire.size()) << escape(wire);
    ASSERT_FALSE(got.bareCr || got.bareLf) << escape(wire);
    ASSERT_EQ(got.output, m) << escape(wire) << ": got " << escape(got.output) << ", want "
                             << escape(m);
    std::vector<std::size_t> stuffCuts;
    for (std::size_t at = 0; at < got.output.size(); at += 1 + rng() % 4) stuffCuts.push_back(at);
    ASSERT_EQ(stuffAll(got.output, stuffCuts) + ".\r\n", wire)
        << "stuff(unstuff(x)) != x for " << escape(wire);
  }
}

TEST(DataFramer, RandomInputsAreSplitInvariant) {
  // Random soup of the interesting octets: whatever the split, the same outcome; the sink never
  // holds a bare CR or LF, and never more than maxSize octets.
  std::mt19937 rng(3030);
  const std::string alphabet = "\r\n.\r\n.a";
  for (int iter = 0; iter < 400; ++iter) {
    std::string in;
    const int n = static_cast<int>(rng() % 24);
    for (int i = 0; i < n; ++i) in.push_back(alphabet[rng() % alphabet.size()]);
    const std::uint64_t max = rng() % 3 == 0 ? rng() % 8 : 1 << 20;
    const std::uint64_t maxLine = rng() % 4;  // 0: no limit
    const Outcome want = run(in, max, {}, maxLine);
    if (!want.oversized) {
      ASSERT_FALSE(hasBareCrOrLf(want.output)) << escape(in) << ": got " << want;
    }
    ASSERT_LE(want.output.size(), max);
    expectSplitInvariant(in, max, want, maxLine);
  }
}

// The hot path hands over whole runs of lines, not one line at a time: a message without
// dot-led lines reaches the sink, and leaves the stuffer, in one piece per input chunk. Each
// dot-led line costs one cut (the framer drops its dot; the stuffer adds one).
class CountingSink final : public ByteSink {
 public:
  void append(const char* data, std::size_t n) override {
    out.append(data, n);
    ++calls;
  }
  std::string out;
  int calls = 0;
};

TEST(DataFramer, WholeRunsOfLinesInOneAppend) {
  std::string body;
  for (int i = 0; i < 200; ++i) body += "line " + std::to_string(i) + " of the message\r\n";
  const struct {
    std::string in;
    int wantCalls;
  } cases[] = {
      {body + ".\r\n", 1},
      {body + "..dot-led\r\n" + body + ".\r\n", 2},
      {"..a\r\n..b\r\n.\r\n", 2},
  };
  for (const auto& tc : cases) {
    DataFramer f(1 << 20);
    CountingSink sink;
    const auto r = f.feed(tc.in, sink);
    EXPECT_TRUE(r.ended);
    EXPECT_EQ(sink.calls, tc.wantCalls) << escape(tc.in.substr(0, 40)) << ": got " << sink.calls
                                        << " appends, want " << tc.wantCalls;
  }
}

TEST(DotStuffer, WholeRunsOfLinesInOnePiece) {
  std::string body;
  for (int i = 0; i < 200; ++i) body += "line " + std::to_string(i) + "\r\n";
  const struct {
    std::string in;
    int wantPieces;
  } cases[] = {
      {body, 1},
      {body + ".dot-led\r\n" + body, 3},  // run, the added dot, the rest
      {".first\r\n" + body, 2},           // the added dot, everything
  };
  for (const auto& tc : cases) {
    DotStuffer s;
    int pieces = 0;
    s.stuff(tc.in, [&](std::string_view) { ++pieces; });
    EXPECT_EQ(pieces, tc.wantPieces)
        << escape(tc.in.substr(0, 40)) << ": got " << pieces << " pieces, want " << tc.wantPieces;
  }
}

}  // namespace
}  // namespace portcullis
