#pragma once
// header_checks: Postfix header_checks in spirit. Ordered PCRE2 rules are applied to each header
// line "Name: value" (unfolded, in message order) at end_of_headers (or end_of_message, key
// `stage`). For each line the first matching rule decides: reject / tempfail / discard / accept
// end the check at once; add_header adds its header (once per message) and goes on to the next
// line. Everything runs inline; no callbacks. The compiled rules are immutable and shared by all
// sessions. Why PCRE2 and not RE2: admins port Postfix pcre: tables as they are (PCRE syntax,
// backreferences, lookaround), and PCRE2 lets us bound every match: a match context caps the
// match count, depth and heap, and JIT code runs on a bounded stack, so a pathological pattern
// such as (a+)+$ ends with an error (the chain's on_error decides) instead of stalling the loop.

#include <memory>

#include "portcullis/filter.h"
#include "portcullis/filter_factory.h"

namespace portcullis {

struct HeaderChecksConfig;  // compiled rules; defined in header_checks_filter.cc

class HeaderChecksFilter final : public FilterWithHooks<HeaderChecksFilter> {
 public:
  explicit HeaderChecksFilter(std::shared_ptr<const HeaderChecksConfig> config)
      : config_(std::move(config)) {}

  void onEndOfHeaders(const SessionView& s, Next next) override;
  void onEndOfMessage(const SessionView& s, Next next) override;

 private:
  void check(const SessionView& s, Next next) const;

  std::shared_ptr<const HeaderChecksConfig> config_;
};

class HeaderChecksFilterFactory final : public FilterFactory {
 public:
  std::string_view name() const override { return "header_checks"; }
  FilterCreator configure(const ConfigSection& section) const override;
};

}  // namespace portcullis
