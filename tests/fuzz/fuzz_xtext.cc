// Fuzz target: xtextEncode and xclientCommands (proxy/xtext.cc).
// Input: consumed with FuzzedDataProvider into an XclientIdentity and the attribute list the
// upstream advertised; the whole input is also xtext-encoded on its own.
// Invariants: never crash; xtext output holds only xchar (RFC 3461 4: "!".."~" except "+" and
// "=") and "+HH" with upper-case hex, and decodes back to the input (reference decoder below);
// every XCLIENT line starts with "XCLIENT", is at most 510 octets (512 with CRLF), has no CR, LF
// or NUL, and is made of " NAME=value" items with no space inside a value; each attribute is one
// the upstream advertised, appears once, carries the identity's value (with "IPV6:" for IPv6
// addresses), and is left out only when it is empty or could not fit on a line of its own.

#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/smtp/ehlo.h"
#include "proxy/smtp/xtext.h"

namespace {

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "invariant violated: %s\n", what);
  std::abort();
}

constexpr std::size_t kMaxLine = 510;  // 512 with CRLF (RFC 5321 4.5.3.1.4)

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // RFC 3461 4: hexchar is upper case only
}

// Reference xtext decoder (RFC 3461 4). nullopt for anything that is not strict xtext.
std::optional<std::string> xtextDecode(std::string_view in) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c == '+') {
      if (i + 2 >= in.size()) return std::nullopt;
      const int hi = hexValue(in[i + 1]);
      const int lo = hexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c >= 33 && c <= 126 && c != '=') {
      out.push_back(static_cast<char>(c));
    } else {
      return std::nullopt;
    }
  }
  return out;
}

void checkXtext(std::string_view in) {
  const std::string enc = portcullis::xtextEncode(in);
  require(enc.size() >= in.size() && enc.size() <= 3 * in.size(), "xtext size");
  const auto dec = xtextDecode(enc);
  require(dec.has_value(), "xtext output is not strict xtext");
  require(*dec == in, "xtext does not round-trip");
  // Only characters that need it are encoded (minimal form).
  for (std::size_t i = 0; i < enc.size(); ++i) {
    if (enc[i] != '+') continue;
    const int v = hexValue(enc[i + 1]) * 16 + hexValue(enc[i + 2]);
    require(v < 33 || v > 126 || v == '+' || v == '=', "xtext encoded a plain xchar");
    i += 2;
  }
}

const char* const kAttributes[] = {"NAME",  "ADDR",     "PORT",     "PROTO", "HELO",
                                   "LOGIN", "DESTADDR", "DESTPORT", "IDENT", "REVERSE_NAME"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  checkXtext(std::string_view(reinterpret_cast<const char*>(data), size));

  FuzzedDataProvider fdp(data, size);
  portcullis::UpstreamCapabilities up;
  const auto mask = fdp.ConsumeIntegral<std::uint16_t>();
  for (std::size_t i = 0; i < std::size(kAttributes); ++i) {
    if ((mask >> i) & 1) up.xclientAttributes.emplace_back(kAttributes[i]);
  }
  portcullis::XclientIdentity id;
  id.ipv6 = fdp.ConsumeBool();
  id.port = fdp.ConsumeIntegral<std::uint16_t>();
  id.destPort = fdp.ConsumeIntegral<std::uint16_t>();
  id.name = fdp.ConsumeRandomLengthString(600);
  id.addr = fdp.ConsumeRandomLengthString(600);
  id.proto = fdp.ConsumeRandomLengthString(600);
  id.login = fdp.ConsumeRandomLengthString(600);
  id.destAddr = fdp.ConsumeRandomLengthString(600);
  id.helo = fdp.ConsumeRemainingBytesAsString();

  std::map<std::string, std::string> expected;
  auto want = [&](const char* name, const std::string& value) {
    if (!value.empty() && up.hasXclientAttribute(name)) expected[name] = value;
  };
  want("NAME", id.name);
  want("ADDR", id.ipv6 ? "IPV6:" + id.addr : id.addr);
  want("PORT", id.port ? std::to_string(id.port) : "");
  want("PROTO", id.proto);
  want("HELO", id.helo);
  want("LOGIN", id.login);
  want("DESTADDR", id.ipv6 && !id.destAddr.empty() ? "IPV6:" + id.destAddr : id.destAddr);
  want("DESTPORT", id.destPort ? std::to_string(id.destPort) : "");

  const auto lines = portcullis::xclientCommands(id, up);
  std::map<std::string, std::string> seen;
  for (const auto& line : lines) {
    require(line.size() <= kMaxLine, "XCLIENT line over 510 octets");
    require(line.rfind("XCLIENT ", 0) == 0, "line does not start with \"XCLIENT \"");
    require(line.find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos,
            "CR, LF or NUL in an XCLIENT line");
    std::string_view rest = std::string_view(line).substr(7);
    require(!rest.empty(), "XCLIENT line without attributes");
    while (!rest.empty()) {
      require(rest.front() == ' ', "attributes not separated by one space");
      rest.remove_prefix(1);
      const auto end = rest.find(' ');
      const std::string_view item = rest.substr(0, end);
      rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
      const auto eq = item.find('=');
      require(eq != std::string_view::npos && eq > 0, "attribute without NAME=");
      const std::string name(item.substr(0, eq));
      require(up.hasXclientAttribute(name), "attribute the upstream did not advertise");
      const auto value = xtextDecode(item.substr(eq + 1));
      require(value.has_value(), "attribute value is not xtext");
      require(!value->empty(), "empty attribute value");
      require(seen.emplace(name, *value).second, "attribute sent twice");
    }
  }
  for (const auto& [name, value] : expected) {
    const auto it = seen.find(name);
    const std::size_t itemSize = 1 + name.size() + 1 + portcullis::xtextEncode(value).size();
    if (it == seen.end()) {
      // Dropping is only acceptable when the item cannot fit on a line by itself.
      require(std::string_view("XCLIENT").size() + itemSize > kMaxLine,
              "attribute dropped although it fits on a line");
      continue;
    }
    require(it->second == value, "attribute carries the wrong value");
  }
  require(seen.size() <= expected.size(), "unexpected attribute");
  return 0;
}
