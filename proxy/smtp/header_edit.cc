// Header block edits. See header_edit.h.

#include "proxy/smtp/header_edit.h"

#include <algorithm>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>

#include "proxy/base/header_util.h"

namespace portcullis {
namespace {

struct RawField {
  std::string_view name;  // as written, without trailing whitespace
  std::string bytes;      // the whole field, continuation lines and CRLFs included
};

bool wsp(char c) { return c == ' ' || c == '\t'; }

bool sameName(std::string_view a, std::string_view b) {
  // RFC 5322 1.2.2: header field names are case-insensitive.
  return std::ranges::equal(a, b, [](char x, char y) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    return lower(x) == lower(y);
  });
}

// Splits the block into fields. A line that starts with whitespace continues the field before
// it (RFC 5322 2.2.3); a line without a colon cannot be in a block parseHeaderBlock produced,
// but is kept as a field of its own (with an empty name) so nothing is dropped.
std::vector<RawField> splitFields(std::string_view block) {
  std::vector<RawField> fields;
  std::size_t pos = 0;
  while (pos < block.size()) {
    std::size_t eol = block.find("\r\n", pos);
    eol = eol == std::string_view::npos ? block.size() : eol + 2;
    const std::string_view line = block.substr(pos, eol - pos);
    if (wsp(line.front()) && !fields.empty()) {
      fields.back().bytes.append(line);
    } else {
      std::string_view name = line.substr(0, std::min(line.find(':'), line.size()));
      if (name.size() == line.size()) name = {};
      while (!name.empty() && wsp(name.back())) name.remove_suffix(1);
      fields.push_back({name, std::string(line)});
    }
    pos = eol;
  }
  return fields;
}

// Indices of the fields named `name`, top to bottom.
std::vector<std::size_t> named(const std::vector<RawField>& fields, std::string_view name) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (sameName(fields[i].name, name)) out.push_back(i);
  }
  return out;
}

}  // namespace

EditedHeaderBlock editHeaderBlock(std::string_view block, const std::vector<HeaderEdit>& edits) {
  EditedHeaderBlock out;
  std::vector<RawField> fields = splitFields(block);
  std::size_t onTop = 0;  // fields added on top so far (a later edit sees them too)
  for (const HeaderEdit& e : edits) {
    // An edit that names no valid header (RFC 5322 2.2 ftext) is not applied.
    if (!validHeaderName(e.name)) {
      out.skipped.push_back(e.name);
      continue;
    }
    const std::vector<std::size_t> hits = named(fields, e.name);
    if (e.kind == HeaderEdit::Kind::kReplace) {
      const std::optional<std::string> line = formatHeader(e.name, e.value);
      if (hits.empty()) {
        fields.insert(fields.begin() + static_cast<std::ptrdiff_t>(onTop++), {e.name, *line});
        ++out.added;
      } else {
        fields[hits.front()].bytes = *line;
        fields[hits.front()].name = e.name;  // `e` outlives `fields`
        ++out.replaced;
      }
      continue;
    }
    std::vector<std::size_t> gone;
    if (e.occurrence == 0) {
      gone = hits;
    } else if (e.occurrence > 0 && static_cast<std::size_t>(e.occurrence) <= hits.size()) {
      gone.push_back(hits[static_cast<std::size_t>(e.occurrence) - 1]);
    } else if (e.occurrence < 0 &&
               static_cast<std::size_t>(-static_cast<long>(e.occurrence)) <= hits.size()) {
      gone.push_back(
          hits[hits.size() - static_cast<std::size_t>(-static_cast<long>(e.occurrence))]);
    }
    // Bottom first, so the indices above stay valid.
    std::ranges::sort(gone, std::greater<>());
    for (const std::size_t at : gone) {
      fields.erase(fields.begin() + static_cast<std::ptrdiff_t>(at));
      if (at < onTop) --onTop;
    }
    out.removed += static_cast<int>(gone.size());
  }
  for (const RawField& f : fields) out.bytes += f.bytes;
  return out;
}

}  // namespace portcullis
