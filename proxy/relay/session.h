#pragma once
// Session: one client's SMTP conversation, from accept to close. It reads command lines with
// hard limits, checks each against the command table, answers each command exactly once and in
// order (RFC 2920), runs the filter chain at each stage, and spools DATA. Everything about the
// MTA connection is its UpstreamLink's; what belongs to one transaction is its Transaction;
// what the closing log line says is its SessionSummary.
// Every change of SMTP state or of phase goes through enter(), which logs "from -> to" at debug.
// Owned by the Server; it never deletes itself: close() hands it back to the Server, which frees
// it from the loop (Dispatcher::deferredDelete). Its block of memory (and its Stream's, its
// FilterChain's, its Transactions') is then kept for the next session on that thread
// (Recycled): only the memory; every session is constructed anew. Callbacks run on the event loop;
// chain and upstream completions arrive from the loop, never inside the call that asked for them.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "proxy/admin/core_stats.h"
#include "proxy/api/session_record.h"
#include "proxy/base/dispatcher.h"
#include "proxy/base/fifo.h"
#include "proxy/base/function_ref.h"
#include "proxy/base/net_util.h"
#include "proxy/base/recycled.h"
#include "proxy/chain/filter_chain.h"
#include "proxy/config/config.h"
#include "proxy/net/byte_stream.h"
#include "proxy/net/tls.h"
#include "proxy/relay/client_lookup.h"
#include "proxy/relay/reply_log.h"
#include "proxy/relay/session_summary.h"
#include "proxy/relay/transaction.h"
#include "proxy/relay/upstream_link.h"
#include "proxy/smtp/ehlo.h"
#include "proxy/smtp/session_state.h"
#include "proxy/smtp/smtp_parser.h"

namespace portcullis {

class Session;

// What a session needs from the server that owns it (tests/unit/relay: a fake host).
class SessionHost : public UpstreamHost {
 public:
  virtual const UpstreamCapabilities& upstreamCapabilities() const = 0;
  virtual const FilterContext& filterContext() const = 0;
  virtual Resolver* resolver() = 0;
  virtual void sessionClosed(Session* session) = 0;  // frees it later, from the loop
  // True while the first probe is still out and what the MTA offers is not known: the EHLO we
  // answer depends on it. whenUpstreamKnown then runs `ready` once the probe has an answer or
  // has failed (each of its steps bounded by upstream.connect_timeout), never after
  // sessionClosed(session).
  virtual bool upstreamPending() const = 0;
  virtual void whenUpstreamKnown(Session* session, std::function<void()> ready) = 0;
  // TLS contexts: for clients (STARTTLS, implicit TLS) and towards the MTA; null if unset.
  virtual std::shared_ptr<const TlsContext> serverTls() const = 0;
  virtual std::shared_ptr<const TlsContext> clientTls() const = 0;
  // A PROXY header revealed the real client: move its connection count from `before` to
  // `after`. False when that puts `after` over limits.max_connections_per_ip.
  virtual bool rekeyClient(const std::string& before, const std::string& after) = 0;
  // Added to the session's connect line (" worker=2" with several workers).
  virtual std::string_view logTag() const { return {}; }
};

class Session : public Recycled<Session> {
 public:
  Session(SessionHost& host, std::shared_ptr<const Config> config, const ListenerConfig& listener,
          std::unique_ptr<ByteStream> stream, const SocketAddress& peer,
          const SocketAddress& local);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void start();
  // SIGTERM drain: an idle session is told 421 at once; a busy one at its next command.
  // force: the drain deadline passed; 421 now, whatever it is doing.
  void drain(bool force);

  const std::string& id() const { return view_.id; }
  const std::string& clientAddress() const { return view_.client.address; }
  const std::string& helo() const { return view_.helo; }
  SmtpState state() const { return state_; }
  Dispatcher::Clock::time_point started() const { return started_; }
  bool inTransaction() const;

  // What the session is doing, as opposed to where it is in the SMTP sequence (SmtpState).
  enum class Phase {
    kProxyHeader,   // waiting for a trusted load balancer's PROXY header
    kTlsHandshake,  // implicit TLS, or STARTTLS: handshake in progress
    kStarting,      // connect stage and greeting delay
    kIdle,          // waiting for a command line
    kBusy,          // a command is being processed (filters, upstream)
    kData,          // receiving the message
    kDataDone,      // end of data seen; filters and upstream running
    kSkipping,      // discarding input (a BDAT chunk)
    kClosing,       // flushing the last reply
    kFinished,      // closed; waiting for the server to free it
  };
  static std::string_view phaseName(Phase p);

 private:
  struct CommandEntry;
  // Before the first command: the connect stage, the greeting delay, what a PROXY header said.
  struct Opening {
    ChainOutcome connectOutcome;
    bool connectDone = false;
    bool delayDone = false;
    bool greeted = false;
    bool rejected = false;        // 554 greeting: only QUIT is answered normally
    bool overPerIpLimit = false;  // PROXY named a client over max_connections_per_ip
  };
  // Reading command lines.
  struct Input {
    bool processing = false;     // processInput() is on the stack
    bool outputBlocked = false;  // the client is not reading its replies
    bool owedBlocked = false;    // kMaxOwedReplies replies wait behind one the MTA owes
    bool lingering = false;      // closing: waiting for the client to read our last words
    int errors = 0;
    std::uint64_t skipRemaining = 0;  // BDAT chunk octets still to discard
    // The command being handled, copied out of the input (a read during its handling may move
    // the input's storage); kept from one command to the next, so the copy allocates once.
    std::string line;
  };
  // Pipelining towards the MTA (RFC 2920). When the client has sent more commands and the MTA
  // pipelines, a MAIL or RCPT is released once it is written: the session goes on to the next
  // command and the reply is owed. Replies reach the client in command order whatever comes
  // first: an entry waits here until the ones before it are written. Every command other than
  // RCPT waits until nothing is owed (a group ends at DATA, RSET, EHLO, QUIT...).
  struct Owed {
    bool ready = false;
    std::optional<Reply> reply;  // none: the session finished before it could be written
  };
  struct Pipeline {
    Fifo<Owed> owed;
    std::uint64_t front = 0;                // the sequence number of owed.front()
    std::size_t awaiting = 0;               // entries the MTA has yet to answer
    std::optional<std::uint64_t> filling;   // the entry reply() fills
    std::optional<std::uint64_t> mailSlot;  // the released MAIL's entry
    std::optional<std::string> held;        // a command waiting until nothing is owed
    bool closeWaiting = false;              // close() finishes once nothing is owed
  };
  struct Flags {
    bool discardSession = false;  // discard verdict at connect/helo: every transaction
    std::string discardBy;        // the filter that gave it
    bool drainRequested = false;
    std::optional<SessionEnd> end;  // how it ended, when the closing site knows best
  };

  // I/O.
  void onReadable();
  void onDrained();
  void onStreamEvent(ByteStream::Event event, const std::string& detail);
  void onDeadline();
  void processInput();
  void skipInput();
  void feedData();

  // Commands (the command table: check, then proceed).
  static const CommandEntry& commandEntry(Verb verb);
  void handleLine(std::string_view line);
  std::optional<Reply> checkMail(const Command& c) const;
  std::optional<Reply> checkRcpt(const Command& c) const;
  std::optional<Reply> checkStartTls(const Command& c) const;
  void onHelo(const Command& command);
  void onMail(const Command& command);
  void onRcpt(const Command& command);
  // A RCPT whose MAIL the MTA refused (pipelined): portcullis's own 503, with a reference.
  void refuseOrphanRcpt(const std::string& address);
  void onData(const Command& command);
  void onRset(const Command& command);
  void onQuit(const Command& command);
  void onStartTls(const Command& command);
  void onNoop(const Command& command);
  void onVrfy(const Command& command);
  void onHelp(const Command& command);
  void onNotImplemented(const Command& command);

  // DATA and delivery.
  void endOfData();
  [[nodiscard]] bool judgeHeaderBlock();  // false: refused, the reply is sent
  void afterEndOfHeaders(ChainOutcome first);
  void deliver(const std::vector<HeaderField>& headers, const std::vector<HeaderEdit>& edits);
  // Rewrites the client's header block into `head`; false when the session has answered.
  bool editHeaders(const std::vector<HeaderEdit>& edits, MessageHead& head);
  std::string tlsReceivedValue() const;  // our TLS Received: trace header's value
  void finishData(const Reply& r, const ReplySource& source);

  // Replies and state. Every reply goes through reply(): a refusal gets its reference (ours,
  // not the MTA's) and its event=reject line, and the transaction's record notes it.
  void reply(const Reply& r, std::string_view verb, const ReplySource& source = {});
  void emit(const Reply& r);  // to the client now, or in its turn when replies are owed
  bool mayPipeline() const;   // more client commands are waiting behind this one
  std::uint64_t owe();        // a reply the MTA will give later; its entry
  // The MTA's reply for entry `slot` arrived: `handle` replies (into that entry), then what is
  // ready is written, and once nothing is owed a held command or a waiting close goes on.
  void settle(std::uint64_t slot, FunctionRef<void()> handle);
  void mailReplied(const UpstreamResult& r, bool released);
  void rcptReplied(const UpstreamResult& r, const std::string& address, bool released,
                   const Transaction* txn);
  void noteInTransaction(const Reply& r, std::string_view verb, const ReplySource& source);
  void commandDone();
  void enter(SmtpState to);
  void enter(Phase to);
  // onContinue runs before this returns (a FunctionRef: no allocation, nothing copied).
  void applyOutcome(const ChainOutcome& outcome, std::string_view verb,
                    FunctionRef<void()> onContinue, std::string_view recipient = {});
  void answerEhlo(std::string_view verb);
  void readProxyHeader();
  void refuseOverPerIpLimit();
  void startTransport();
  void beginSession();
  void tlsReady();
  void runConnectStage();
  void maybeGreet();
  // Which command the MTA failed at: decides what becomes of the transaction.
  enum class UpstreamStep { kMail, kRcpt, kDot };
  // released: the session went on without waiting for this reply (it owes it, see Pipeline).
  void upstreamFailed(const UpstreamResult& result, UpstreamStep step,
                      std::string_view recipient = {}, bool released = false);
  void endTransaction();
  void discard(const ChainOutcome& o);  // a discard verdict: this transaction, or all of them
  void logTransactionEnd();             // its event=transaction line, once, if MAIL opened it
  XclientIdentity identity() const;

  // Closing.
  void close(SessionSummary::ClosedBy who, std::string reason);
  void finishClose();  // the half-close, once every owed reply is written
  void finalize();
  SessionEnd howEnded() const;

  SessionHost& host_;
  std::shared_ptr<const Config> config_;
  const ListenerConfig* listener_;  // owned by config_
  // The certificate of the snapshot the session started with: a reload does not change it
  // under a session in flight (null: no TLS configured then).
  std::shared_ptr<const TlsContext> serverTls_;
  SessionRecord view_;
  SocketAddress peer_;
  std::unique_ptr<ByteStream> stream_;
  SmtpState state_ = SmtpState::kConnected;
  Phase phase_ = Phase::kStarting;
  Timer timer_;  // the current phase's deadline (see onDeadline)
  EhloPolicy ehloPolicy_;
  std::unique_ptr<FilterChain> chain_;
  std::unique_ptr<ClientNameLookup> nameLookup_;
  UpstreamLink link_;
  std::unique_ptr<Transaction> txn_;
  Opening opening_;
  Input input_;
  Pipeline pipe_;
  Flags flags_;
  std::string verb_;  // the command being answered, for the transcript
  // The MAIL or RCPT line for the MTA while the command's filters run (one at a time; it is
  // handed on, and copied or written, before the next command is read). Storage reused.
  std::string envelopeLine_;
  Dispatcher::Clock::time_point started_;
  SessionSummary summary_;
};

}  // namespace portcullis
