// MilterSession. See milter_session.h.

#include "proxy/milter/milter_session.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "proxy/base/header_util.h"
#include "proxy/base/log.h"
#include "proxy/base/reference.h"

namespace portcullis {
namespace {

constexpr std::size_t kMaxHeaderValue = 2048;  // as formatHeader caps what filters add

std::string stripBrackets(std::string_view a) {
  if (a.size() >= 2 && a.front() == '<' && a.back() == '>') a = a.substr(1, a.size() - 2);
  return std::string(a);
}

// Header values from the MTA keep their folding; filters see them unfolded.
std::string unfold(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    if (c != '\r' && c != '\n') out.push_back(c);
  }
  return out;
}

bool sameName(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// event=transaction result= for an end-of-message outcome.
const char* resultName(MilterAction::Status s) {
  switch (s) {
    case MilterAction::Status::kContinue:
    case MilterAction::Status::kAccept:
      return "accepted";
    case MilterAction::Status::kReject:
      return "rejected";
    case MilterAction::Status::kTempfail:
      return "tempfailed";
    case MilterAction::Status::kDiscard:
      return "discarded";
  }
  return "?";
}

}  // namespace

// The message as the filters read it: the header block, the blank line, the body.
class MilterSession::BodyReader final : public MessageReader {
 public:
  explicit BodyReader(const std::string& bytes) : bytes_(bytes) {}
  std::uint64_t size() const override { return bytes_.size(); }
  std::size_t read(std::uint64_t offset, char* buf, std::size_t n) const override {
    if (offset >= bytes_.size()) return 0;
    n = std::min<std::size_t>(n, bytes_.size() - offset);
    std::memcpy(buf, bytes_.data() + offset, n);
    return n;
  }
  std::optional<Bytes> bytes() const override { return Bytes{{}, bytes_, -1}; }

 private:
  const std::string& bytes_;
};

MilterSession::MilterSession(Dispatcher& dispatcher, std::shared_ptr<const Config> config,
                             const FilterContext& context, std::string id)
    : dispatcher_(dispatcher),
      config_(std::move(config)),
      chain_(dispatcher, id, config_->filters, context),
      reader_(std::make_unique<BodyReader>(message_)),
      start_(dispatcher.now()) {
  record_.id = std::move(id);
  record_.hostname = config_->hostname;
  record_.limits.maxMessageSize = config_->limits.maxMessageSize;
  record_.limits.maxRecipients = config_->limits.maxRecipients;
}

MilterSession::~MilterSession() { chain_.cancel(); }

std::string MilterSession::clientText() const {
  const auto& c = record_.client;
  return (c.name.empty() ? std::string("unknown") : c.name) + "[" + c.address +
         "]:" + std::to_string(c.port);
}

void MilterSession::connect(const MilterConnectInfo& info, Completion done) {
  auto& c = record_.client;
  c.address = info.address;
  c.port = info.port;
  c.ipv6 = info.ipv6;
  // Postfix says "unknown" when the name did not verify (FCrDNS), as smtpd does.
  if (!info.name.empty() && info.name != "unknown" && info.name.front() != '[') {
    c.reverse = ReverseStatus::kVerified;
    c.name = sanitizeText(info.name, 255);
  } else {
    c.reverse = info.ptr.empty() ? ReverseStatus::kNotLooked : ReverseStatus::kMismatch;
  }
  c.ptrName = sanitizeText(info.ptr.empty() ? c.name : info.ptr, 255);
  record_.localAddress = info.localAddress;
  record_.localPort = info.localPort;
  spdlog::info("{} event=connect client={} local={}:{} mode=milter", record_.id, clientText(),
               record_.localAddress.empty() ? "unknown" : record_.localAddress, record_.localPort);
  run(Stage::kConnect, std::move(done));
}

void MilterSession::helo(const std::string& helo, const MilterMacros& macros, Completion done) {
  record_.helo = helo;
  record_.esmtp = true;  // the milter protocol does not say; filters only use it for replies
  if (!macros.tlsVersion.empty()) {
    record_.tls.active = true;
    record_.tls.protocol = macros.tlsVersion;
    record_.tls.cipher = macros.cipher;
    record_.tls.bits = macros.cipherBits;
  }
  run(Stage::kHelo, std::move(done));
}

void MilterSession::mailFrom(const std::vector<std::string>& args, const MilterMacros& macros,
                             Completion done) {
  if (inTransaction_) endTransaction("aborted");
  macros_.queueId = macros.queueId;  // a new transaction: the last one's id no longer applies
  macros_.authAuthen = macros.authAuthen;
  // Postfix sends {auth_authen} with MAIL (milter_mail_macros); AUTH is once per session.
  if (!macros.authAuthen.empty()) record_.authenticatedUser = macros.authAuthen;
  Envelope& e = record_.envelope;
  e = Envelope{};
  e.mailFrom = args.empty() ? "" : stripBrackets(args[0]);
  e.nullSender = e.mailFrom.empty();
  for (std::size_t i = 1; i < args.size(); ++i) {
    e.mailParams.push_back(args[i]);
    if (sameName(args[i].substr(0, 5), "SIZE=")) {
      std::uint64_t n = 0;
      bool ok = args[i].size() > 5;
      for (const char ch : args[i].substr(5)) {
        ok = ok && ch >= '0' && ch <= '9' && n < (1ULL << 50);
        n = n * 10 + static_cast<std::uint64_t>(ch - '0');
      }
      if (ok) e.declaredSize = n;
    }
    if (sameName(args[i], "SMTPUTF8")) e.smtputf8 = true;
  }
  inTransaction_ = true;
  added_.clear();
  message_.clear();
  record_.message = MessageInfo{};
  run(Stage::kMailFrom, std::move(done));
}

void MilterSession::rcptTo(const std::vector<std::string>& args, Completion done) {
  Envelope& e = record_.envelope;
  e.currentRecipient = args.empty() ? "" : stripBrackets(args[0]);
  e.currentRecipientParams.assign(args.size() > 1 ? args.begin() + 1 : args.end(), args.end());
  run(Stage::kRcptTo, std::move(done), [this](MilterAction&) {
    record_.envelope.recipients.push_back(record_.envelope.currentRecipient);
  });
}

void MilterSession::data(Completion done) {
  record_.envelope.currentRecipient.clear();
  record_.envelope.currentRecipientParams.clear();
  run(Stage::kData, std::move(done));
}

void MilterSession::endOfHeaders(std::vector<HeaderField> headers, Completion done) {
  message_.clear();
  for (HeaderField& h : headers) {
    message_ += h.name + ": " + h.value + "\r\n";
    h.value = unfold(h.value);
  }
  message_ += "\r\n";
  record_.message.headers = std::move(headers);
  record_.message.size = message_.size();
  record_.message.reader = reader_.get();
  run(Stage::kEndOfHeaders, std::move(done), [this](MilterAction& a) {
    // Headers can only be added at end-of-message (libmilter refuses them before).
    for (const MilterHeaderOp& op : a.headerOps) added_.push_back({op.name, op.value});
    a.headerOps.clear();
  });
}

void MilterSession::endOfMessage(const std::string& body, std::uint64_t size, Completion done) {
  message_ += body;
  record_.message.size = message_.size() - body.size() + size;
  record_.message.oversized = size > body.size();
  record_.message.reader = reader_.get();
  run(Stage::kEndOfMessage, std::move(done), [this](MilterAction& a) {
    std::vector<MilterHeaderOp> ops;
    for (const HeaderField& h : added_)
      ops.push_back({MilterHeaderOp::Kind::kAdd, h.name, h.value});
    for (MilterHeaderOp& op : a.headerOps) ops.push_back(std::move(op));
    a.headerOps = std::move(ops);
  });
}

void MilterSession::abort() {
  if (chain_.running()) chain_.cancel();
  if (inTransaction_) endTransaction("aborted");
}

void MilterSession::close() {
  if (chain_.running()) chain_.cancel();
  if (inTransaction_) endTransaction("aborted");
  chain_.notifyDisconnect(record_);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(dispatcher_.now() - start_).count();
  spdlog::info(
      "{} event=session client={} helo={} tls={} stage={} messages={} mode=milter "
      "duration={}.{:03d}s{}",
      record_.id, clientText(), logValue(record_.helo.empty() ? "-" : record_.helo),
      record_.tls.active ? record_.tls.protocol : "no", stageName(furthest_), messages_, ms / 1000,
      static_cast<int>(ms % 1000),
      macros_.queueId.empty() ? "" : " queue_id=" + logValue(macros_.queueId));
}

void MilterSession::endTransaction(const char* result) {
  inTransaction_ = false;
  ++record_.transactions;
  chain_.notifyTransactionEnd(record_);
  spdlog::info("{} event=transaction from=<{}> rcpts={} size={} result={} mode=milter{}",
               record_.id, logValue(record_.envelope.mailFrom, 512),
               record_.envelope.recipients.size(), record_.message.size, result,
               macros_.queueId.empty() ? "" : " queue_id=" + logValue(macros_.queueId));
}

void MilterSession::run(Stage stage, Completion done,
                        std::function<void(MilterAction&)> onContinue) {
  // A stage the MTA gave up waiting for (our deadline) may still be running: it is abandoned.
  if (chain_.running()) chain_.cancel();
  furthest_ = std::max(furthest_, stage);
  if (draining_ &&
      (stage == Stage::kConnect || stage == Stage::kHelo || stage == Stage::kMailFrom)) {
    spdlog::info("{} event=shutdown stage={} code=421 dsn=4.3.2 mode=milter", record_.id,
                 stageName(stage));
    MilterAction a;
    a.status = MilterAction::Status::kTempfail;
    a.reply = Reply::transient(421, "4.3.2", config_->hostname + " Service shutting down");
    done(std::move(a));
    return;
  }
  auto answer = std::make_shared<Completion>(std::move(done));
  chain_.run(
      stage, record_,
      [this, stage, answer, onContinue = std::move(onContinue)](const ChainOutcome& outcome) {
        MilterAction action = toAction(stage, outcome);
        if (action.status == MilterAction::Status::kContinue && onContinue) {
          onContinue(action);
        }
        if (stage == Stage::kEndOfMessage) {
          ++messages_;
          endTransaction(resultName(action.status));
        }
        (*answer)(std::move(action));
      });
}

MilterAction MilterSession::toAction(Stage stage, const ChainOutcome& outcome) {
  MilterAction a;
  switch (outcome.kind) {
    case VerdictKind::kContinue:
    case VerdictKind::kAccept:
      break;
    case VerdictKind::kDiscard:
      a.status = MilterAction::Status::kDiscard;
      break;
    case VerdictKind::kTempfail:
    case VerdictKind::kReject:
    case VerdictKind::kDisconnect:
      a.reply = outcome.reply;
      a.status = a.reply && a.reply->isPermanent() ? MilterAction::Status::kReject
                                                   : MilterAction::Status::kTempfail;
      break;
  }
  if (a.status == MilterAction::Status::kContinue) {
    for (const HeaderField& h : outcome.headers) {
      if (!validHeaderName(h.name)) continue;
      a.headerOps.push_back(
          {MilterHeaderOp::Kind::kAdd, h.name, sanitizeText(h.value, kMaxHeaderValue), 0});
    }
    if (stage == Stage::kEndOfMessage) {
      const auto& headers = record_.message.headers;
      for (const HeaderEdit& e : outcome.edits) {
        if (!validHeaderName(e.name)) continue;
        const int count = static_cast<int>(
            std::count_if(headers.begin(), headers.end(),
                          [&](const HeaderField& h) { return sameName(h.name, e.name); }));
        if (e.kind == HeaderEdit::Kind::kReplace) {
          if (count == 0) {
            a.headerOps.push_back(
                {MilterHeaderOp::Kind::kAdd, e.name, sanitizeText(e.value, kMaxHeaderValue), 0});
          } else {
            a.headerOps.push_back(
                {MilterHeaderOp::Kind::kChange, e.name, sanitizeText(e.value, kMaxHeaderValue), 1});
          }
          continue;
        }
        // Highest index first, so that no deletion renumbers one still to come.
        if (e.occurrence == 0) {
          for (int i = count; i >= 1; --i) {
            a.headerOps.push_back({MilterHeaderOp::Kind::kChange, e.name, "", i});
          }
        } else {
          const int i = e.occurrence > 0 ? e.occurrence : count + e.occurrence + 1;
          if (i >= 1 && i <= count) {
            a.headerOps.push_back({MilterHeaderOp::Kind::kChange, e.name, "", i});
          }
        }
      }
    }
    return a;
  }
  const std::string ref = config_->reply.reference && a.reply ? newReference() : "";
  if (!ref.empty()) {
    a.reply =
        Reply::make(a.reply->code(), a.reply->enhanced(), {a.reply->text() + " [ref=" + ref + "]"})
            .value_or(*a.reply);
  }
  const auto& env = record_.envelope;
  spdlog::info(
      "{} event={} from=<{}> to=<{}> helo={} client={} stage={} code={} dsn={} filter={} "
      "reason={} mode=milter{}{}",
      record_.id, a.status == MilterAction::Status::kDiscard ? "discard" : "reject",
      logValue(env.mailFrom, 512), logValue(env.currentRecipient, 512),
      logValue(record_.helo.empty() ? "-" : record_.helo), clientText(), stageName(stage),
      a.reply ? a.reply->code() : 250, a.reply ? a.reply->enhanced() : "2.0.0",
      logValue(outcome.filter), logValue(outcome.reason),
      macros_.queueId.empty() ? "" : " queue_id=" + logValue(macros_.queueId),
      ref.empty() ? "" : " ref=" + ref);
  return a;
}

}  // namespace portcullis
