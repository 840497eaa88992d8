#pragma once
// Transaction: what exists from MAIL until the transaction ends (the dot's reply, RSET, a new
// EHLO, a refused MAIL, the session closing) and goes with it: the DATA framer and spool (the
// spool file is removed with it), the trace header the filters saw, and a discard verdict.
// The envelope itself is in the session's view, where the filters read it.

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "portcullis/verdict.h"

#include "proxy/base/dispatcher.h"
#include "proxy/base/recycled.h"
#include "proxy/relay/reply_log.h"
#include "proxy/smtp/data_framer.h"
#include "proxy/smtp/spool.h"

namespace portcullis {

// The message as the MTA will get it, for filters that read it whole (scanners): our trace
// header, when there is one, then the spool. DESIGN invariant 8: what is judged is what goes.
class TracedMessage final : public MessageReader {
 public:
  TracedMessage(const std::string& head, const Spool& spool) : head_(head), spool_(spool) {}
  std::uint64_t size() const override { return head_.size() + spool_.size(); }
  std::size_t read(std::uint64_t offset, char* buf, std::size_t n) const override {
    std::size_t got = 0;
    if (offset < head_.size()) {
      got = std::min<std::size_t>(n, head_.size() - static_cast<std::size_t>(offset));
      std::memcpy(buf, head_.data() + offset, got);
      if (got == n) return got;
      return got + spool_.read(0, buf + got, n - got);
    }
    return spool_.read(offset - head_.size(), buf, n);
  }
  std::optional<Bytes> bytes() const override {
    std::optional<Bytes> b = spool_.bytes();
    if (b) b->head = head_;
    return b;
  }

 private:
  const std::string& head_;
  const Spool& spool_;
};

struct Transaction : Recycled<Transaction> {
  bool discard = false;                // a discard verdict: the client hears 250, the MTA nothing
  std::string discardBy;               // the filter that gave it
  std::unique_ptr<DataFramer> framer;  // from the 354 on
  std::shared_ptr<Spool> spool;        // shared with the MTA connection's output while it is sent
  Dispatcher::Clock::time_point dataStart{};
  Dispatcher::Clock::time_point endOfData{};  // the client's final dot
  std::string traceHeader;  // our Received: line for this message, as the filters saw it
  std::unique_ptr<TracedMessage> message;  // traceHeader + spool, for the filters
  // What the end_of_headers filters added and edited, kept for the delivery after the
  // end_of_message filters (whose own go after these).
  std::vector<HeaderField> addedHeaders;
  std::vector<HeaderEdit> headerEdits;
  TransactionLog log;  // what its event=transaction line says
};

}  // namespace portcullis
