#pragma once
// What an SMTP reply code means, written for the mail admin reading a log: the basic codes of
// RFC 5321 4.2.3 (plus the extension codes commonly met: AUTH, STARTTLS, RFC 7504) and the
// enhanced status codes of RFC 3463 and the later IANA registry entries. Each entry says what
// happened in plain words, whether it is transient or permanent, what the sending MTA does next
// and what the admin can do. Static tables; the lookups never allocate and never fail.

#include <optional>
#include <string>
#include <string_view>

namespace portcullis {

// RFC 5321 4.2.1: the first digit decides what the client does.
enum class ReplyClass { kSuccess, kIntermediate, kTransient, kPermanent, kInvalid };
ReplyClass replyClassOf(int code);  // by the first digit
std::string_view replyClassName(ReplyClass c);
// What the sending MTA does after a reply of this class (4xx retries, 5xx bounces).
std::string_view replyClassNext(ReplyClass c);

struct BasicReplyCode {
  int code;
  std::string_view text;     // the RFC's wording
  std::string_view meaning;  // plain words
  std::string_view next;     // what the sender does next, when it differs from the class's rule
  std::string_view admin;    // what the receiving side's admin can do
};

struct EnhancedStatusCode {
  int subject;
  int detail;
  std::string_view classes;  // the classes it is used with: "245", "45", "2"...
  std::string_view title;    // the registry's title
  std::string_view meaning;
  std::string_view admin;
};

// The entry for a basic code, or null when the code is not in the table.
const BasicReplyCode* findBasicCode(int code);
// The entry for class.subject.detail, or null when it is not in the table or the detail is not
// used with that class (e.g. 5.1.5: X.1.5 is a positive delivery report only).
const EnhancedStatusCode* findEnhancedCode(int cls, int subject, int detail);
// The subject's "other" entry (X.Y.0) for codes not in the table (RFC 3463 2: a client that
// does not know the detail interprets the subject).
const EnhancedStatusCode* findEnhancedSubject(int subject);

struct EnhancedCode {
  int cls = 0;
  int subject = 0;
  int detail = 0;
};
// "5.7.1" -> {5,7,1}. RFC 3463 2: class 2/4/5, subject and detail 0..999 without leading zeros.
std::optional<EnhancedCode> parseEnhancedCode(std::string_view s);

struct CodeSpec {
  std::optional<int> basic;
  std::optional<EnhancedCode> enhanced;
};
// "451", "5.7.1", "550 5.7.1" (also "550-5.7.1", "550,5.7.1"). Null when it is none of these.
std::optional<CodeSpec> parseCodeSpec(std::string_view s);

// The meaning of a code, as lines of text for `portcullis explain` (indented by `indent`).
// Says whether it is transient or permanent, what the sender will do and what the admin can
// do; an unknown code is explained by its class (first digit) and subject.
std::string describeCode(const CodeSpec& spec, std::string_view indent = "  ");

}  // namespace portcullis
