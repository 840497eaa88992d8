// recipients filter. See recipients_filter.h.

#include "filters/recipients/recipients_filter.h"

#include <string>

namespace portcullis {

void RecipientsFilter::onRcptTo(const SessionView& s, Next next) {
  if (s.envelope().recipients().size() >= s.limits().maxRecipients()) {
    next(Verdict::tempfail(
        Reply::transient(452, "4.5.3", "Error: too many recipients"),
        "recipient limit " + std::to_string(s.limits().maxRecipients()) + " reached"));
    return;
  }
  next(Verdict::proceed());
}

FilterCreator RecipientsFilterFactory::configure(const ConfigSection&) const {
  return [](const FilterContext&) { return std::make_unique<RecipientsFilter>(); };
}

}  // namespace portcullis
