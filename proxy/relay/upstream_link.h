#pragma once
// UpstreamLink: the session's policy for its MTA connection. It decides when to connect (lazily,
// at the first MAIL), takes a clean connection from the server's pool when there is one and
// passes the client's identity on it, retries once on a fresh connection when a pooled one
// turns out stale, resets an abandoned transaction (RSET) before reusing the connection, keeps
// the MTA's side alive with NOOP while the client is slow over DATA, gives the connection back
// to the pool (or QUITs it) at the end, and turns every MTA failure into the reply the client
// gets. The Session owns one and never touches an UpstreamConnection itself.
// Completions run from the event loop, never inside the call that asked (UpstreamConnection's
// contract). The link never destroys a connection in place: Dispatcher::deferredDelete.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "portcullis/reply.h"
#include "proxy/base/dispatcher.h"
#include "proxy/relay/upstream.h"

namespace portcullis {

// What the link needs from the server that owns the session.
class UpstreamHost {
 public:
  virtual ~UpstreamHost() = default;
  virtual Dispatcher& dispatcher() = 0;
  // A new, unopened connection (the real Upstream; a scripted one in tests).
  virtual std::unique_ptr<UpstreamConnection> newUpstream(const UpstreamSettings& settings,
                                                          std::string sessionId) = 0;
  // The pool: an idle, clean MTA connection (or null), and giving one back.
  virtual std::unique_ptr<UpstreamConnection> takeUpstream() = 0;
  virtual void returnUpstream(std::unique_ptr<UpstreamConnection> upstream) = 0;
  virtual void learnUpstreamCapabilities(const UpstreamCapabilities& caps) = 0;
  // Whether a new connection reached the MTA: the server logs when the MTA comes back.
  virtual void upstreamReached(bool ok) = 0;
};

struct UpstreamLinkSettings {
  UpstreamSettings upstream;
  bool pooling = false;                    // poolLimit(config) > 0
  std::chrono::milliseconds keepalive{0};  // NOOP interval during DATA; 0: off
};

class UpstreamLink {
 public:
  using Done = std::function<void(UpstreamResult)>;
  using IdentitySource = std::function<XclientIdentity()>;

  UpstreamLink(UpstreamHost& host, UpstreamLinkSettings settings, std::string sessionId,
               IdentitySource identity);
  ~UpstreamLink();
  UpstreamLink(const UpstreamLink&) = delete;
  UpstreamLink& operator=(const UpstreamLink&) = delete;

  // MAIL FROM: a ready connection first (pool, or a new one, or RSET of an abandoned
  // transaction), then the command; one silent retry when a pooled connection was stale.
  // `pipelined` runs the moment MAIL is written when the MTA pipelines: true when the client's
  // next commands went after it, before its reply (RFC 2920); then there is no retry.
  void mail(const std::string& line, const Done& done, const std::function<bool()>& pipelined = {});
  // RCPT TO on the open transaction (after a MAIL or RCPT still awaiting its reply, too).
  void rcpt(const std::string& line, Done done);
  // Whether a RCPT may go now, ahead of the replies to the MAIL/RCPTs before it.
  bool canPipeline() const;
  // The message (after any keepalive NOOP in flight has its reply).
  void message(std::shared_ptr<const Spool> spool, MessageHead head, Done done);

  // While the client sends DATA: NOOP every `keepalive` so the MTA does not time out.
  void startKeepalive();
  void stopKeepalive();

  // The client's transaction ended (RSET, EHLO, a refusal, the dot): forget that the MTA
  // dropped it. The MTA's own transaction, if open, is reset before the next MAIL.
  void endTransaction() { lost_ = false; }
  // The MTA dropped the connection while the client's transaction was open.
  bool lost() const { return lost_; }
  bool connected() const { return conn_ != nullptr; }

  // Logs the failure, lets go of the connection, and says what the client hears: 451 with the
  // cause's enhanced code, or 421 when the failure strands an open transaction mid-way (the
  // client must retry the whole message, never get a 5xx or a bounce).
  Reply fail(const UpstreamResult& result, std::string_view verb, bool atEndOfData);

  // Lets go of the connection: to the pool if it is clean (and pooling is on), else QUIT.
  void release();

 private:
  void withConnection(std::function<void()> then, Done onFailure);
  void open(std::function<void()> then, Done onFailure);
  void sendMail(bool mayRetry);
  void mailReplied(UpstreamResult r);
  void finishMail(UpstreamResult r);
  // Calls the callback held in `pending`, emptied first.
  static void handOver(Done& pending, UpstreamResult r);
  void keepalive();
  void retire();
  void adopt(std::unique_ptr<UpstreamConnection> conn);

  UpstreamHost& host_;
  UpstreamLinkSettings settings_;
  std::string id_;
  IdentitySource identity_;
  std::unique_ptr<UpstreamConnection> conn_;
  Timer keepaliveTimer_;
  bool transactionOpen_ = false;  // MAIL accepted by the MTA; RSET needed before reuse
  bool lost_ = false;
  bool mailReleased_ = false;  // the client's next commands went after the MAIL in flight
  bool keepaliveOn_ = false;   // the client is sending DATA
  bool keepaliveInFlight_ = false;
  std::function<void()> afterKeepalive_;  // the message waits for the NOOP's reply
  Done messageDone_;                      // the message under way's; taken out when called
  // The MAIL under way, from mail() to its reply.
  struct PendingMail {
    std::string line;                 // storage kept from one MAIL to the next
    Done done;                        // taken out when called
    std::function<bool()> pipelined;  // taken out by the first attempt
    bool mayRetry = false;            // a stale pooled connection may be retried once
  };
  PendingMail mail_;
};

}  // namespace portcullis
