#pragma once
// ClientNameLookup: the core's forward-confirmed reverse DNS of a client address, like Postfix
// smtpd's: PTR, then A/AAAA of the first name, verified when one of them is the client address.
// The result feeds SessionView::client (for filters and logs) and XCLIENT NAME. Completion
// comes through the resolver, i.e. always from the event loop; destroying the object cancels.

#include <functional>
#include <memory>
#include <string>

#include "portcullis/resolver.h"
#include "portcullis/session_view.h"

namespace portcullis {

class ClientNameLookup {
 public:
  using Done = std::function<void(ReverseStatus status, std::string ptrName, std::string name)>;

  // `address` is textual (v4 or v6). `done` runs exactly once unless this object is destroyed.
  void start(Resolver& resolver, const std::string& address, Done done);

 private:
  void onPtr(const DnsResult& result);
  void onForward(const DnsResult& result);

  Resolver* resolver_ = nullptr;
  std::string address_;
  std::string ptrName_;
  Done done_;
  std::unique_ptr<DnsLookup> lookup_;
};

}  // namespace portcullis
