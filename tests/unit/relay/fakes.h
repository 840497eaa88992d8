#pragma once
// Test doubles for the relay: a client connection in memory (FakeStream, driven through
// ClientSide), a scripted MTA (MtaScript, answered by FakeUpstream connections) and a host
// (FakeHost) that owns the session the way the Server does, all on a ManualDispatcher. No
// sockets, no root, no Postfix, no real time.

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/net/byte_stream.h"
#include "proxy/relay/session.h"
#include "proxy/relay/upstream.h"
#include "tests/support/manual_dispatcher.h"

namespace portcullis::relay_test {

// "250 2.1.0 Ok" -> a Reply (one line; the enhanced code when it has one).
inline Reply replyFrom(std::string_view text) {
  const int code = std::stoi(std::string(text.substr(0, 3)));
  std::string_view rest = text.size() > 4 ? text.substr(4) : std::string_view();
  std::string_view enhanced;
  const auto space = rest.find(' ');
  const std::string_view first = rest.substr(0, space);
  if (first.size() >= 5 && first[1] == '.' &&
      (first[0] == '2' || first[0] == '4' || first[0] == '5')) {
    enhanced = first;
    rest = space == std::string_view::npos ? std::string_view() : rest.substr(space + 1);
  }
  return *Reply::make(code, enhanced, {std::string(rest.empty() ? "Ok" : rest)});
}

class FakeStream;

// The client's end of the connection, as the test sees it. Outlives the session.
struct ClientSide {
  std::string output;     // everything the session wrote, in order
  bool shutdown = false;  // the session half-closed its direction
  FakeStream* stream = nullptr;

  void send(std::string_view bytes) const;  // bytes arrive at the session (from the loop)
  void finish() const;                      // the client's FIN
  // The reply codes written since the last call, e.g. {"220", "250", "354"}: the first line's
  // code of each reply (multi-line replies count once).
  std::vector<std::string> takeCodes();
  std::string takeOutput() {
    std::string out = std::move(output);
    output.clear();
    consumed_ = 0;
    return out;
  }

 private:
  std::size_t consumed_ = 0;
};

class FakeStream final : public ByteStream {
 public:
  FakeStream(Dispatcher& d, ClientSide& client)
      : client_(client),
        read_(d,
              [this] {
                if (!detached_ && cb_.onRead) cb_.onRead();
              }),
        drained_(d,
                 [this] {
                   if (!detached_ && cb_.onDrained) cb_.onDrained();
                 }),
        eofCall_(d, [this] {
          if (!detached_ && cb_.onEvent) cb_.onEvent(Event::kEof, "end of stream");
        }) {
    client_.stream = this;
  }
  ~FakeStream() override { client_.stream = nullptr; }

  void deliver(std::string_view bytes) {
    if (eof_) return;
    input_.append(bytes);
    if (reading_) read_.schedule();
  }
  void finish() {
    eof_ = true;
    eofCall_.schedule();
  }

  void setCallbacks(Callbacks callbacks) override { cb_ = std::move(callbacks); }
  void start() override { reading_ = true; }
  InputBuffer& input() override { return input_; }
  void write(std::string_view data) override {
    if (client_.shutdown) return;
    client_.output.append(data);
    drained_.schedule();
  }
  std::size_t pendingOutput() const override { return 0; }
  void setReadLimit(std::size_t) override {}
  void updateReading() override {}
  void stopReading() override { reading_ = false; }
  bool eof() const override { return eof_; }
  void shutdownWrite() override { client_.shutdown = true; }
  void writeFinal(std::string_view data) override { write(data); }
  void detach() override { detached_ = true; }
  bool tls() const override { return false; }
  void startTls(SSL* ssl, bool, PreTlsInput) override {
    SSL_free(ssl);
    eofCall_.schedule();  // no TLS in memory: the handshake fails
  }
  SSL* ssl() const override { return nullptr; }

 private:
  ClientSide& client_;
  Callbacks cb_;
  InputBuffer input_;
  DeferredCall read_;
  DeferredCall drained_;
  DeferredCall eofCall_;
  bool reading_ = false;
  bool eof_ = false;
  bool detached_ = false;
};

inline void ClientSide::send(std::string_view bytes) const {
  if (stream != nullptr) stream->deliver(bytes);
}
inline void ClientSide::finish() const {
  if (stream != nullptr) stream->finish();
}
inline std::vector<std::string> ClientSide::takeCodes() {
  std::vector<std::string> codes;
  std::size_t pos = consumed_;
  while (pos < output.size()) {
    const auto eol = output.find("\r\n", pos);
    if (eol == std::string::npos) break;
    const std::string line = output.substr(pos, eol - pos);
    if (line.size() >= 4 && line[3] == ' ') codes.push_back(line.substr(0, 3));
    pos = eol + 2;
  }
  consumed_ = pos;
  return codes;
}

// What the MTA answers, per command verb ("OPEN" for connecting, "DOT" for the message, as
// the first word of the command line otherwise). Unscripted commands get the usual positive
// reply. Every answer comes from the loop: at once (after the call returns) or after `delay`
// of virtual time.
struct MtaAnswer {
  std::optional<std::string> reply;  // e.g. "550 5.1.1 No such user"; unset: positive
  UpstreamFailure failure = UpstreamFailure::kNone;
  std::chrono::milliseconds delay{0};
};

struct MtaScript {
  std::map<std::string, std::deque<MtaAnswer>> answers;
  std::vector<std::string> heard;      // every command, "OPEN", "DOT", "QUIT", in order
  std::string lastMessage;             // prefix + body of the last message sent
  std::chrono::milliseconds delay{0};  // for every unscripted answer
  int opened = 0;
  bool pipelining = false;       // offers PIPELINING: MAIL/RCPT may be given before earlier answers
  std::size_t mostInFlight = 0;  // the most commands ever waiting for answers at once

  void script(const std::string& verb, MtaAnswer a) { answers[verb].push_back(std::move(a)); }
  MtaAnswer next(const std::string& verb) {
    auto it = answers.find(verb);
    if (it == answers.end() || it->second.empty()) return MtaAnswer{std::nullopt, {}, delay};
    MtaAnswer a = std::move(it->second.front());
    it->second.pop_front();
    return a;
  }
};

class FakeUpstream final : public UpstreamConnection {
 public:
  FakeUpstream(Dispatcher& d, MtaScript& mta) : mta_(mta), timer_(d, [this] { answerNow(); }) {}

  void open(const XclientIdentity&, Callback done) override {
    ++mta_.opened;
    exchange("OPEN", "220 2.0.0 ready", std::move(done), true);
  }
  void command(const std::string& line, Expect expect, Callback done) override {
    if (!queue_.empty() &&
        !(mta_.pipelining && (expect == Expect::kMail || expect == Expect::kRcpt))) {
      ADD_FAILURE() << "command while busy, not pipelinable: " << line;
    }
    const std::string verb = line.substr(0, line.find_first_of(" :"));
    const std::string positive = verb == "MAIL"   ? "250 2.1.0 Ok"
                                 : verb == "RCPT" ? "250 2.1.5 Ok"
                                                  : "250 2.0.0 Ok";
    mta_.heard.emplace_back(line);
    exchange(verb, positive, std::move(done), false);
  }
  void sendMessage(std::shared_ptr<const Spool> spool, MessageHead head, Callback done) override {
    std::string body(spool->size() - head.spoolOffset, '\0');
    if (!body.empty()) body.resize(spool->read(head.spoolOffset, body.data(), body.size()));
    mta_.lastMessage = head.bytes + body;
    mta_.heard.emplace_back("DOT");
    exchange("DOT", "250 2.0.0 Ok: queued", std::move(done), false);
  }
  void quit() override {
    mta_.heard.emplace_back("QUIT");
    ready_ = false;
    queue_.clear();
    timer_.stop();
  }
  void reidentify(const XclientIdentity&, Callback done) override {
    mta_.heard.emplace_back("XCLIENT");
    exchange("XCLIENT", "220 2.0.0 ready", std::move(done), false);
  }
  bool pipelining() const override { return mta_.pipelining; }
  bool reusable(std::uint32_t) const override { return ready_ && queue_.empty(); }
  void setSessionId(std::string) override {}
  bool ready() const override { return ready_ && queue_.empty(); }
  bool broken() const override { return !ready_; }
  bool tls() const override { return false; }
  const UpstreamCapabilities& capabilities() const override { return caps_; }
  void setIdleFailureHandler(std::function<void(std::string)> h) override { idle_ = std::move(h); }

 private:
  // Answers come in order, each `delay` after the one before it was given (or after the call).
  struct Exchange {
    UpstreamResult result;
    Callback done;
    std::chrono::milliseconds delay{0};
  };
  void exchange(const std::string& verb, const std::string& positive, Callback done, bool open) {
    Exchange e;
    if (!open && !ready_) {
      e.result = {UpstreamFailure::kClosed, std::nullopt, "upstream not ready"};
    } else {
      MtaAnswer a = mta_.next(verb);
      if (a.failure != UpstreamFailure::kNone) {
        e.result = {a.failure, std::nullopt, "scripted failure"};
      } else {
        Reply r = replyFrom(a.reply.value_or(positive));
        if (open && r.isNegative()) {
          e.result = {UpstreamFailure::kRefused, r, "MTA refused greeting"};
        } else {
          e.result = {UpstreamFailure::kNone, r, {}};
        }
      }
      e.delay = a.delay;
    }
    e.done = std::move(done);
    queue_.push_back(std::move(e));
    mta_.mostInFlight = std::max(mta_.mostInFlight, queue_.size());
    if (queue_.size() == 1) timer_.start(queue_.front().delay);
  }
  void answerNow() {
    if (queue_.empty()) return;
    Exchange e = std::move(queue_.front());
    queue_.pop_front();
    const bool failed = e.result.failure != UpstreamFailure::kNone;
    ready_ = !failed && !e.result.reply->closesConnection();
    if (failed || !ready_) {
      // A broken connection fails everything still waiting, in order (as Upstream does).
      std::deque<Exchange> rest = std::move(queue_);
      queue_.clear();
      const UpstreamFailure kind = failed ? e.result.failure : UpstreamFailure::kClosed;
      if (e.done) e.done(std::move(e.result));
      for (auto& r : rest) {
        if (r.done) r.done({kind, std::nullopt, "connection failed"});
      }
      return;
    }
    if (!queue_.empty()) timer_.start(queue_.front().delay);
    if (e.done) e.done(std::move(e.result));
  }

  MtaScript& mta_;
  Timer timer_;
  std::deque<Exchange> queue_;
  std::function<void(std::string)> idle_;
  UpstreamCapabilities caps_;
  bool ready_ = false;
};

// Owns the session as the Server does: frees it from the loop once it has closed.
class FakeHost final : public SessionHost {
 public:
  explicit FakeHost(ManualDispatcher& d) : d_(d) {
    caps_.known = true;
    caps_.pipelining = true;
    caps_.eightBitMime = true;
    caps_.enhancedStatusCodes = true;
  }

  Dispatcher& dispatcher() override { return d_; }
  std::unique_ptr<UpstreamConnection> newUpstream(const UpstreamSettings&, std::string) override {
    return std::make_unique<FakeUpstream>(d_, mta);
  }
  std::unique_ptr<UpstreamConnection> takeUpstream() override {
    if (pool.empty()) return nullptr;
    auto u = std::move(pool.back());
    pool.pop_back();
    u->markReused();
    return u;
  }
  void returnUpstream(std::unique_ptr<UpstreamConnection> u) override {
    if (u->reusable(100)) {
      pool.push_back(std::move(u));
    } else {
      u->quit();
      d_.deferredDelete(std::move(u));
    }
  }
  void learnUpstreamCapabilities(const UpstreamCapabilities&) override {}
  // pending: the start-up probe is out; an EHLO's answer waits in `waiting` until wakeWaiting().
  bool upstreamPending() const override { return pending; }
  void whenUpstreamKnown(Session*, std::function<void()> ready) override {
    if (!pending) {
      ready();
      return;
    }
    waiting.push_back(std::move(ready));
  }
  void wakeWaiting() {
    pending = false;
    auto woken = std::move(waiting);
    waiting.clear();
    for (auto& ready : woken) ready();
  }
  void upstreamReached(bool) override {}
  const UpstreamCapabilities& upstreamCapabilities() const override { return caps_; }
  const FilterContext& filterContext() const override { return context_; }
  Resolver* resolver() override { return nullptr; }
  void sessionClosed(Session* s) override {
    if (session.get() != s) return;
    waiting.clear();  // as the Server does: never woken once freed
    ++closed;
    d_.deferredDelete(std::move(session));
  }
  std::shared_ptr<const TlsContext> serverTls() const override { return nullptr; }
  std::shared_ptr<const TlsContext> clientTls() const override { return nullptr; }
  bool rekeyClient(const std::string&, const std::string&) override { return true; }

  MtaScript mta;
  bool pending = false;
  std::vector<std::function<void()>> waiting;
  std::vector<std::unique_ptr<UpstreamConnection>> pool;
  std::unique_ptr<Session> session;
  int closed = 0;

 private:
  ManualDispatcher& d_;
  UpstreamCapabilities caps_;
  FilterContext context_;
};

}  // namespace portcullis::relay_test
