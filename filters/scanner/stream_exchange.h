#pragma once
// The stream transport of the scanners that speak a protocol of their own over TCP or a unix
// socket (clamd, spamd): an asynchronous connect through FilterContext::connector, the request
// bytes, the spooled message streamed in framed chunks with backpressure (never reading a
// spooled file whole), the trailer, and a bounded reply handed to the ScanProtocol's parser.
// Every wait is bounded by the scan's timeout. The exchange owns its connection; `done` runs
// from the loop (a connection callback or a timer), never inside start().

#include <memory>
#include <string>

#include "filters/scanner/scanner_filter.h"

namespace portcullis {

// A ScanClient that runs `protocol` against `address` ("HOST:PORT" or "unix:/path").
std::shared_ptr<const ScanClient> makeStreamScanClient(std::shared_ptr<const ScanProtocol> protocol,
                                                       std::string address);

}  // namespace portcullis
