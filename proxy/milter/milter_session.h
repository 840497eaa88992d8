#pragma once
// MilterSession: one MTA connection of the milter, on the event loop. It keeps the
// SessionRecord that the filters see (filled from the milter callbacks' arguments and
// Postfix's macros) and the session's FilterChain, runs a stage when asked and turns the
// chain's outcome into a MilterAction: a reply for smfi_setreply, a discard, or the header
// changes end-of-message applies. It logs the session in the proxy's key=value lines, with the
// MTA's queue id. Loop thread only; the milter thread reaches it through LoopBridge jobs.
// Destroying it cancels the chain: a pending completion is then never answered (its caller
// gets "no answer", i.e. tempfail).

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/api/session_record.h"
#include "proxy/chain/filter_chain.h"
#include "proxy/config/config.h"
#include "proxy/milter/loop_bridge.h"
#include "proxy/milter/milter_action.h"

namespace portcullis {

// What the milter thread learnt at xxfi_connect (the callback's arguments and macros).
struct MilterConnectInfo {
  std::string address;  // {client_addr}, or the callback's sockaddr
  std::uint16_t port = 0;
  bool ipv6 = false;
  std::string name;          // {client_name}: Postfix's verified name, "unknown" when there is none
  std::string ptr;           // {client_ptr}: the unverified PTR name, when Postfix sends it
  std::string localAddress;  // {daemon_addr}
  std::uint16_t localPort = 0;
};

// The macros that arrive later in the session.
struct MilterMacros {
  std::string queueId;     // {i}
  std::string authAuthen;  // {auth_authen}
  std::string tlsVersion;  // {tls_version}
  std::string cipher;      // {cipher}
  int cipherBits = 0;      // {cipher_bits}
};

class MilterSession {
 public:
  using Completion = LoopBridge::Completion;

  MilterSession(Dispatcher& dispatcher, std::shared_ptr<const Config> config,
                const FilterContext& context, std::string id);
  ~MilterSession();
  MilterSession(const MilterSession&) = delete;
  MilterSession& operator=(const MilterSession&) = delete;

  const std::string& id() const { return record_.id; }

  void connect(const MilterConnectInfo& info, Completion done);
  void helo(const std::string& helo, const MilterMacros& macros, Completion done);
  // args: the MAIL FROM address ("<a@b>") then its ESMTP parameters.
  void mailFrom(const std::vector<std::string>& args, const MilterMacros& macros, Completion done);
  void rcptTo(const std::vector<std::string>& args, Completion done);
  void data(Completion done);
  // The header block as the MTA has it (values as sent, folding kept).
  void endOfHeaders(std::vector<HeaderField> headers, Completion done);
  // The body as the MTA has it (CRLF lines), at most limits.max_message_size of it; `size` is
  // how much there was.
  void endOfMessage(const std::string& body, std::uint64_t size, Completion done);
  // {i}: Postfix knows the queue id only once the queue file is open (with the default
  // smtpd_delay_open_until_valid_rcpt, after the first good RCPT), so later stages pass it.
  void noteQueueId(const std::string& queueId) {
    if (!queueId.empty()) macros_.queueId = queueId;
  }
  // The transaction ended without end-of-message (RSET, a refused command, the MTA's abort).
  void abort();
  // The MTA closed the connection.
  void close();
  // SIGTERM's drain: a transaction under way goes on; the next HELO or MAIL is answered 421
  // 4.3.2, so that Postfix hangs up on its client.
  void drain() { draining_ = true; }

 private:
  class BodyReader;
  void run(Stage stage, Completion done, std::function<void(MilterAction&)> onContinue = {});
  MilterAction toAction(Stage stage, const ChainOutcome& outcome);
  void endTransaction(const char* result);
  std::string clientText() const;

  Dispatcher& dispatcher_;
  std::shared_ptr<const Config> config_;
  SessionRecord record_;
  FilterChain chain_;
  MilterMacros macros_;
  std::string message_;  // header block + blank line + body, for the filters' reader
  std::unique_ptr<BodyReader> reader_;
  std::vector<HeaderField> added_;  // from end_of_headers, applied at end_of_message
  std::chrono::steady_clock::time_point start_;
  Stage furthest_ = Stage::kConnect;
  bool inTransaction_ = false;
  bool draining_ = false;
  int messages_ = 0;
};

}  // namespace portcullis
