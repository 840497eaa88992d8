// The /status page. See status_page.h.

#include "proxy/admin/status_page.h"

#include <algorithm>
#include <cstddef>

namespace portcullis {
namespace {

constexpr std::size_t kMaxSessionsShown = 200;  // the page stays small under a flood
constexpr int kBarWidth = 8;
constexpr int kRowHeight = 36;
constexpr int kLabelWidth = 110;

std::string num(std::int64_t v) { return std::to_string(v); }

std::string refusalChart(const RefusalRing::Picture& p) {
  std::uint32_t peak = 1;
  for (const auto& row : p) peak = std::max(peak, *std::max_element(row.begin(), row.end()));
  const int width = kLabelWidth + static_cast<int>(RefusalRing::kSlots) * kBarWidth + 10;
  const int height = static_cast<int>(p.size()) * kRowHeight + 20;
  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"refusal-chart\" width=\"" +
                    num(width) + "\" height=\"" + num(height) + "\" role=\"img\">\n";
  svg +=
      "<title>Refusals per stage and minute, last hour (peak " + num(peak) + " a minute)</title>\n";
  for (std::size_t s = 0; s < p.size(); ++s) {
    const int top = static_cast<int>(s) * kRowHeight;
    const int base = top + kRowHeight - 6;
    svg += "<text x=\"0\" y=\"" + num(base) + "\" class=\"row\">" +
           std::string(RefusalRing::kStages[s]) + "</text>\n";
    svg += "<line x1=\"" + num(kLabelWidth) + "\" y1=\"" + num(base) + "\" x2=\"" +
           num(width - 10) + "\" y2=\"" + num(base) + "\" stroke=\"#bbb\"/>\n";
    for (std::size_t i = 0; i < RefusalRing::kSlots; ++i) {
      const std::uint32_t n = p[s][i];
      if (n == 0) continue;
      const int h = std::max(1, static_cast<int>(n * (kRowHeight - 10) / peak));
      svg += "<rect class=\"bar\" data-stage=\"" + std::string(RefusalRing::kStages[s]) +
             "\" x=\"" + num(kLabelWidth + static_cast<int>(i) * kBarWidth) + "\" y=\"" +
             num(base - h) + "\" width=\"" + num(kBarWidth - 1) + "\" height=\"" + num(h) +
             "\" fill=\"#c0392b\"><title>" + std::string(RefusalRing::kStages[s]) + ": " + num(n) +
             " refused, " + num(static_cast<std::int64_t>(RefusalRing::kSlots - 1 - i)) +
             " min ago</title></rect>\n";
    }
  }
  const int axis = static_cast<int>(p.size()) * kRowHeight + 14;
  svg += "<text x=\"" + num(kLabelWidth) + "\" y=\"" + num(axis) +
         "\" class=\"axis\">60 min ago</text>\n<text x=\"" + num(width - 40) + "\" y=\"" +
         num(axis) + "\" class=\"axis\">now</text>\n</svg>\n";
  return svg;
}

}  // namespace

std::string htmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          out += "\xef\xbf\xbd";  // U+FFFD
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string renderStatusPage(const StatusPageInput& in) {
  std::string h =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
      "style-src 'unsafe-inline'\">\n<title>portcullis status: " +
      htmlEscape(in.hostname) +
      "</title>\n<style>body{font:14px sans-serif;margin:1em}table{border-collapse:collapse}"
      "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
      ".row{font:12px sans-serif}.axis{font:11px sans-serif;fill:#666}</style>\n"
      "</head><body>\n<h1>portcullis on " +
      htmlEscape(in.hostname) + "</h1>\n<p id=\"health\">MTA: <b>" +
      (in.upstreamReady ? "answering" : "not answering") + "</b>" +
      (in.draining ? "; <b>draining</b>" : "") + "</p>\n";

  h += "<h2>Refusals per stage, last hour</h2>\n" + refusalChart(in.refusals);
  h += "<table id=\"refusals\"><tr><th>stage</th><th>last hour</th><th>this minute</th></tr>\n";
  for (std::size_t s = 0; s < in.refusals.size(); ++s) {
    std::int64_t total = 0;
    for (const std::uint32_t n : in.refusals[s]) total += n;
    const std::string stage(RefusalRing::kStages[s]);
    h += "<tr data-stage=\"";
    h += stage;
    h += "\"><td>";
    h += stage;
    h += "</td><td class=\"total\">";
    h += num(total);
    h += "</td><td>";
    h += num(in.refusals[s].back());
    h += "</td></tr>\n";
  }
  h += "</table>\n";

  h += "<h2>Live sessions: <span id=\"session-count\">" +
       num(static_cast<std::int64_t>(in.sessions.size())) +
       "</span></h2>\n<table id=\"sessions\"><tr><th>session</th><th>client</th><th>HELO</th>"
       "<th>stage</th><th>age (s)</th></tr>\n";
  const std::size_t shown = std::min(in.sessions.size(), kMaxSessionsShown);
  for (std::size_t i = 0; i < shown; ++i) {
    const LiveSession& s = in.sessions[i];
    h += "<tr class=\"session\"><td>" + htmlEscape(s.id) + "</td><td class=\"client\">" +
         htmlEscape(s.client) + "</td><td class=\"helo\">" + htmlEscape(s.helo) +
         "</td><td class=\"stage\">" + htmlEscape(s.stage) + "</td><td class=\"age\">" +
         num(s.ageSeconds) + "</td></tr>\n";
  }
  h += "</table>\n";
  if (shown < in.sessions.size()) {
    h += "<p>and " + num(static_cast<std::int64_t>(in.sessions.size() - shown)) + " more</p>\n";
  }
  h += "</body></html>\n";
  return h;
}

}  // namespace portcullis
