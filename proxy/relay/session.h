#pragma once
// Session: one client connection, from accept to close. The only place a session's SMTP state
// changes (enterState, which logs "from -> to"). It reads command lines with hard limits,
// answers each command exactly once and in order (RFC 2920), runs the filter chain at each
// stage, relays to the MTA through its own Upstream, spools DATA, and writes the summary line
// at close. Owned by the Server; it never deletes itself: close() hands it back to the Server,
// which frees it from a separate event. Callbacks run on the event loop; chain and upstream
// completions may arrive inline or later, and the command loop tolerates both.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/api/session_record.h"
#include "proxy/base/event_util.h"
#include "proxy/base/net_util.h"
#include "proxy/chain/filter_chain.h"
#include "proxy/config/config.h"
#include "proxy/net/stream.h"
#include "proxy/net/tls.h"
#include "proxy/relay/client_lookup.h"
#include "proxy/relay/upstream.h"
#include "proxy/smtp/data_framer.h"
#include "proxy/smtp/ehlo.h"
#include "proxy/smtp/session_state.h"
#include "proxy/smtp/smtp_parser.h"
#include "proxy/smtp/spool.h"

namespace portcullis {

class Session;

// What a session needs from the server that owns it.
class SessionHost {
 public:
  virtual ~SessionHost() = default;
  virtual event_base* base() = 0;
  virtual const UpstreamCapabilities& upstreamCapabilities() const = 0;
  virtual void learnUpstreamCapabilities(const UpstreamCapabilities& caps) = 0;
  virtual const FilterContext& filterContext() const = 0;
  virtual Resolver* resolver() = 0;
  virtual bool draining() const = 0;
  virtual void sessionClosed(Session* session) = 0;  // frees it later, from the loop
  // The connection pool: an idle, clean MTA connection (or null), and giving one back.
  virtual std::unique_ptr<Upstream> takeUpstream() = 0;
  virtual void returnUpstream(std::unique_ptr<Upstream> upstream) = 0;
  // TLS contexts: for clients (STARTTLS, implicit TLS) and towards the MTA; null if unset.
  virtual std::shared_ptr<const TlsContext> serverTls() const = 0;
  virtual std::shared_ptr<const TlsContext> clientTls() const = 0;
  // A PROXY header revealed the real client: move its connection count from `before` to
  // `after`. False when that puts `after` over limits.max_connections_per_ip.
  virtual bool rekeyClient(const std::string& before, const std::string& after) = 0;
};

class Session {
 public:
  Session(SessionHost& host, std::shared_ptr<const Config> config, const ListenerConfig& listener,
          evutil_socket_t fd, const SocketAddress& peer, const SocketAddress& local);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void start();
  // SIGTERM drain: an idle session is told 421 at once; a busy one at its next command.
  // force: the drain deadline passed; 421 now, whatever it is doing.
  void drain(bool force);

  const std::string& id() const { return view_.id; }
  const std::string& clientAddress() const { return view_.client.address; }
  bool inTransaction() const;

 private:
  enum class Phase {
    kProxyHeader,   // waiting for a trusted load balancer's PROXY header
    kTlsHandshake,  // implicit TLS handshake in progress
    kStarting,      // connect stage and greeting delay
    kIdle,          // waiting for a command line
    kBusy,          // a command is being processed (filters, upstream)
    kData,          // receiving the message
    kDataDone,      // end of data seen; filters and upstream running
    kSkipping,      // discarding input (a BDAT chunk)
    kClosing,       // flushing the last reply
  };
  enum class ClosedBy { kClient, kServer };

  // I/O.
  void onReadable();
  void onDrained();
  void onStreamEvent(Stream::Event event, const std::string& detail);
  void processInput();
  void skipInput();
  void feedData();

  // Commands.
  void handleLine(std::string_view line);
  void dispatch(Command command);
  void onHelo(Command command);
  void onMail(Command command);
  void onRcpt(Command command);
  void onData();
  void onRset();
  void onQuit();
  void onStartTls();
  void endOfData();
  [[nodiscard]] bool judgeHeaderBlock();  // false: refused, the reply is sent
  void afterEndOfHeaders(ChainOutcome outcome);
  void deliver(const std::vector<HeaderField>& headers);
  std::string tlsReceivedValue() const;  // our TLS Received: trace header's value
  void keepalive();

  // Replies and state.
  void reply(const Reply& r, std::string_view verb);
  void commandDone();
  void enterState(SmtpState to);
  void applyOutcome(const ChainOutcome& outcome, std::string_view verb,
                    const std::function<void()>& onContinue);
  void readProxyHeader();
  void refuseOverPerIpLimit();
  void startTransport();
  void beginSession();
  void tlsReady();
  void runConnectStage();
  void maybeGreet();

  // Transactions and the upstream.
  void withUpstream(std::function<void()> then, std::string_view verb);
  void openUpstream(std::function<void()> then, std::string_view verb);
  void sendMail(const std::string& line, bool mayRetry);
  void upstreamFailed(const UpstreamResult& result, std::string_view verb, bool atEndOfData);
  void upstreamLost(const std::string& why);
  void retireUpstream();
  void releaseUpstream();  // to the pool if clean, else QUIT
  void finishData(const Reply& r);
  void endTransaction();
  XclientIdentity identity() const;

  // Closing.
  void close(ClosedBy who, std::string reason);
  void finalize();
  void logSummary();

  SessionHost& host_;
  std::shared_ptr<const Config> config_;
  const ListenerConfig* listener_;  // owned by config_
  SessionRecord view_;
  SocketAddress peer_;
  SocketAddress local_;
  std::unique_ptr<Stream> stream_;
  SmtpState state_ = SmtpState::kConnected;
  SmtpState furthest_ = SmtpState::kConnected;
  Phase phase_ = Phase::kStarting;
  UpstreamSettings upstreamSettings_;
  EhloPolicy ehloPolicy_;
  std::unique_ptr<FilterChain> chain_;
  std::unique_ptr<ClientNameLookup> nameLookup_;
  std::unique_ptr<Upstream> upstream_;
  std::vector<std::unique_ptr<Upstream>> retiredUpstream_;  // freed by reapTimer_, never inline

  Timer idleTimer_;
  Timer dataTimer_;
  Timer startTimer_;
  Timer closeTimer_;
  Timer reapTimer_;
  Timer guardTimer_;      // PROXY header and TLS handshake deadlines
  Timer keepaliveTimer_;  // NOOP to the MTA while the client takes its time over DATA
  bool keepaliveInFlight_ = false;
  std::optional<std::vector<HeaderField>> pendingDelivery_;

  ChainOutcome connectOutcome_;
  bool rejectedAtConnect_ = false;  // 554 greeting: only QUIT is answered normally
  bool discardSession_ = false;     // discard verdict at connect/helo: every transaction
  bool lingering_ = false;
  bool greeted_ = false;
  bool processing_ = false;
  bool connectDone_ = false;
  bool delayDone_ = false;
  bool outputBlocked_ = false;
  bool upstreamTransaction_ = false;  // MAIL accepted by the MTA; RSET needed to abort
  bool upstreamLost_ = false;
  bool overPerIpLimit_ = false;  // PROXY named a client over max_connections_per_ip
  bool discard_ = false;
  bool drainRequested_ = false;
  int errors_ = 0;
  std::uint64_t skipRemaining_ = 0;  // BDAT chunk octets still to discard
  std::string verb_;                 // the command being answered, for the summary

  // DATA.
  std::unique_ptr<DataFramer> framer_;
  std::unique_ptr<Spool> spool_;
  std::chrono::steady_clock::time_point dataStart_;
  std::string traceHeader_;  // our Received: line for this message, as the filters saw it

  // Summary.
  std::chrono::steady_clock::time_point started_;
  std::vector<std::string> transcript_;
  std::size_t transcriptDropped_ = 0;
  std::uint32_t delivered_ = 0;
  ClosedBy closedBy_ = ClosedBy::kServer;
  bool quit_ = false;
  bool finalized_ = false;
  std::string closeReason_;
  std::string lastReply_;
};

}  // namespace portcullis
