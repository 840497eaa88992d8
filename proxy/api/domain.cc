// checkDomainName() and domainErrorText(), declared in include/portcullis/domain.h.

#include <algorithm>

#include "portcullis/domain.h"

namespace portcullis {
namespace {

// RFC 1035 2.3.4: a label is at most 63 octets.
constexpr std::size_t kMaxLabel = 63;

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// RFC 1035 2.3.1 letters, digits, hyphen; '_' as DNS allows it (RFC 2181 11).
bool isNameChar(char c, bool utf8) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || isDigit(c) || c == '-' || c == '_' ||
         (utf8 && static_cast<unsigned char>(c) >= 0x80);
}

DomainError checkLabel(std::string_view label, bool last, const DomainSyntax& syntax) {
  if (label.empty()) return DomainError::kEmptyLabel;
  if (label.size() > kMaxLabel) return DomainError::kLabelTooLong;
  if (!std::all_of(label.begin(), label.end(),
                   [&syntax](char c) { return isNameChar(c, syntax.utf8); })) {
    return DomainError::kBadCharacter;
  }
  if (!syntax.hostname) return DomainError::kNone;
  if (label.front() == '-' || label.back() == '-') return DomainError::kEdgeHyphen;
  if (last && std::all_of(label.begin(), label.end(), isDigit)) return DomainError::kNumericTld;
  return DomainError::kNone;
}

}  // namespace

DomainError checkDomainName(std::string_view name, const DomainSyntax& syntax) {
  if (name.empty()) return DomainError::kEmpty;
  if (name.size() > syntax.maxLength) return DomainError::kTooLong;
  if (!syntax.labels) {
    const bool ok = std::all_of(name.begin(), name.end(), [&syntax](char c) {
      return c == '.' || isNameChar(c, syntax.utf8);
    });
    return ok ? DomainError::kNone : DomainError::kBadCharacter;
  }
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = name.find('.', start);
    const bool last = dot == std::string_view::npos;
    const DomainError e =
        checkLabel(name.substr(start, last ? std::string_view::npos : dot - start), last, syntax);
    if (e != DomainError::kNone || last) return e;
    start = dot + 1;
  }
}

std::string domainErrorText(DomainError error, const DomainSyntax& syntax) {
  switch (error) {
    case DomainError::kNone:
      return "valid";
    case DomainError::kEmpty:
      return "empty name";
    case DomainError::kTooLong:
      return "longer than " + std::to_string(syntax.maxLength) + " octets";
    case DomainError::kEmptyLabel:
      return "empty label";
    case DomainError::kLabelTooLong:
      return "label longer than 63 octets";
    case DomainError::kBadCharacter:
      return syntax.hostname ? "character not allowed in a hostname"
                             : "character not allowed in a domain";
    case DomainError::kEdgeHyphen:
      return "label starts or ends with a hyphen";
    case DomainError::kNumericTld:
      return "numeric top-level label";
  }
  return "unknown error";
}

}  // namespace portcullis
