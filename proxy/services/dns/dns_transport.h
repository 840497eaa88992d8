#pragma once
// DnsExchange: one attempt of one query against one server. UDP from a fresh socket bound to a
// kernel-chosen random port and connect()ed to the server (RFC 5452 9.2), then TCP with
// two-octet framing if the answer is truncated (RFC 7766 5, 8). The owner holds the exchange in a
// unique_ptr; destroying it closes every socket and event. `done` runs exactly once, always from
// the event loop (never inside the constructor), and the owner may destroy the exchange in it.

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/base/dispatcher.h"
#include "proxy/base/event_util.h"
#include "proxy/services/dns/dns_packet.h"
#include "proxy/services/dns/dns_stats.h"

namespace portcullis {

struct DnsServer {
  sockaddr_storage addr{};
  socklen_t addrLen = 0;
  std::string text;  // "127.0.0.1:53" or "[::1]:5353", for logs
};

// Accepts "127.0.0.1", "127.0.0.1:5353", "::1", "[::1]", "[::1]:5353" (port 53 by default).
// Numeric addresses only: resolving a resolver's name would need a resolver.
std::optional<DnsServer> parseDnsServer(std::string_view spec, std::string* error);

enum class ExchangeStatus {
  kAnswer,         // `answer` holds a message that matches id and question
  kTimeout,        // nothing usable within the timeout
  kUnreachable,    // ICMP unreachable on UDP, or the TCP connection failed or closed early
  kProtocolError,  // the TCP answer did not match the query
  kLocalError,     // socket(), bind(), send() or the like failed here
};

struct ExchangeOutcome {
  ExchangeStatus status = ExchangeStatus::kLocalError;
  std::vector<std::uint8_t> answer;
  bool viaTcp = false;
  std::string detail;  // what went wrong, for the log line
};

class DnsExchange {
 public:
  using Done = std::function<void(ExchangeOutcome)>;

  // Starts at once. `timeout` bounds the UDP wait and, separately, the TCP fallback.
  DnsExchange(Dispatcher& dispatcher, const DnsServer& server, std::vector<std::uint8_t> query,
              DnsExpectation expect, std::chrono::milliseconds timeout, DnsStats* stats, Done done);
  ~DnsExchange();
  DnsExchange(const DnsExchange&) = delete;
  DnsExchange& operator=(const DnsExchange&) = delete;

 private:
  static void onUdpReadable(evutil_socket_t fd, short what, void* self);
  static void onTcpRead(bufferevent* bev, void* self);
  static void onTcpEvent(bufferevent* bev, short what, void* self);

  void startUdp();
  void startTcp();
  void readUdp();
  bool readTcp();  // true once the attempt finished (answer or mismatch)
  void onTimer();
  // Reports a failure found while starting, through the timer, so `done` never runs inline.
  void failSoon(ExchangeStatus status, std::string detail);
  void finish(ExchangeStatus status, std::string detail, std::vector<std::uint8_t> answer = {});
  void closeSockets();

  event_base* base_;
  DnsServer server_;
  std::vector<std::uint8_t> query_;
  DnsExpectation expect_;
  std::chrono::milliseconds timeout_;
  DnsStats* stats_;
  Done done_;

  int udpFd_ = -1;
  EventPtr udpEvent_;
  BufferEventPtr tcp_;
  Timer timer_;
  bool viaTcp_ = false;
  std::optional<ExchangeOutcome> pending_;  // set by failSoon()
};

}  // namespace portcullis
