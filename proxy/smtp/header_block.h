#pragma once
// The header block of a spooled message (RFC 5322 2.2), parsed the way the MTA will read it,
// for header checks and content filters. Every header of the block is seen, whatever its size:
// nothing is skipped silently. One header's value is kept up to kMaxHeaderValue octets for
// matching (Postfix's header_size_limit does the same); a block over maxBlockBytes or with more
// than maxFields fields is reported, so the session refuses the message instead of passing it
// on half-checked. A block that starts with a continuation line is reported too: the MTA would
// read it as the tail of whatever header comes before it, which is our own trace header.
// Pure: reads the message through MessageReader, allocates only what it returns.

#include <cstddef>
#include <vector>

#include "portcullis/session_view.h"
#include "portcullis/verdict.h"

namespace portcullis {

// Postfix's header_size_limit default: the part of one header that is matched and kept.
inline constexpr std::size_t kMaxHeaderValue = 102'400;

struct HeaderBlockLimits {
  std::size_t maxBlockBytes = std::size_t{1024} * 1024;  // the whole header block, CRLFs included
  std::size_t maxFields = 10'000;
};

struct HeaderBlock {
  enum class Status {
    kOk,
    kLeadingContinuation,  // the first line is folding whitespace (RFC 5322 2.2.3)
    kTooLarge,             // more than maxBlockBytes or maxFields
  };
  Status status = Status::kOk;
  std::vector<HeaderField> fields;  // unfolded, in order; values capped at kMaxHeaderValue
  std::size_t bytes = 0;            // octets of the header block read, separator line excluded
  std::size_t truncated = 0;        // fields whose value was longer than kMaxHeaderValue
};

HeaderBlock parseHeaderBlock(const MessageReader& message, const HeaderBlockLimits& limits);

}  // namespace portcullis
