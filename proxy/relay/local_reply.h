#pragma once
// A reply portcullis writes itself (not one relayed from the MTA): one line, any code, with an
// enhanced status code. Reply::make() validates; our own texts always pass.

#include <string>
#include <string_view>

#include "portcullis/reply.h"

namespace portcullis {

inline Reply localReply(int code, std::string_view enhanced, std::string text) {
  return *Reply::make(code, enhanced, {std::move(text)});
}

}  // namespace portcullis
