// rdns filter (placeholder).

#include "filters/rdns/rdns_filter.h"

namespace portcullis {

FilterCreator RdnsFilterFactory::configure(const ConfigSection& section) const {
  section.fail("name", "the rdns filter is not implemented yet");
}

}  // namespace portcullis
