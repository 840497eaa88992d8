// DnsResolver: see dns_resolver.h. The flow of one lookup:
//   lookup() -> cache hit?  -> ready_ queue -> deliver() (zero timer) -> callback
//            -> in flight?  -> join that Query's waiters
//            -> new Query   -> DnsExchange per attempt -> onAttemptDone() -> complete() -> ready_
// Every callback goes through ready_ and deliver(): one completion path, never inline.

#include "proxy/services/dns/dns_resolver.h"

#include <openssl/rand.h>
#include <sys/random.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "proxy/services/dns/dns_packet.h"

namespace portcullis {
namespace {

// Deliveries in one loop pass whose callbacks queued more results, before the next one waits for
// the loop's next iteration (see scheduleDelivery).
constexpr unsigned kMaxChainedDeliveries = 16;

// Failure kinds in the order we prefer to report them when every attempt failed: an answer from
// a server says more than silence.
enum class FailureRank { kNone, kTimeout, kLocal, kUnreachable, kMalformed, kServerAnswer };

// RFC 5452 9.2: query ids must be unpredictable, so they come from a CSPRNG.
std::optional<std::uint16_t> randomId() {
  std::uint16_t id = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&id), sizeof(id)) == 1) {
    return id;
  }
  if (getrandom(&id, sizeof(id), 0) == static_cast<ssize_t>(sizeof(id))) {
    return id;
  }
  return std::nullopt;
}

}  // namespace

// The caller's handle. resolver_ is cleared once the callback has been taken for delivery or the
// resolver is gone, so destroying the handle afterwards touches nothing.
class DnsResolver::Handle final : public DnsLookup {
 public:
  Handle(DnsResolver* resolver, std::uint64_t id) : resolver_(resolver), id_(id) {}
  ~Handle() override {
    if (resolver_ != nullptr) {
      resolver_->cancel(id_);
    }
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  DnsResolver* resolver_;
  std::uint64_t id_;
};

// One network query shared by every caller that asked for the same (name, type) meanwhile.
struct DnsResolver::Query {
  std::string key;
  std::string name;  // normalized
  DnsType type = DnsType::kA;
  std::vector<std::uint64_t> waiters;  // may hold ids already cancelled
  std::size_t live = 0;                // waiters not cancelled
  int attempt = 0;                     // attempts started
  std::unique_ptr<DnsExchange> exchange;
  FailureRank failureRank = FailureRank::kNone;
  DnsStatus failureStatus = DnsStatus::kTimeout;
  std::string failureDetail;
};

std::unique_ptr<DnsResolver> DnsResolver::create(Dispatcher& dispatcher, DnsSettings settings,
                                                 std::string* error) {
  auto fail = [error](std::string why) -> std::unique_ptr<DnsResolver> {
    if (error != nullptr) {
      *error = std::move(why);
    }
    return nullptr;
  };
  if (settings.timeout.count() <= 0) {
    return fail("dns: timeout must be positive");
  }
  if (settings.attempts < 1 || settings.attempts > 10) {
    return fail("dns: attempts must be 1..10");
  }
  if (settings.maxInFlight == 0) {
    return fail("dns: maxInFlight must be positive");
  }
  std::vector<DnsServer> servers;
  for (const auto& spec : settings.servers) {
    std::string why;
    auto server = parseDnsServer(spec, &why);
    if (!server) {
      return fail("dns: " + why);
    }
    servers.push_back(std::move(*server));
  }
  std::unique_ptr<DnsResolver> resolver(
      new DnsResolver(dispatcher, std::move(settings), std::move(servers)));
  return resolver;
}

std::vector<std::string> DnsResolver::serversFromResolvConf(const std::string& path) {
  std::vector<std::string> servers;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    // resolv.conf(5): comments start with '#' or ';' in the first column; be lenient anywhere.
    line = line.substr(0, line.find_first_of("#;"));
    std::istringstream words(line);
    std::string keyword;
    std::string address;
    if (words >> keyword >> address && keyword == "nameserver" &&
        parseDnsServer(address, nullptr)) {
      servers.push_back(address);
    }
  }
  return servers;
}

DnsResolver::DnsResolver(Dispatcher& dispatcher, DnsSettings settings,
                         std::vector<DnsServer> servers)
    : dispatcher_(dispatcher),
      settings_(std::move(settings)),
      servers_(std::move(servers)),
      cache_(settings_.cacheEntries),
      deliverSoon_(dispatcher, [this] { deliver(); }),
      deliverTimer_(dispatcher, [this] { deliver(); }) {}

DnsResolver::~DnsResolver() {
  for (auto& [id, waiter] : waiters_) {
    waiter.handle->resolver_ = nullptr;
  }
  // Callbacks may own other handles; all are detached, so destroying them is a no-op.
  auto waiters = std::move(waiters_);
  waiters_.clear();
  inflight_.clear();  // closes every socket and event of every exchange
  ready_.clear();
}

std::unique_ptr<DnsLookup> DnsResolver::lookup(std::string_view name, DnsType type,
                                               Callback callback) {
  ++stats_.lookups;
  const std::uint64_t id = nextWaiterId_++;
  auto handle = std::make_unique<Handle>(this, id);
  Waiter& waiter = waiters_[id];  // node-based map: the reference survives later inserts
  waiter.handle = handle.get();
  waiter.callback = std::move(callback);

  auto normalized = normalizeQueryName(name);
  if (!normalized) {
    ++stats_.rejected;
    fail(id, DnsStatus::kError, "invalid query name (" + std::to_string(name.size()) + " chars)");
    return handle;
  }
  if (servers_.empty()) {
    ++stats_.rejected;
    fail(id, DnsStatus::kError, "no DNS servers configured");
    return handle;
  }
  std::string key = DnsCache::key(*normalized, type);
  if (auto hit = cache_.get(key, dispatcher_.now())) {
    ++stats_.cacheHits;
    readyWith(id, std::make_shared<const DnsResult>(std::move(*hit)));
    return handle;
  }
  if (auto it = inflight_.find(key); it != inflight_.end()) {
    ++stats_.merged;
    it->second->waiters.push_back(id);
    ++it->second->live;
    waiter.query = it->second.get();
    return handle;
  }
  if (inflight_.size() >= settings_.maxInFlight) {
    ++stats_.rejected;
    fail(id, DnsStatus::kError, "too many DNS queries in flight");
    return handle;
  }
  auto query = std::make_unique<Query>();
  query->key = key;
  query->name = std::move(*normalized);
  query->type = type;
  query->waiters.push_back(id);
  query->live = 1;
  Query* raw = query.get();
  inflight_.emplace(std::move(key), std::move(query));
  waiter.query = raw;
  ++stats_.queries;
  startAttempt(raw);
  return handle;
}

void DnsResolver::startAttempt(Query* query) {
  // Rotate: attempt n goes to server n mod count, so a dead first server costs one timeout.
  const DnsServer& server = servers_[static_cast<std::size_t>(query->attempt) % servers_.size()];
  ++query->attempt;
  const auto id = randomId();
  std::vector<std::uint8_t> wire;
  if (!id || !buildQuery(query->name, query->type, *id, &wire)) {
    // Cannot happen for a validated name unless the RNG fails; report it through the loop like
    // every other failure by starting no exchange and completing now (complete() only queues).
    query->exchange.reset();
    complete(query,
             DnsResult{DnsStatus::kError, {}, id ? "cannot encode query" : "no random id", false},
             std::nullopt);
    return;
  }
  DnsExpectation expect{*id, nameToWire(query->name), static_cast<std::uint16_t>(query->type)};
  query->exchange = std::make_unique<DnsExchange>(
      dispatcher_, server, std::move(wire), std::move(expect), settings_.timeout, &stats_,
      [this, query](ExchangeOutcome outcome) { onAttemptDone(query, std::move(outcome)); });
}

void DnsResolver::onAttemptDone(Query* query, ExchangeOutcome outcome) {
  const DnsServer& server =
      servers_[static_cast<std::size_t>(query->attempt - 1) % servers_.size()];
  const std::string where = "server=" + server.text + (outcome.viaTcp ? " tcp" : "");
  auto note = [query](FailureRank rank, DnsStatus status, std::string detail) {
    if (rank >= query->failureRank) {
      query->failureRank = rank;
      query->failureStatus = status;
      query->failureDetail = std::move(detail);
    }
  };

  switch (outcome.status) {
    case ExchangeStatus::kAnswer: {
      auto parsed =
          parseAnswer(outcome.answer.data(), outcome.answer.size(), query->name, query->type);
      if (!parsed) {
        ++stats_.failures;
        note(FailureRank::kMalformed, DnsStatus::kError, where + " malformed answer");
        break;
      }
      parsed->result.detail = where + " " + parsed->result.detail;
      // SERVFAIL/REFUSED from one server may be that server's problem: ask the next one if
      // there is another and attempts remain. From the only server, the answer is final.
      const bool retry = parsed->result.status == DnsStatus::kServFail && servers_.size() > 1 &&
                         query->attempt < settings_.attempts;
      if (retry) {
        note(FailureRank::kServerAnswer, DnsStatus::kServFail, parsed->result.detail);
        break;
      }
      complete(query, std::move(parsed->result), parsed->ttl);
      return;  // query is gone
    }
    case ExchangeStatus::kTimeout:
      note(FailureRank::kTimeout, DnsStatus::kTimeout, where + " " + outcome.detail);
      break;
    case ExchangeStatus::kUnreachable:
    case ExchangeStatus::kProtocolError:
      ++stats_.failures;
      note(FailureRank::kUnreachable, DnsStatus::kServFail, where + " " + outcome.detail);
      break;
    case ExchangeStatus::kLocalError:
      ++stats_.failures;
      note(FailureRank::kLocal, DnsStatus::kError, where + " " + outcome.detail);
      break;
  }

  if (query->attempt < settings_.attempts) {
    startAttempt(query);  // replaces (destroys) the finished exchange; it touches nothing after
    return;
  }
  DnsResult result;
  result.status = query->failureStatus;
  result.detail = query->failureDetail + " attempts=" + std::to_string(query->attempt);
  complete(query, std::move(result), std::nullopt);
}

void DnsResolver::complete(Query* query, DnsResult result, std::optional<std::uint32_t> ttl) {
  // RFC 2308 5 / RFC 1035 3.2.1: cache for the answer's TTL within our caps. Failures (SERVFAIL,
  // timeouts, local errors) are not cached: merging already absorbs the burst.
  std::chrono::seconds keep{0};
  if (result.status == DnsStatus::kOk && ttl) {
    keep = std::min(std::chrono::seconds(*ttl), settings_.maxTtl);
  } else if (result.negative()) {
    keep =
        std::min(ttl ? std::chrono::seconds(*ttl) : settings_.negativeTtl, settings_.negativeTtl);
  }
  cache_.put(query->key, result, keep, dispatcher_.now());

  // Take the query out of the map but keep it alive until we return: we may be running inside
  // its exchange's callback.
  auto node = inflight_.extract(query->key);
  auto shared = std::make_shared<const DnsResult>(std::move(result));
  for (std::uint64_t id : query->waiters) {
    auto it = waiters_.find(id);
    if (it == waiters_.end() || it->second.query != query) {
      continue;  // cancelled
    }
    it->second.query = nullptr;
    it->second.result = shared;
    ready_.push_back(id);
  }
  scheduleDelivery();
}

void DnsResolver::cancel(std::uint64_t waiterId) {
  auto it = waiters_.find(waiterId);
  if (it == waiters_.end()) {
    return;
  }
  // Move out before erasing: destroying the callback may destroy other handles, which calls
  // back into cancel(); the maps must be consistent by then.
  Waiter waiter = std::move(it->second);
  waiters_.erase(it);
  std::unique_ptr<Query> abandoned;
  if (waiter.query != nullptr && --waiter.query->live == 0) {
    // Nobody wants the answer any more: drop the query and close its socket. A late answer
    // then meets a closed port, which is harmless.
    auto node = inflight_.find(waiter.query->key);
    abandoned = std::move(node->second);
    inflight_.erase(node);
    ++stats_.abandoned;
  }
}

void DnsResolver::fail(std::uint64_t waiterId, DnsStatus status, std::string detail) {
  DnsResult result;
  result.status = status;
  result.detail = std::move(detail);
  readyWith(waiterId, std::make_shared<const DnsResult>(std::move(result)));
}

void DnsResolver::readyWith(std::uint64_t waiterId, std::shared_ptr<const DnsResult> result) {
  waiters_[waiterId].result = std::move(result);
  ready_.push_back(waiterId);
  scheduleDelivery();
}

void DnsResolver::scheduleDelivery() {
  if (deliverScheduled_) return;
  deliverScheduled_ = true;
  // A delivery in the loop's current pass costs no system call (a zero timer costs a poll).
  // Callbacks that keep starting cached lookups would keep the pass going: after a few such
  // rounds the next delivery waits for the next loop iteration, after I/O.
  if (delivering_ && ++chained_ >= kMaxChainedDeliveries) {
    chained_ = 0;
    deliverTimer_.start(std::chrono::milliseconds(0));
    return;
  }
  deliverSoon_.schedule();
}

void DnsResolver::deliver() {
  // A callback never destroys the resolver (its owner would use Dispatcher::deferredDelete),
  // but it may cancel other lookups, or start new ones.
  // Only what was ready when we woke up; anything queued by these callbacks waits a turn.
  deliverScheduled_ = false;
  delivering_ = true;
  std::size_t budget = ready_.size();
  while (budget-- > 0 && !ready_.empty()) {
    const std::uint64_t id = ready_.front();
    ready_.pop_front();
    {
      auto it = waiters_.find(id);
      if (it == waiters_.end()) {
        continue;  // cancelled after it became ready
      }
      Waiter waiter = std::move(it->second);
      waiters_.erase(it);
      waiter.handle->resolver_ = nullptr;  // the handle may now die at any time, even in here
      if (waiter.callback) {
        waiter.callback(*waiter.result);
      }
    }  // the callback and its captures die here, possibly cancelling other handles
  }
  if (!ready_.empty()) scheduleDelivery();  // counted as chained: still delivering_
  delivering_ = false;
  if (!deliverScheduled_) chained_ = 0;
}

}  // namespace portcullis
