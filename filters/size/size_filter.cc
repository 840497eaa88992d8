// size filter. See size_filter.h.

#include "filters/size/size_filter.h"

#include <string>

namespace portcullis {

void SizeFilter::onMailFrom(const SessionView& s, Next next) {
  const auto& declared = s.envelope().declaredSize();
  if (declared && *declared > s.limits().maxMessageSize()) {
    next(Verdict::reject(
        Reply::permanent(552, "5.3.4", "Message size exceeds fixed maximum message size"),
        "declared SIZE=" + std::to_string(*declared) + " > " +
            std::to_string(s.limits().maxMessageSize())));
    return;
  }
  next(Verdict::proceed());
}

void SizeFilter::onEndOfMessage(const SessionView& s, Next next) {
  if (s.message().oversized()) {
    next(Verdict::reject(
        Reply::permanent(552, "5.3.4", "Message size exceeds fixed maximum message size"),
        "message size " + std::to_string(s.message().size()) + " > " +
            std::to_string(s.limits().maxMessageSize())));
    return;
  }
  next(Verdict::proceed());
}

FilterCreator SizeFilterFactory::configure(const ConfigSection&) const {
  return [](const FilterContext&) { return std::make_unique<SizeFilter>(); };
}

}  // namespace portcullis
