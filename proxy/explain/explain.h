#pragma once
// `portcullis explain`: from a reference in a bounce, a session id or a client IP, find the
// session in the logs and print its story (story.h); or print what a reply code means.
//   portcullis explain REF [--log FILE]... [FILE...]
//   portcullis explain --session ID | --client IP [--last N] [--log FILE]...
//   portcullis explain --code 451 | 5.7.1 | "550 5.7.1"
// Logs are read in one or two streaming passes (the first finds the session ids, the second
// collects their lines); standard input is spooled to an unlinked temporary file for the second
// pass. Only the wanted sessions' lines are kept in memory, each bounded.
// Exit status: 0 found, 1 not found, 2 usage or unreadable input.

#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

namespace portcullis {

struct ExplainOptions {
  enum class Mode { kRef, kSession, kClient, kCode };
  Mode mode = Mode::kRef;
  std::string target;             // the REF (upper case), session id, client IP or code
  std::vector<std::string> logs;  // "-" for standard input
  std::size_t last = 5;           // --client: how many of its latest sessions
  bool verbose = false;           // --verbose: the debug lines too (state, phase, upstream)
};

// "[ref=7q2k9xhm]", "ref=7Q2K9XHM", "7Q2K9XHM" -> "7Q2K9XHM". Empty when it is not a reference
// (8 characters of the alphabet 23456789ABCDEFGHJKMNPQRSTVWXYZ, any case).
std::string normalizeRef(std::string_view arg);

// Parses the arguments after "explain". On a usage error returns false with `error` set. Does
// not decide about standard input (runExplain does, through stdinIsTty).
bool parseExplainArgs(const std::vector<std::string>& args, ExplainOptions& out,
                      std::string& error);

// Runs it; the result is the exit status. With no logs given, reads standard input unless
// stdinIsTty, in which case it says what to give and returns 2.
int runExplain(const ExplainOptions& options, std::ostream& out, std::ostream& err,
               bool stdinIsTty);

// The entry point main() calls for `portcullis explain ...` (argv[0] is "explain").
int explainMain(int argc, char** argv);

extern const char* const kExplainUsage;

}  // namespace portcullis
