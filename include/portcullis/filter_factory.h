#pragma once
// FilterFactory: builds filters from config, by name, through the registry.
// configure() runs once at config load: it validates the section (throwing ConfigError naming
// the key) and returns a creator that captures an immutable config shared by every session.
// The creator is then called once per session to make that session's Filter instance, with the
// services it may use. traits() says what the filter needs from the core and whether it is
// always on; the core reads them instead of naming filters.
// Chain-level keys (name, mode, timeout, on_error, defer_to) are read by the core, not here.

#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "portcullis/config_section.h"
#include "portcullis/connector.h"
#include "portcullis/filter.h"
#include "portcullis/http_client.h"
#include "portcullis/log.h"
#include "portcullis/resolver.h"
#include "portcullis/stats.h"
#include "portcullis/timer.h"

namespace portcullis {

// Services a filter instance may use; they outlive every session. In a running daemon none is
// null; in tests any may be (a filter then does without: no log, no counts).
struct FilterContext {
  Resolver* resolver = nullptr;
  const Log* log = nullptr;
  Stats* stats = nullptr;
  Timers* timers = nullptr;        // on the session's event loop
  Connector* connector = nullptr;  // outgoing connections (scanners), on the same loop
  HttpClient* http = nullptr;      // outgoing HTTP requests (rspamd), on the same loop
};

using FilterCreator = std::function<std::unique_ptr<Filter>(const FilterContext&)>;

struct FilterTraits {
  // Enforces a resource limit: always in the chain (added at the front when the config does not
  // list it) and never in observe mode.
  bool alwaysOn = false;
  // Judges the core's reverse lookup of the client (SessionView::client().reverse()), so the
  // config must keep dns.reverse_lookup on.
  bool needsReverseLookup = false;
  // Bounds each of its own waits by the filter's `timeout` and reports a failure through
  // Next::fail() (a scanner): the chain's timer becomes a backstop a grace period later, so
  // that the filter's own, more precise, failure is the one that counts.
  bool timesItself = false;
  // The reply for a failure under `on_error: tempfail`; the chain's 451 4.3.0 when unset.
  std::optional<Reply> failureReply = std::nullopt;
};

class FilterFactory {
 public:
  virtual ~FilterFactory() = default;
  virtual std::string_view name() const = 0;
  virtual FilterTraits traits() const { return {}; }
  virtual FilterCreator configure(const ConfigSection& section) const = 0;
};

}  // namespace portcullis
