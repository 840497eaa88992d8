// xtext and XCLIENT lines. See xtext.h.

#include "proxy/smtp/xtext.h"

namespace portcullis {

std::string xtextEncode(std::string_view in) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(in.size());
  for (const char ch : in) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 33 && c <= 126 && c != '+' && c != '=') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('+');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::vector<std::string> xclientCommands(const XclientIdentity& id,
                                         const UpstreamCapabilities& upstream) {
  std::vector<std::pair<std::string, std::string>> attrs;
  auto add = [&](const char* name, const std::string& value) {
    if (!value.empty() && upstream.hasXclientAttribute(name)) attrs.emplace_back(name, value);
  };
  add("NAME", id.name);
  // Postfix: IPv6 addresses carry the "IPV6:" prefix.
  add("ADDR", id.ipv6 ? "IPV6:" + id.addr : id.addr);
  add("PORT", id.port ? std::to_string(id.port) : std::string());
  add("PROTO", id.proto);
  add("HELO", id.helo);
  add("LOGIN", id.login);
  add("DESTADDR", id.ipv6 && !id.destAddr.empty() ? "IPV6:" + id.destAddr : id.destAddr);
  add("DESTPORT", id.destPort ? std::to_string(id.destPort) : std::string());

  // 512 octets including "XCLIENT" and CRLF.
  constexpr std::size_t kMaxLine = 510;
  std::vector<std::string> lines;
  std::string line = "XCLIENT";
  for (const auto& [name, value] : attrs) {
    const std::string item = " " + name + "=" + xtextEncode(value);
    if (line.size() + item.size() > kMaxLine && line != "XCLIENT") {
      lines.push_back(std::move(line));
      line = "XCLIENT";
    }
    if (line.size() + item.size() <= kMaxLine) line += item;
  }
  if (line != "XCLIENT") lines.push_back(std::move(line));
  return lines;
}

}  // namespace portcullis
