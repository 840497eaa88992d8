// Fuzz target: parseHeaderBlock (proxy/header_block.cc).
// Input: the first two bytes pick the limits (block bytes, field count) and the largest chunk
// the message reader hands out per read; the rest is the spooled message.
// Invariants: never crash; the result does not depend on how the reader splits the message
// (one large read versus many short ones); a kOk block fits the limits; every field has a
// non-empty name of printable US-ASCII without ":" and a value of at most kMaxHeaderValue
// octets with no LF (unfolded); the block's byte count never exceeds the message; a message
// whose first byte is a space or tab is a leading continuation.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "proxy/smtp/header_block.h"

namespace {

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

class ChunkedReader : public portcullis::MessageReader {
 public:
  ChunkedReader(std::string_view data, std::size_t maxChunk) : data_(data), maxChunk_(maxChunk) {}
  std::uint64_t size() const override { return data_.size(); }
  std::size_t read(std::uint64_t offset, char* buf, std::size_t n) const override {
    if (offset >= data_.size()) return 0;
    const std::size_t count = std::min({n, maxChunk_, data_.size() - offset});
    std::memcpy(buf, data_.data() + offset, count);
    return count;
  }

 private:
  std::string_view data_;
  std::size_t maxChunk_;
};

bool sameBlock(const portcullis::HeaderBlock& a, const portcullis::HeaderBlock& b) {
  if (a.status != b.status || a.bytes != b.bytes || a.truncated != b.truncated ||
      a.fields.size() != b.fields.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.fields.size(); ++i) {
    if (a.fields[i].name != b.fields[i].name || a.fields[i].value != b.fields[i].value) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  using portcullis::HeaderBlock;
  portcullis::HeaderBlockLimits limits;
  // Small limits half the time, so the refusals are reached with short inputs.
  if (data[0] & 0x80) {
    limits.maxBlockBytes = 1 + (data[0] & 0x7f) * 8;
    limits.maxFields = 1 + (data[1] & 0x0f);
  }
  const std::size_t chunk = 1 + (data[1] >> 4);
  const std::string_view message(reinterpret_cast<const char*>(data + 2), size - 2);

  const HeaderBlock whole = portcullis::parseHeaderBlock(ChunkedReader(message, 1 << 20), limits);
  const HeaderBlock split = portcullis::parseHeaderBlock(ChunkedReader(message, chunk), limits);
  require(sameBlock(whole, split), "result depends on read chunking");

  require(whole.bytes <= message.size(), "block longer than the message");
  require(whole.truncated <= whole.fields.size(), "more truncated fields than fields");
  if (whole.status == HeaderBlock::Status::kOk) {
    require(whole.bytes <= limits.maxBlockBytes, "kOk block over maxBlockBytes");
    require(whole.fields.size() <= limits.maxFields, "kOk block over maxFields");
  }
  for (const auto& f : whole.fields) {
    require(!f.name.empty(), "empty field name");
    for (unsigned char c : f.name) {
      require(c > 32 && c < 127 && c != ':', "field name with a space, colon or control");
    }
    require(f.value.size() <= portcullis::kMaxHeaderValue, "value over kMaxHeaderValue");
    require(f.value.find('\n') == std::string::npos, "LF left in an unfolded value");
  }
  if (!message.empty() && (message[0] == ' ' || message[0] == '\t')) {
    require(whole.status == HeaderBlock::Status::kLeadingContinuation,
            "leading whitespace not reported as a continuation");
    require(whole.fields.empty(), "fields from a block that starts with a continuation");
  }
  return 0;
}
