#pragma once
// Verdict: what a filter decides at a stage. Named constructors only; a Verdict always carries
// a reply that matches its kind (tempfail -> 4xx, reject -> 5xx, disconnect -> 421/554).
// The reply is what the client sees (short); `reason` is for the log (full detail).
// Header additions, removals and replacements travel with an end-of-message verdict. Pure value
// type.

#include <optional>
#include <string>
#include <vector>

#include "portcullis/reply.h"

namespace portcullis {

enum class VerdictKind {
  kContinue,    // no opinion; the next filter runs
  kAccept,      // allowlist: skip the rest of the chain for this stage
  kTempfail,    // 4xx for this command
  kReject,      // 5xx for this command
  kDisconnect,  // 421 or 554, then close the connection
  kDiscard,     // say 250 to the client, deliver nothing (the whole transaction)
};

std::string_view verdictName(VerdictKind k);

struct HeaderField {
  std::string name;
  std::string value;
  bool operator==(const HeaderField&) const = default;
};

// A change to the client's own header block. Names match case-insensitively (RFC 5322 1.2.2).
struct HeaderEdit {
  enum class Kind {
    kRemove,   // drop fields named `name`: `occurrence` 0 = every one, n > 0 = the n-th from the
               // top, n < 0 = the n-th from the bottom (rspamd's milter.remove_headers numbering)
    kReplace,  // the first field named `name` gets `value`, in place; added on top if there is none
  };
  Kind kind = Kind::kRemove;
  std::string name;
  std::string value;
  int occurrence = 0;
  bool operator==(const HeaderEdit&) const = default;
};

class Verdict {
 public:
  static Verdict proceed();
  static Verdict accept(std::string reason = {});
  static Verdict tempfail(Reply reply, std::string reason);
  static Verdict reject(Reply reply, std::string reason);
  static Verdict disconnect(Reply reply, std::string reason);
  static Verdict discard(std::string reason);

  // Adds a header to the message (honoured at end_of_headers and end_of_message). Name and
  // value are sanitised and folded by the core before they reach the MTA.
  Verdict& addHeader(std::string name, std::string value);
  // Changes the client's header block (honoured at end_of_message only). Edits apply to the
  // header block as the client sent it, in the order filters gave them; headers added by
  // filters and our own trace header are never edited. The body is never touched.
  Verdict& removeHeader(std::string name, int occurrence = 0);
  Verdict& replaceHeader(std::string name, std::string value);

  // The same verdict (reply, headers, edits) with another reason for the log.
  Verdict withReason(std::string reason) const;

  VerdictKind kind() const { return kind_; }
  const std::optional<Reply>& reply() const { return reply_; }
  const std::string& reason() const { return reason_; }
  const std::vector<HeaderField>& headers() const { return headers_; }
  const std::vector<HeaderEdit>& headerEdits() const { return edits_; }
  bool isContinue() const { return kind_ == VerdictKind::kContinue; }

 private:
  Verdict(VerdictKind kind, std::optional<Reply> reply, std::string reason)
      : kind_(kind), reply_(std::move(reply)), reason_(std::move(reason)) {}

  VerdictKind kind_;
  std::optional<Reply> reply_;
  std::string reason_;
  std::vector<HeaderField> headers_;
  std::vector<HeaderEdit> edits_;
};

}  // namespace portcullis
