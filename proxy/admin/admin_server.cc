// Admin endpoint. See admin_server.h.

#include "proxy/admin/admin_server.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include <cstring>

#include "proxy/admin/prometheus.h"

namespace portcullis {

AdminServer::AdminServer(event_base* base, const StatsRegistry& stats,
                         std::function<AdminStatus()> status)
    : stats_(stats), status_(std::move(status)), http_(evhttp_new(base)) {
  if (http_ == nullptr) return;
  // Every method reaches onRequest, which answers all but GET and HEAD with 405 and an Allow
  // header (RFC 9110 15.5.6); libevent's own refusal would be 501, "not implemented".
  evhttp_set_allowed_methods(http_, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                        EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                        EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
  // A scraper's request is one short line and a few headers: anything bigger is not one.
  evhttp_set_max_headers_size(http_, 8 * 1024);
  evhttp_set_max_body_size(http_, 1024);
  evhttp_set_timeout(http_, 10);
  evhttp_set_gencb(http_, &AdminServer::onRequest, this);
}

AdminServer::~AdminServer() {
  if (http_ != nullptr) evhttp_free(http_);
}

bool AdminServer::start(const SocketAddress& address, std::string* error) {
  if (http_ == nullptr) {
    *error = "cannot create the admin HTTP server";
    return false;
  }
  if (evhttp_bind_socket_with_handle(http_, address.host().c_str(), address.port()) == nullptr) {
    *error = "admin.listen: cannot listen on " + address.toString() + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

void AdminServer::respond(evhttp_request* request, int code, const char* reason,
                          const std::string& type, const std::string& body) {
  evkeyvalq* headers = evhttp_request_get_output_headers(request);
  evhttp_add_header(headers, "Content-Type", type.c_str());
  evhttp_add_header(headers, "Cache-Control", "no-store");
  evhttp_add_header(headers, "X-Content-Type-Options", "nosniff");
  if (type.starts_with("text/html")) {  // the page runs nothing and loads nothing
    evhttp_add_header(headers, "Content-Security-Policy",
                      "default-src 'none'; style-src 'unsafe-inline'");
  }
  evbuffer* out = evbuffer_new();
  evbuffer_add(out, body.data(), body.size());
  evhttp_send_reply(request, code, reason, out);
  evbuffer_free(out);
}

void AdminServer::onRequest(evhttp_request* request, void* self) {
  const auto* server = static_cast<const AdminServer*>(self);
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(request);
  const char* path = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
  const std::string p = path != nullptr ? path : "";
  const evhttp_cmd_type method = evhttp_request_get_command(request);
  if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
    evhttp_add_header(evhttp_request_get_output_headers(request), "Allow", "GET, HEAD");
    respond(request, 405, "Method Not Allowed", "text/plain",
            "method not allowed: the admin endpoint is read-only (GET or HEAD)\n");
    return;
  }
  const AdminStatus status = server->status_();
  if (p == "/metrics") {
    std::vector<GaugeSample> gauges = {
        {"portcullis_sessions_active",
         "Client sessions open now.",
         {},
         static_cast<double>(status.sessions)},
        {"portcullis_upstream_pooled_connections",
         "Idle MTA connections kept for reuse.",
         {},
         static_cast<double>(status.pooledUpstreams)},
        {"portcullis_upstream_up",
         "1 when the MTA answered the last probe.",
         {},
         status.upstreamReady ? 1.0 : 0.0},
        {"portcullis_draining",
         "1 once a SIGTERM started the drain.",
         {},
         status.draining ? 1.0 : 0.0},
        {"portcullis_spool_bytes",
         "Message bytes spooled now, by where.",
         {{"where", "memory"}},
         static_cast<double>(status.spoolMemoryBytes)},
        {"portcullis_spool_bytes",
         "Message bytes spooled now, by where.",
         {{"where", "disk"}},
         static_cast<double>(status.spoolDiskBytes)},
    };
    const auto scraped = [&gauges](const char* name, const char* help, std::uint64_t v,
                                   StatLabels labels = {}) {
      gauges.push_back({name, help, std::move(labels), static_cast<double>(v), true});
    };
    scraped("portcullis_dns_lookups_total", "Lookups filters asked the resolver for.",
            status.dnsLookups);
    scraped("portcullis_dns_cache_hits_total", "Lookups answered from the resolver's cache.",
            status.dnsCacheHits);
    scraped("portcullis_dns_queries_total", "DNS queries sent to the servers (cache misses).",
            status.dnsQueries);
    const char* errors =
        "DNS failures: query attempts timed out or failed, lookups rejected locally.";
    scraped("portcullis_dns_errors_total", errors, status.dnsTimeouts, {{"kind", "timeout"}});
    scraped("portcullis_dns_errors_total", errors, status.dnsFailures, {{"kind", "failure"}});
    scraped("portcullis_dns_errors_total", errors, status.dnsRejected, {{"kind", "rejected"}});
    respond(request, HTTP_OK, "OK", "text/plain; version=0.0.4; charset=utf-8",
            renderPrometheus(server->stats_.snapshot(), gauges));
  } else if (p == "/status" && server->page_) {
    respond(request, HTTP_OK, "OK", "text/html; charset=utf-8", renderStatusPage(server->page_()));
  } else if (p == "/healthz") {
    respond(request, HTTP_OK, "OK", "text/plain", "ok\n");
  } else if (p == "/readyz") {
    if (status.upstreamReady && !status.draining) {
      respond(request, HTTP_OK, "OK", "text/plain", "ready\n");
    } else {
      respond(request, 503, "Service Unavailable", "text/plain",
              status.draining ? "not ready: draining\n"
                              : "not ready: the MTA did not answer the last probe\n");
    }
  } else {
    respond(request, HTTP_NOTFOUND, "Not Found", "text/plain",
            "not found (try /metrics, /status, /healthz or /readyz)\n");
  }
}

}  // namespace portcullis
