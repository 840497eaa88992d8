#pragma once
// Text encodings for identity sent to the MTA: RFC 3461 xtext (XCLIENT attribute values) and
// the XCLIENT command lines themselves (Postfix XCLIENT_README). Pure.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/smtp/ehlo.h"

namespace portcullis {

// RFC 3461 4: characters outside "!".."~", and "+" and "=", become "+HH".
std::string xtextEncode(std::string_view in);

struct XclientIdentity {
  std::string name;  // verified hostname, "[UNAVAILABLE]" or "[TEMPUNAVAIL]"
  std::string addr;  // textual IP
  bool ipv6 = false;
  std::uint16_t port = 0;
  std::string proto;  // "SMTP" or "ESMTP"
  std::string helo;   // as the client sent it; empty if none yet
  std::string login;  // SASL login, when relevant (not yet)
  std::string destAddr;
  std::uint16_t destPort = 0;
};

// The XCLIENT command lines (without CRLF) carrying every attribute the upstream advertises,
// split so that no line exceeds the 512-octet command limit.
std::vector<std::string> xclientCommands(const XclientIdentity& id,
                                         const UpstreamCapabilities& upstream);

}  // namespace portcullis
