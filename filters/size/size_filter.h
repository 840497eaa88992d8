#pragma once
// size: the message size limit (limits.max_message_size, which is also the EHLO SIZE value).
// MAIL FROM ... SIZE= over the limit gets 552 5.3.4 at MAIL (RFC 1870 6.1); a message that
// grows past the limit during DATA gets 552 5.3.4 after its end of data, and nothing reaches
// the MTA. This filter is the only place that decides on size; the core only stops spooling
// at the limit. It is always in the chain (added at the front if the config omits it) and
// cannot run in observe mode. No keys of its own.

#include "portcullis/filter.h"
#include "portcullis/filter_factory.h"

namespace portcullis {

class SizeFilter final : public FilterWithHooks<SizeFilter> {
 public:
  void onMailFrom(const SessionView& s, Next next) override;
  void onEndOfMessage(const SessionView& s, Next next) override;
};

class SizeFilterFactory final : public FilterFactory {
 public:
  std::string_view name() const override { return "size"; }
  // A resource limit (limits.max_message_size): always on, never observed.
  FilterTraits traits() const override { return {.alwaysOn = true}; }
  FilterCreator configure(const ConfigSection& section) const override;
};

}  // namespace portcullis
