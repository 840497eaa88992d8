#pragma once
// Applies filters' header edits (Verdict::removeHeader / replaceHeader) to the client's header
// block as it will go to the MTA. Only the header block is rewritten: a field nobody edits is
// kept byte for byte, and the separator line and the body follow from the spool untouched, so a
// DKIM body hash still verifies. A replaced field is written by formatHeader (sanitised, folded).
// Pure: no I/O, no logging.

#include <string>
#include <string_view>
#include <vector>

#include "portcullis/verdict.h"

namespace portcullis {

struct EditedHeaderBlock {
  std::string bytes;                 // the new header block (CRLF lines, separator excluded)
  std::vector<std::string> skipped;  // edits that named an invalid header name (for the log)
  int removed = 0;
  int replaced = 0;
  int added = 0;  // replacements that found no field, written on top
};

// `block` is the raw header block: CRLF-terminated lines, the first not a continuation (the
// session refuses such a message before filters run), no separator line.
EditedHeaderBlock editHeaderBlock(std::string_view block, const std::vector<HeaderEdit>& edits);

}  // namespace portcullis
