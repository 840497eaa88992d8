// The stream transport. See stream_exchange.h.

#include "filters/scanner/stream_exchange.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "portcullis/connector.h"

namespace portcullis {
namespace {

// One read from the spool, and how much may wait in the socket's output before we pause
// (the watermark backpressure of libevent's le-proxy sample).
constexpr std::size_t kChunk = 64 * 1024;
constexpr std::size_t kHighWater = 256 * 1024;

ScanResult failure(std::string error) {
  return {ScanResult::Kind::kError, std::nullopt, {}, std::move(error)};
}

class StreamExchange final : public ScanExchange, private ConnectionHandler {
 public:
  StreamExchange(const ScanProtocol& protocol, const ScanRequest& request,
                 std::function<void(ScanResult)> done)
      : protocol_(protocol),
        reader_(request.message),
        size_(request.size),
        timeout_(request.timeout),
        timers_(request.context.timers),
        done_(std::move(done)) {}

  void start(const std::string& address, Connector* connector, const SessionView& session) {
    if (connector == nullptr || timers_ == nullptr) {
      failLater("no connector");
      return;
    }
    connection_ = connector->connect(address, timeout_, *this);
    connection_->write(protocol_.request(session, size_));
    pump();
  }

 private:
  void pump() {
    // Reads the spool a chunk at a time while the socket's output is below the high-water
    // mark; onDrained() resumes. A spooled file is never read whole.
    std::string framed;
    std::string chunk;
    while (connection_ && offset_ < size_ && connection_->pendingWrite() < kHighWater) {
      chunk.resize(static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, size_ - offset_)));
      const std::size_t n = reader_.read(offset_, chunk.data(), chunk.size());
      if (n == 0) {
        connection_.reset();
        failLater("cannot read the spooled message at offset " + std::to_string(offset_));
        return;
      }
      offset_ += n;
      framed.clear();
      protocol_.frameChunk(std::string_view(chunk.data(), n), framed);
      connection_->write(framed);
    }
    if (connection_ && offset_ == size_ && !trailerSent_) {
      trailerSent_ = true;
      connection_->write(protocol_.trailer());
      connection_->setReadTimeout(timeout_);
    }
  }

  // A failure known inside a call (start() or a handler's pump): reported from the loop.
  void failLater(std::string error) {
    if (timers_ == nullptr) return;  // no loop at all: the filter's deadline cannot run either
    failTimer_ = timers_->start(std::chrono::milliseconds(0),
                                [this, error = std::move(error)] { complete(failure(error)); });
  }

  void complete(ScanResult result) {
    std::function<void(ScanResult)> done = std::move(done_);
    if (done) done(std::move(result));  // may destroy this: touch nothing afterwards
  }

  void onDrained() override { pump(); }

  void onReceived(std::string_view bytes) override {
    if (reply_.size() + bytes.size() > protocol_.maxReply()) {
      complete(failure("reply longer than " + std::to_string(protocol_.maxReply()) + " bytes"));
      return;
    }
    reply_.append(bytes);
    ScanResult result = protocol_.parseReply(reply_, false);
    if (result.kind != ScanResult::Kind::kIncomplete) complete(std::move(result));
  }

  void onEnd(ConnectionEnd end, std::string_view detail) override {
    // A reply that came before the end still counts (clamd answers its size-limit error and
    // closes while we are still writing).
    if (end != ConnectionEnd::kTimeout && !reply_.empty()) {
      ScanResult result = protocol_.parseReply(reply_, true);
      if (result.kind != ScanResult::Kind::kIncomplete) {
        complete(std::move(result));
        return;
      }
    }
    std::string error = std::string(connectionEndName(end)) + ": " + sanitizeScannerText(detail);
    if (end == ConnectionEnd::kClosed) error = "closed without a reply";
    complete(failure(std::move(error)));
  }

  const ScanProtocol& protocol_;
  const MessageReader& reader_;
  std::uint64_t size_;
  std::chrono::milliseconds timeout_;
  Timers* timers_;
  std::function<void(ScanResult)> done_;
  std::uint64_t offset_ = 0;
  bool trailerSent_ = false;
  std::string reply_;
  std::unique_ptr<TimerHandle> failTimer_;
  std::unique_ptr<Connection> connection_;  // last: closed first
};

// The breaker's health check: the protocol's probe bytes, and its answer.
class StreamProbe final : public ScanExchange, private ConnectionHandler {
 public:
  StreamProbe(const ScanProtocol& protocol, std::function<void(bool, std::string)> done)
      : protocol_(protocol), done_(std::move(done)) {}

  void start(const std::string& address, const ScanRequest& request) {
    if (request.context.connector == nullptr || request.context.timers == nullptr) {
      failTimer_ = request.context.timers == nullptr
                       ? nullptr
                       : request.context.timers->start(std::chrono::milliseconds(0),
                                                       [this] { complete(false, "no connector"); });
      return;
    }
    connection_ = request.context.connector->connect(address, request.timeout, *this);
    connection_->write(protocol_.probe());
    connection_->setReadTimeout(request.timeout);
  }

 private:
  void complete(bool healthy, std::string detail) {
    std::function<void(bool, std::string)> done = std::move(done_);
    if (done) done(healthy, std::move(detail));  // may destroy this: touch nothing afterwards
  }

  void onReceived(std::string_view bytes) override {
    if (reply_.size() + bytes.size() > protocol_.maxReply()) {
      complete(false, "reply longer than " + std::to_string(protocol_.maxReply()) + " bytes");
      return;
    }
    reply_.append(bytes);
    if (const std::optional<bool> healthy = protocol_.parseProbeReply(reply_, false)) {
      complete(*healthy, *healthy ? "" : "unexpected reply " + sanitizeScannerText(reply_));
    }
  }

  void onEnd(ConnectionEnd end, std::string_view detail) override {
    const std::optional<bool> healthy = protocol_.parseProbeReply(reply_, true);
    if (healthy && *healthy) {
      complete(true, "");
      return;
    }
    complete(false, reply_.empty()
                        ? std::string(connectionEndName(end)) + ": " + sanitizeScannerText(detail)
                        : "unexpected reply " + sanitizeScannerText(reply_));
  }

  const ScanProtocol& protocol_;
  std::function<void(bool, std::string)> done_;
  std::string reply_;
  std::unique_ptr<TimerHandle> failTimer_;
  std::unique_ptr<Connection> connection_;  // last: closed first
};

class StreamScanClient final : public ScanClient {
 public:
  StreamScanClient(std::shared_ptr<const ScanProtocol> protocol, std::string address)
      : protocol_(std::move(protocol)), address_(std::move(address)) {}
  std::string_view scannerName() const override { return protocol_->scannerName(); }
  std::unique_ptr<ScanExchange> start(const ScanRequest& request,
                                      std::function<void(ScanResult)> done) const override {
    auto exchange = std::make_unique<StreamExchange>(*protocol_, request, std::move(done));
    exchange->start(address_, request.context.connector, request.session);
    return exchange;
  }
  bool canProbe() const override { return !protocol_->probe().empty(); }
  std::unique_ptr<ScanExchange> probe(const ScanRequest& request,
                                      std::function<void(bool, std::string)> done) const override {
    auto exchange = std::make_unique<StreamProbe>(*protocol_, std::move(done));
    exchange->start(address_, request);
    return exchange;
  }

 private:
  std::shared_ptr<const ScanProtocol> protocol_;
  std::string address_;
};

}  // namespace

std::shared_ptr<const ScanClient> makeStreamScanClient(std::shared_ptr<const ScanProtocol> protocol,
                                                       std::string address) {
  return std::make_shared<const StreamScanClient>(std::move(protocol), std::move(address));
}

}  // namespace portcullis
