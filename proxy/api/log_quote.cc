// logQuote. See include/portcullis/log.h.

#include <algorithm>

#include "portcullis/log.h"
#include "portcullis/reply.h"

namespace portcullis {

std::string logQuote(std::string_view value, std::size_t max) {
  std::string out = sanitizeText(value, max);
  std::replace(out.begin(), out.end(), '"', '\'');
  std::replace(out.begin(), out.end(), '\\', '/');
  return "\"" + out + "\"";
}

}  // namespace portcullis
