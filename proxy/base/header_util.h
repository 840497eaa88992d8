#pragma once
// Header fields that portcullis adds to a message: validated names, sanitised values, folded at
// 78 columns with CRLF line ends (RFC 5322 2.1.1, 2.2.3). Text from the outside (DNSBL TXT,
// scanner output) can never inject a line break or a new header here. Pure.

#include <optional>
#include <string>
#include <string_view>

namespace portcullis {

// RFC 5322 3.6.8 field-name: printable US-ASCII except ":", 1..76 octets here.
bool validHeaderName(std::string_view name);

// "Name: value\r\n", folded; nullopt when the name is invalid. The value is sanitised
// (control characters dropped, whitespace runs collapsed) and capped at maxValue octets.
std::optional<std::string> formatHeader(std::string_view name, std::string_view value,
                                        std::size_t maxValue = 2048);

}  // namespace portcullis
