#pragma once
// The /status page: one self-contained HTML document (no scripts, no external assets, the
// picture is inline SVG) for an admin's browser: the live sessions (client, HELO name, stage,
// age) and the refusals per stage over the last hour, a row of 60 per-minute bars per stage.
// Everything a client chose (its HELO name; its address, via PROXY) is HTML-escaped. Pure: no
// I/O.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/admin/refusal_ring.h"

namespace portcullis {

struct LiveSession {
  std::string id;
  std::string client;  // address
  std::string helo;    // as the client gave it; "" before HELO/EHLO
  std::string stage;   // its SMTP state (stateName)
  std::int64_t ageSeconds = 0;
};

struct StatusPageInput {
  std::string hostname;
  std::vector<LiveSession> sessions;
  RefusalRing::Picture refusals{};
  bool upstreamReady = false;
  bool draining = false;
};

// &, <, >, " and ' as entities; control characters as U+FFFD, so nothing a client sends can
// open a tag, an attribute or an entity.
std::string htmlEscape(std::string_view text);

std::string renderStatusPage(const StatusPageInput& in);

}  // namespace portcullis
