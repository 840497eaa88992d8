#pragma once
// DATA framing (RFC 5321 4.1.1.4, 4.5.2): finds the end of data, removes dot-stuffing, refuses
// bare CR and bare LF, and counts octets against the size limit. Pure and streaming: bytes come
// in chunks of any size, memory stays constant, and the result never depends on how the input
// was split. Only <CRLF>.<CRLF> ends the data; a bare CR or LF anywhere poisons the message
// (SMTP smuggling, CVE-2023-51764) and is never rewritten into CRLF (DESIGN invariant 1).
// A text line longer than the line limit marks the message too (RFC 5321 4.5.3.1.6); framing
// goes on to the real end of data either way, so that the refusal comes after the dot.
// Fuzzed by tests/fuzz/fuzz_data_framer.cc.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace portcullis {

// Receives the canonical, dot-unstuffed message bytes.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual void append(const char* data, std::size_t n) = 0;
};

class DataFramer {
 public:
  // maxLine: the longest text line accepted, in octets without the CRLF and without the dot
  // that dot-stuffing added (RFC 5321 4.5.3.1.6: 1000 with CRLF, so 998); 0 means no limit.
  explicit DataFramer(std::uint64_t maxSize, std::uint64_t maxLine = 0)
      : maxSize_(maxSize), maxLine_(maxLine) {}

  struct Result {
    bool ended = false;        // the final <CRLF>.<CRLF> was seen
    std::size_t consumed = 0;  // input octets used (up to and including the final dot line)
  };

  // Consumes input until the end of data or the end of `in`. Bytes after the end of data are
  // not consumed: they belong to the next command (RFC 2920 pipelining).
  Result feed(std::string_view in, ByteSink& sink);

  std::uint64_t size() const { return size_; }  // unstuffed octets seen (even past the limit)
  bool oversized() const { return size_ > maxSize_; }
  bool bareCr() const { return bareCr_; }
  bool bareLf() const { return bareLf_; }
  bool poisoned() const { return bareCr_ || bareLf_; }
  // Some line was longer than maxLine. Unlike poison, storing goes on (the size limit bounds
  // it): what is stored then never depends on how the input was split.
  bool lineTooLong() const { return lineTooLong_; }
  // Some line of the message begins with a dot once unstuffed (it came as ".."): only then must
  // DotStuffer look for line starts on the way out; without one it can pass the bytes as they are.
  bool dotLedLine() const { return dotLedLine_; }

 private:
  enum class State { kLineStart, kDot, kDotCr, kMid, kCr };

  void emit(const char* p, std::size_t n, ByteSink& sink);
  // `n` more octets of the current line (never its CRLF).
  void countLine(std::size_t n) {
    lineLength_ += n;
    if (maxLine_ != 0 && lineLength_ > maxLine_) lineTooLong_ = true;
  }

  std::uint64_t maxSize_;
  std::uint64_t maxLine_;
  std::uint64_t size_ = 0;
  std::uint64_t lineLength_ = 0;  // octets of the current line so far
  State state_ = State::kLineStart;
  bool bareCr_ = false;
  bool bareLf_ = false;
  bool lineTooLong_ = false;
  bool dotLedLine_ = false;
};

// Applies dot-stuffing (RFC 5321 4.5.2) to canonical message bytes on their way upstream.
// `out` gets the input in as few pieces as possible: cut only where a line starts with a dot,
// which gets one more in front of it.
class DotStuffer {
 public:
  template <typename Out>
  void stuff(std::string_view in, Out&& out) {
    if (in.empty()) return;
    if (atLineStart_ && in.front() == '.') out(std::string_view(".", 1));
    std::size_t from = 0;
    std::size_t scan = 0;
    while (const void* lf = std::memchr(in.data() + scan, '\n', in.size() - scan)) {
      scan = static_cast<std::size_t>(static_cast<const char*>(lf) - in.data()) + 1;
      if (scan == in.size() || in[scan] != '.') continue;
      out(in.substr(from, scan - from));  // up to and including the LF
      out(std::string_view(".", 1));
      from = scan;  // the line's own dot follows the added one
    }
    if (from < in.size()) out(in.substr(from));
    atLineStart_ = in.back() == '\n';
  }
  // `in` as it is, in one piece, for bytes known to have no line that begins with a dot
  // (DataFramer::dotLedLine): no scan.
  template <typename Out>
  void pass(std::string_view in, Out&& out) {
    if (in.empty()) return;
    out(in);
    atLineStart_ = in.back() == '\n';
  }
  bool atLineStart() const { return atLineStart_; }

 private:
  bool atLineStart_ = true;
};

}  // namespace portcullis
