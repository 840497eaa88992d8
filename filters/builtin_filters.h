#pragma once
// The built-in filters, for the daemon (proxy/main.cc) and tests: not part of the public API,
// which a filter sees. Registration order matters where a factory's traits put it at the front
// of the chain (always-on filters are inserted in this order).

#include "portcullis/filter_registry.h"

namespace portcullis {

// Registers every built-in filter (defined in filters/), one line each.
void registerBuiltinFilters(FilterRegistry& registry);

}  // namespace portcullis
