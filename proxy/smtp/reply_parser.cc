// ReplyParser. See reply_parser.h.

#include "proxy/smtp/reply_parser.h"

#include <algorithm>

namespace portcullis {

ReplyParser::Status ReplyParser::fail(std::string why) {
  error_ = std::move(why);
  code_ = 0;
  lines_.clear();
  enhanced_.clear();
  return Status::kError;
}

void ReplyParser::reset() {
  code_ = 0;
  enhanced_.clear();
  lines_.clear();
  done_.reset();
  error_.clear();
}

ReplyParser::Status ReplyParser::feed(std::string_view line) {
  if (line.size() + 2 > Reply::kMaxLineLength) return fail("reply line too long");
  if (line.size() < 3) return fail("reply line too short");
  int code = 0;
  for (int i = 0; i < 3; ++i) {
    const char c = line[static_cast<std::size_t>(i)];
    if (c < '0' || c > '9') return fail("reply code is not three digits");
    code = code * 10 + (c - '0');
  }
  // RFC 5321 4.2: first digit 2-5, second 0-5.
  if (code < 200 || code > 559 || (code / 10) % 10 > 5) {
    return fail("illegal reply code " + std::to_string(code));
  }
  bool last = true;
  std::string_view text;
  std::string tabless;  // tabs count as spaces everywhere, before any splitting (copied only then)
  if (line.size() > 3) {
    if (line[3] == '-') {
      last = false;
    } else if (line[3] != ' ') {
      return fail("bad separator after reply code");
    }
    text = line.substr(4);
    if (text.find('\t') != std::string_view::npos) {
      tabless.assign(text);
      std::replace(tabless.begin(), tabless.end(), '\t', ' ');
      text = tabless;
    }
  }
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7f) return fail("control character in reply");
  }
  if (code_ != 0 && code != code_) return fail("reply code changed inside a multi-line reply");
  if (code_ == 0) {
    code_ = code;
    // Enhanced status code on the first line, matching the class (RFC 3463, RFC 2034).
    const auto sp = text.find(' ');
    const std::string_view first = text.substr(0, sp);
    if (isEnhancedStatusCode(first) && first[0] == line[0]) {
      enhanced_ = std::string(first);
      text = sp == std::string_view::npos ? std::string_view{} : text.substr(sp + 1);
    }
  } else if (!enhanced_.empty() && text.substr(0, enhanced_.size()) == enhanced_ &&
             (text.size() == enhanced_.size() || text[enhanced_.size()] == ' ')) {
    text = text.substr(std::min(text.size(), enhanced_.size() + 1));
  }
  if (lines_.size() >= Reply::kMaxLines) return fail("too many lines in reply");
  lines_.emplace_back(text);
  if (!last) return Status::kNeedMore;

  auto reply = Reply::make(code_, enhanced_, std::move(lines_));
  code_ = 0;
  enhanced_.clear();
  lines_.clear();
  if (!reply) return fail("invalid reply");
  done_ = std::move(reply);
  return Status::kDone;
}

Reply ReplyParser::take() {
  Reply r = std::move(*done_);
  done_.reset();
  return r;
}

const Reply& withEnhancedCode(const Reply& reply, std::string_view positive,
                              std::optional<Reply>& amended) {
  if (!reply.enhanced().empty() || reply.code() < 200 ||
      (reply.code() >= 300 && reply.code() < 400)) {
    return reply;
  }
  const std::string code =
      reply.isPositive() ? std::string(positive)
                         : std::string(1, static_cast<char>('0' + reply.code() / 100)) + ".0.0";
  amended = Reply::make(reply.code(), code, reply.lines());
  return amended ? *amended : reply;  // a line too long for the extra code: relay it as it was
}

Reply withEnhancedCode(const Reply& reply, std::string_view positive) {
  std::optional<Reply> amended;
  return withEnhancedCode(reply, positive, amended);
}

std::vector<Capability> parseEhloCapabilities(const Reply& reply) {
  std::vector<Capability> caps;
  const auto& lines = reply.lines();
  for (std::size_t i = 1; i < lines.size(); ++i) {
    Capability cap;
    std::string_view rest = lines[i];
    while (!rest.empty()) {
      while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
      if (rest.empty()) break;
      const auto sp = rest.find(' ');
      std::string tok(rest.substr(0, sp));
      rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp);
      if (cap.keyword.empty()) {
        std::transform(tok.begin(), tok.end(), tok.begin(),
                       [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
        cap.keyword = std::move(tok);
      } else {
        cap.params.push_back(std::move(tok));
      }
    }
    if (!cap.keyword.empty()) caps.push_back(std::move(cap));
  }
  return caps;
}

}  // namespace portcullis
