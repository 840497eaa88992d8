// sender_domain filter (placeholder).

#include "filters/sender_domain/sender_domain_filter.h"

namespace portcullis {

FilterCreator SenderDomainFilterFactory::configure(const ConfigSection& section) const {
  section.fail("name", "the sender_domain filter is not implemented yet");
}

}  // namespace portcullis
