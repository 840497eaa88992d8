#pragma once
// Transaction: what exists from MAIL until the transaction ends (the dot's reply, RSET, a new
// EHLO, a refused MAIL, the session closing) and goes with it: the DATA framer and spool (the
// spool file is removed with it), the trace header the filters saw, and a discard verdict.
// The envelope itself is in the session's view, where the filters read it.

#include <memory>
#include <string>

#include "proxy/base/dispatcher.h"
#include "proxy/relay/reply_log.h"
#include "proxy/smtp/data_framer.h"
#include "proxy/smtp/spool.h"

namespace portcullis {

struct Transaction {
  bool discard = false;                // a discard verdict: the client hears 250, the MTA nothing
  std::string discardBy;               // the filter that gave it
  std::unique_ptr<DataFramer> framer;  // from the 354 on
  std::unique_ptr<Spool> spool;
  Dispatcher::Clock::time_point dataStart{};
  std::string traceHeader;  // our Received: line for this message, as the filters saw it
  TransactionLog log;       // what its event=transaction line says
};

}  // namespace portcullis
