// rspamd filter. See rspamd_filter.h.

#include "filters/rspamd/rspamd_filter.h"

#include <algorithm>
#include <charconv>
#include <memory>

#include "filters/rspamd/rspamd_reply.h"
#include "portcullis/connector.h"
#include "portcullis/http_client.h"
#include "portcullis/log.h"
#include "portcullis/reply.h"

namespace portcullis {
namespace {

// Envelope addresses are at most 256 octets (RFC 5321 4.5.3.1.3), a HELO name 255.
constexpr std::size_t kMaxHeaderFact = 512;

ScanResult failure(std::string error) {
  return {ScanResult::Kind::kError, std::nullopt, {}, std::move(error)};
}

ScanResult scanResultOf(const HttpResult& http) {
  switch (http.kind) {
    case HttpResult::Kind::kTimeout:
      return failure(http.error);
    case HttpResult::Kind::kError:
      return failure("http: " + sanitizeScannerText(http.error, 120));
    case HttpResult::Kind::kReply:
      break;
  }
  if (http.status != 200) return failure("HTTP status " + std::to_string(http.status));
  RspamdParse parsed = parseRspamdReply(http.body);
  if (!parsed.reply) return failure("bad reply: " + parsed.error);
  return rspamdScanResult(*parsed.reply);
}

// One POST in flight; destroying it cancels the request.
class RspamdExchange final : public ScanExchange {
 public:
  explicit RspamdExchange(std::function<void(ScanResult)> done) : done_(std::move(done)) {}

  void start(const ScanRequest& request, const RspamdEndpoint& endpoint) {
    if (request.context.http == nullptr) {
      // Reported from the loop like every other end (the filter checked that timers exist).
      failLater_ = request.context.timers->start(std::chrono::milliseconds(0),
                                                 [this] { complete(failure("no HTTP client")); });
      return;
    }
    HttpRequest http;
    http.host = endpoint.host;
    http.port = endpoint.port;
    http.path = endpoint.path;
    http.headers = rspamdRequestHeaders(request.session);
    http.body = &request.message;
    http.timeout = request.timeout;
    http.maxReplyBody = kMaxRspamdReply;
    call_ = request.context.http->post(std::move(http),
                                       [this](const HttpResult& r) { complete(scanResultOf(r)); });
  }

 private:
  void complete(ScanResult result) {
    std::function<void(ScanResult)> done = std::move(done_);
    done(std::move(result));  // may destroy this: touch nothing afterwards
  }

  std::function<void(ScanResult)> done_;
  std::unique_ptr<TimerHandle> failLater_;
  std::unique_ptr<HttpCall> call_;  // last: cancelled first
};

// The breaker's health check: GET /ping on the same worker, which answers "pong".
class RspamdProbe final : public ScanExchange {
 public:
  explicit RspamdProbe(std::function<void(bool, std::string)> done) : done_(std::move(done)) {}

  void start(const ScanRequest& request, const RspamdEndpoint& endpoint) {
    if (request.context.http == nullptr) {
      failLater_ = request.context.timers->start(std::chrono::milliseconds(0),
                                                 [this] { complete(false, "no HTTP client"); });
      return;
    }
    HttpRequest http;
    http.method = HttpRequest::Method::kGet;
    http.host = endpoint.host;
    http.port = endpoint.port;
    http.path = "/ping";
    http.timeout = request.timeout;
    http.maxReplyBody = kMaxPingReply;
    call_ = request.context.http->post(std::move(http), [this](const HttpResult& r) {
      if (r.kind != HttpResult::Kind::kReply) {
        complete(false, sanitizeScannerText(r.error, 120));
      } else if (r.status != 200 || sanitizeScannerText(r.body, 16) != "pong") {
        complete(false,
                 "HTTP status " + std::to_string(r.status) + " body " + logQuote(r.body, 40));
      } else {
        complete(true, "");
      }
    });
  }

 private:
  static constexpr std::size_t kMaxPingReply = 64;

  void complete(bool healthy, std::string detail) {
    std::function<void(bool, std::string)> done = std::move(done_);
    done(healthy, std::move(detail));  // may destroy this: touch nothing afterwards
  }

  std::function<void(bool, std::string)> done_;
  std::unique_ptr<TimerHandle> failLater_;
  std::unique_ptr<HttpCall> call_;  // last: cancelled first
};

class RspamdClient final : public ScanClient {
 public:
  explicit RspamdClient(RspamdEndpoint endpoint) : endpoint_(std::move(endpoint)) {}
  std::string_view scannerName() const override { return "rspamd"; }
  std::unique_ptr<ScanExchange> start(const ScanRequest& request,
                                      std::function<void(ScanResult)> done) const override {
    auto exchange = std::make_unique<RspamdExchange>(std::move(done));
    exchange->start(request, endpoint_);
    return exchange;
  }
  bool canProbe() const override { return true; }
  std::unique_ptr<ScanExchange> probe(const ScanRequest& request,
                                      std::function<void(bool, std::string)> done) const override {
    auto exchange = std::make_unique<RspamdProbe>(std::move(done));
    exchange->start(request, endpoint_);
    return exchange;
  }

 private:
  RspamdEndpoint endpoint_;
};

}  // namespace

std::optional<RspamdEndpoint> parseRspamdUrl(std::string_view url, std::string& why) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) {
    why = "must start with http:// (rspamd's workers speak plain HTTP on loopback)";
    return std::nullopt;
  }
  url.remove_prefix(kScheme.size());
  RspamdEndpoint e;
  const std::size_t slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  if (slash != std::string_view::npos) {
    const std::string_view path = url.substr(slash);
    const bool plain = std::ranges::all_of(path, [](char c) { return c > ' ' && c < 0x7f; });
    if (!plain || path.size() > 256) {
      why = "the path must be printable ASCII, at most 256 bytes";
      return std::nullopt;
    }
    if (path != "/") e.path = std::string(path);
  }
  std::string_view port;
  if (authority.starts_with('[')) {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      why = "unclosed [ in the address";
      return std::nullopt;
    }
    e.host = std::string(authority.substr(1, close - 1));
    const std::string_view rest = authority.substr(close + 1);
    if (!rest.empty() && !rest.starts_with(':')) {
      why = "junk after the address";
      return std::nullopt;
    }
    if (!rest.empty()) port = rest.substr(1);
  } else {
    const std::size_t colon = authority.find(':');
    e.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (!port.empty()) {
    unsigned v = 0;
    const auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
    if (ec != std::errc() || ptr != port.data() + port.size() || v == 0 || v > 65535) {
      why = "bad port";
      return std::nullopt;
    }
    e.port = static_cast<std::uint16_t>(v);
  }
  // The Connector's own check of a numeric address: no names, so nothing is ever resolved.
  const std::string probe = (e.host.find(':') != std::string::npos ? "[" + e.host + "]" : e.host) +
                            ":" + std::to_string(e.port);
  if (auto problem = checkConnectAddress(probe)) {
    why = "\"" + e.host + "\": " + *problem;
    return std::nullopt;
  }
  return e;
}

std::vector<std::pair<std::string, std::string>> rspamdRequestHeaders(const SessionView& s) {
  std::vector<std::pair<std::string, std::string>> h;
  const auto add = [&h](std::string name, std::string_view value) {
    std::string clean = sanitizeText(value, kMaxHeaderFact);
    if (!clean.empty()) h.emplace_back(std::move(name), std::move(clean));
  };
  add("IP", s.client().address());
  add("Helo", s.helo());
  // Only a name that resolves back to the address (rspamd trusts Hostname as verified).
  if (s.client().reverse() == ReverseStatus::kVerified) add("Hostname", s.client().name());
  const EnvelopeView& env = s.envelope();
  add("From", env.nullSender() ? std::string_view("<>") : env.mailFrom());
  for (const std::string_view rcpt : env.recipients()) add("Rcpt", rcpt);
  add("Queue-Id", s.id());
  if (s.tls().active()) {
    add("TLS-Cipher", s.tls().cipher());
    add("TLS-Version", s.tls().protocol());
  }
  return h;
}

FilterCreator RspamdFilterFactory::configure(const ConfigSection& section) const {
  auto config = std::make_shared<const ScannerConfig>(parseScannerLimits(section));
  const std::string url = section.getString("url", std::string("http://127.0.0.1:11333"));
  std::string why;
  auto endpoint = parseRspamdUrl(url, why);
  if (!endpoint) section.fail("url", "\"" + url + "\": " + why);
  return makeScannerCreator(config, std::make_shared<const RspamdClient>(std::move(*endpoint)));
}

}  // namespace portcullis
