#pragma once
// recipients: the recipient limit (limits.max_recipients). Past the limit every further RCPT
// gets 452 4.5.3 (RFC 5321 4.5.3.1.10); the recipients already accepted stay, and the message
// goes to exactly those. Always in the chain (added at the front if the config omits it);
// cannot run in observe mode, since the limit also bounds the session's memory. No keys.

#include "portcullis/filter.h"
#include "portcullis/filter_factory.h"

namespace portcullis {

class RecipientsFilter final : public FilterWithHooks<RecipientsFilter> {
 public:
  void onRcptTo(const SessionView& s, Next next) override;
};

class RecipientsFilterFactory final : public FilterFactory {
 public:
  std::string_view name() const override { return "recipients"; }
  // A resource limit (limits.max_recipients): always on, never observed.
  FilterTraits traits() const override { return {.alwaysOn = true}; }
  FilterCreator configure(const ConfigSection& section) const override;
};

}  // namespace portcullis
