#pragma once
// The story of one session, printed for `portcullis explain` from the session's log lines:
// who the client was (and the PROXY header's real client), TLS, HELO, each command with its
// reply from the summary's transcript, the verdicts, transactions and rejects in order, the
// reject that matters marked "<-- failed here", who refused, and what the code means (from
// reply_codes.h). Lines that rotated away are named as missing. Pure: text in, text out.

#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

namespace portcullis {

struct SessionLogLine {
  std::string timestamp;  // as the log wrote it; may be empty
  std::string message;    // "<session id> key=value ..." (parseLogFields reads it)
  std::string source;     // the file it came from
};

struct SessionLog {
  std::string id;
  std::vector<SessionLogLine> lines;  // in log order
  std::size_t dropped = 0;            // lines not kept (over the per-session bound)
};

struct StoryOptions {
  std::string ref;       // the reference asked for (upper case), to mark its reject; may be empty
  bool verbose = false;  // the debug-level steps too (state, phase, upstream-state, reply)
};

void printStory(const SessionLog& session, const StoryOptions& options, std::ostream& out);

}  // namespace portcullis
