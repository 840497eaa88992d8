// Header block parser. See header_block.h.

#include "proxy/smtp/header_block.h"

#include <algorithm>
#include <cstdint>
#include <string_view>

namespace portcullis {
namespace {

constexpr std::size_t kReadChunk = std::size_t{8} * 1024;

// Postfix's is_header(): a field name is printable US-ASCII other than ":" and space, then
// optional whitespace, then ":". A line that is not a header ends the block (the body begins).
bool nameChar(unsigned char c) { return c > 32 && c < 127 && c != ':'; }
bool wsp(unsigned char c) { return c == ' ' || c == '\t'; }

constexpr std::size_t kTypicalFields = 16;
constexpr std::size_t kFirstValueCapacity = 64;

class Parser {
 public:
  explicit Parser(const HeaderBlockLimits& limits) : limits_(limits) {
    // A typical block has a handful of fields: one allocation instead of the vector's doublings.
    out_.fields.reserve(std::min<std::size_t>(limits.maxFields, kTypicalFields));
  }

  // Feeds one byte; false once the block has ended (or was refused).
  bool feed(unsigned char c) {
    // The empty line that ends the block is not part of it.
    const bool separator = state_ == State::kLineStart && (c == '\r' || c == '\n');
    if (++out_.bytes > limits_.maxBlockBytes && !separator) {
      return refuse(HeaderBlock::Status::kTooLarge);
    }
    if (pendingCr_) {
      pendingCr_ = false;
      if (c == '\n') return endOfLine();
      if (!take('\r')) return false;  // a lone CR is content (the framer refuses them anyway)
    }
    if (c == '\r') {
      pendingCr_ = true;
      return true;
    }
    if (c == '\n') return endOfLine();
    return take(c);
  }

  // Feeds a run of bytes, as feed(c) for each in turn; false once the block has ended.
  bool feed(std::string_view run) {
    std::size_t i = 0;
    while (i < run.size()) {
      if (state_ == State::kValue && !pendingCr_) {
        // Most of a block is values: one up to its line's end at once, what feed(c) would do
        // byte by byte (counted, appended up to kMaxHeaderValue), unless the run crosses the
        // block's size limit, which feed(c) then finds at its exact byte.
        std::size_t end = i;  // a plain loop: find_first_of("\r\n") measured slower here
        while (end < run.size() && run[end] != '\r' && run[end] != '\n') ++end;
        if (end > i && out_.bytes + (end - i) <= limits_.maxBlockBytes) {
          out_.bytes += end - i;
          appendRun(field_.value, run.substr(i, end - i));
          i = end;
          continue;
        }
      }
      if (!feed(static_cast<unsigned char>(run[i++]))) return false;
    }
    return true;
  }

  HeaderBlock finish() {
    if (pendingCr_ && !done_) take('\r');
    if (!done_ && haveField_) push();  // the message ended inside the header block
    if (ended_) out_.bytes = endedAt_;
    return std::move(out_);
  }

 private:
  enum class State { kLineStart, kName, kNameSpace, kValueLead, kValue };

  bool take(unsigned char c) {
    switch (state_) {
      case State::kLineStart:
        if (wsp(c)) {
          // RFC 5322 2.2.3: folding continues the field before it. With no field before it,
          // the MTA would fold it into whatever header precedes the message: ours.
          if (!haveField_) return refuse(HeaderBlock::Status::kLeadingContinuation);
          state_ = State::kValue;
          return append(field_.value, c);
        }
        if (!nameChar(c)) return end();
        if (haveField_) push();
        if (out_.fields.size() >= limits_.maxFields) {
          return refuse(HeaderBlock::Status::kTooLarge);
        }
        field_ = HeaderField{};
        fieldTruncated_ = false;
        field_.name.push_back(static_cast<char>(c));
        state_ = State::kName;
        return true;
      case State::kName:
        if (nameChar(c)) return append(field_.name, c);
        if (wsp(c)) {
          state_ = State::kNameSpace;
          return true;
        }
        if (c == ':') return colon();
        return end();
      case State::kNameSpace:
        if (wsp(c)) return true;
        if (c == ':') return colon();
        return end();
      case State::kValueLead:
        if (wsp(c)) return true;
        state_ = State::kValue;
        return append(field_.value, c);
      case State::kValue:
        return append(field_.value, c);
    }
    return true;
  }

  bool colon() {
    haveField_ = true;
    state_ = State::kValueLead;
    return true;
  }

  bool append(std::string& s, unsigned char c) {
    if (s.size() < kMaxHeaderValue) {
      // Past the string's inline storage, room for a typical value at once (a Date or a
      // Message-ID is 30 to 60 octets): one allocation where doubling from 15 would take two.
      if (s.size() == s.capacity()) s.reserve(std::max(kFirstValueCapacity, 2 * s.capacity()));
      s.push_back(static_cast<char>(c));
    } else {
      fieldTruncated_ = true;
    }
    return true;
  }

  // append() for a run: the same kMaxHeaderValue limit. append() keeps its own one-byte code:
  // written as a one-byte run of this, the parser executed 0.4% more instructions per message.
  void appendRun(std::string& s, std::string_view run) {
    const std::size_t room = s.size() < kMaxHeaderValue ? kMaxHeaderValue - s.size() : 0;
    if (run.size() > room) fieldTruncated_ = true;
    s.append(run.data(), std::min(run.size(), room));
  }

  bool endOfLine() {
    switch (state_) {
      case State::kLineStart:  // the empty line that ends the block
        if (haveField_) push();
        endedAt_ = lineStart_;  // the separator line is not part of the block
        ended_ = done_ = true;
        return false;
      case State::kName:
      case State::kNameSpace:  // a line without a colon: not a header, the body begins
        return end();
      case State::kValueLead:
      case State::kValue:
        state_ = State::kLineStart;
        lineStart_ = out_.bytes;
        return true;
    }
    return true;
  }

  // The current line is not a header: the block ended at the start of that line.
  bool end() {
    if (state_ == State::kLineStart && haveField_) push();
    if (state_ == State::kName || state_ == State::kNameSpace) field_ = HeaderField{};
    endedAt_ = lineStart_;
    ended_ = done_ = true;
    return false;
  }

  void push() {
    if (fieldTruncated_) ++out_.truncated;
    out_.fields.push_back(std::move(field_));
    field_ = HeaderField{};
    haveField_ = false;
    fieldTruncated_ = false;
  }

  bool refuse(HeaderBlock::Status status) {
    out_.status = status;
    done_ = true;
    return false;
  }

  const HeaderBlockLimits& limits_;
  HeaderBlock out_;
  State state_ = State::kLineStart;
  HeaderField field_;
  bool haveField_ = false;  // field_ holds a header whose colon was seen
  bool fieldTruncated_ = false;
  bool pendingCr_ = false;
  bool done_ = false;
  bool ended_ = false;         // the block ended (empty line or a non-header line)
  std::size_t lineStart_ = 0;  // octets before the current line
  std::size_t endedAt_ = 0;
};

}  // namespace

HeaderBlock parseHeaderBlock(const MessageReader& message, const HeaderBlockLimits& limits) {
  Parser parser(limits);
  char chunk[kReadChunk];
  std::uint64_t offset = 0;
  bool more = true;
  while (more) {
    const std::size_t got = message.read(offset, chunk, sizeof chunk);
    if (got == 0) break;
    offset += got;
    more = parser.feed(std::string_view(chunk, got));
  }
  return parser.finish();
}

}  // namespace portcullis
