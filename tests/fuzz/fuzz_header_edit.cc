// Fuzz target: editHeaderBlock (proxy/smtp/header_edit.cc), on header blocks as
// parseHeaderBlock cuts them out of a canonical message.
// Input: byte 0 = how many edits (low 3 bits); each edit takes 2 bytes (kind and occurrence,
// then which name from a small table, so that names collide), and replacement values are the
// next NUL-terminated strings (hostile text); the rest is the message.
// Invariants: never crash; no edits -> the block byte for byte; the result is CRLF lines with
// no bare CR or LF and no empty line, so it cannot end the header block or smuggle a line;
// re-parsed, it is still one header block that ends where it ends; after a remove-all of a
// name that no later edit writes again, no field of that name is left; a field no edit names
// keeps its exact bytes and its order.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/smtp/header_block.h"
#include "proxy/smtp/header_edit.h"

namespace {

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

class StringReader : public portcullis::MessageReader {
 public:
  explicit StringReader(std::string_view data) : data_(data) {}
  std::uint64_t size() const override { return data_.size(); }
  std::size_t read(std::uint64_t offset, char* buf, std::size_t n) const override {
    if (offset >= data_.size()) return 0;
    const std::size_t count = std::min<std::size_t>(n, data_.size() - offset);
    std::memcpy(buf, data_.data() + offset, count);
    return count;
  }

 private:
  std::string_view data_;
};

bool canonical(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && (i + 1 >= s.size() || s[i + 1] != '\n')) return false;
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return false;
  }
  return true;
}

bool sameName(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

constexpr const char* kNames[] = {"Subject", "X-Spam", "x-spam", "Received", "To", "From",
                                  "X Bad",   "",       "A:B",    ".Dot",     "Z"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::size_t pos = 1;
  const std::size_t count = data[0] & 0x07;
  std::vector<portcullis::HeaderEdit> edits;
  for (std::size_t i = 0; i < count && pos + 2 <= size; ++i, pos += 2) {
    portcullis::HeaderEdit e;
    e.kind = (data[pos] & 1) ? portcullis::HeaderEdit::Kind::kReplace
                             : portcullis::HeaderEdit::Kind::kRemove;
    e.occurrence = static_cast<int>(static_cast<std::int8_t>(data[pos])) >> 1;
    e.name = kNames[data[pos + 1] % std::size(kNames)];
    edits.push_back(std::move(e));
  }
  for (auto& e : edits) {
    if (e.kind != portcullis::HeaderEdit::Kind::kReplace) continue;
    const auto* start = reinterpret_cast<const char*>(data + pos);
    const std::size_t len = strnlen(start, size - pos);
    e.value.assign(start, len);
    pos = std::min(size, pos + len + 1);
  }
  const std::string_view message(reinterpret_cast<const char*>(data + pos), size - pos);
  if (!canonical(message)) return 0;  // the DATA framer refuses bare CR and LF before this

  const portcullis::HeaderBlock parsed =
      portcullis::parseHeaderBlock(StringReader(message), portcullis::HeaderBlockLimits{});
  if (parsed.status != portcullis::HeaderBlock::Status::kOk) return 0;  // refused before edits
  const std::string_view block = message.substr(0, parsed.bytes);
  if (!block.empty() && !block.ends_with("\r\n")) return 0;  // a message cut inside a header

  const portcullis::EditedHeaderBlock out = portcullis::editHeaderBlock(block, edits);
  if (edits.empty()) require(out.bytes == block, "no edits changed the block");
  require(canonical(out.bytes), "bare CR or LF in the edited block");
  require(out.bytes.empty() || out.bytes.ends_with("\r\n"), "edited block ends mid-line");
  require(out.bytes.find("\r\n\r\n") == std::string::npos && !out.bytes.starts_with("\r\n"),
          "empty line inside the edited block");

  const std::string again = out.bytes + "\r\nbody\r\n";
  const portcullis::HeaderBlock reparsed =
      portcullis::parseHeaderBlock(StringReader(again), portcullis::HeaderBlockLimits{});
  if (reparsed.status == portcullis::HeaderBlock::Status::kOk) {
    require(reparsed.bytes == out.bytes.size(), "the edited block ends somewhere else");
  }

  // Remove-all of a name no later edit writes again leaves no field of that name.
  for (std::size_t i = 0; i < edits.size(); ++i) {
    const auto& e = edits[i];
    if (e.kind != portcullis::HeaderEdit::Kind::kRemove || e.occurrence != 0) continue;
    bool rewritten = false;
    for (std::size_t j = i + 1; j < edits.size(); ++j) {
      rewritten |= edits[j].kind == portcullis::HeaderEdit::Kind::kReplace &&
                   sameName(edits[j].name, e.name);
    }
    if (rewritten || e.name.empty()) continue;
    for (const auto& f : reparsed.fields) {
      require(!sameName(f.name, e.name), "a removed header is still there");
    }
  }
  // Fields that no edit names keep their bytes and order: the edited block, with every named
  // field dropped, equals the original with every named field dropped.
  auto untouched = [&](std::string_view b) {
    std::string keep;
    bool skipping = false;
    std::size_t at = 0;
    while (at < b.size()) {
      const std::size_t eol = b.find("\r\n", at) + 2;
      const std::string_view line = b.substr(at, eol - at);
      if (line[0] != ' ' && line[0] != '\t') {
        const std::string_view name = line.substr(0, line.find(':'));
        skipping = false;
        for (const auto& e : edits) {
          std::string_view n = name;
          while (!n.empty() && (n.back() == ' ' || n.back() == '\t')) n.remove_suffix(1);
          skipping |= sameName(n, e.name);
        }
      }
      if (!skipping) keep.append(line);
      at = eol;
    }
    return keep;
  };
  require(untouched(out.bytes) == untouched(block), "an unedited field changed");
  return 0;
}
