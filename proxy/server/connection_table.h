#pragma once
// ConnectionTable: the live client connections of the whole process, in total and per client
// key (an IPv4 address, an IPv6 prefix: clientCountKey()), so that limits.max_connections and
// limits.max_connections_per_ip are exact however many workers accept. One mutex, taken only at
// accept, at close and when a PROXY header names the real client: never per command. Thread-safe.

#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

namespace portcullis {

class ConnectionTable {
 public:
  enum class Verdict { kAdmitted, kTooMany, kTooManyFromAddress };
  struct Admission {
    Verdict verdict = Verdict::kAdmitted;
    std::size_t total = 0;    // connections before this one
    std::size_t fromKey = 0;  // of them from `key`
  };

  // Counts a new connection from `key` unless that would pass `maxTotal`, or `maxPerKey` when
  // `checkPerKey` (a PROXY listener's peer is the load balancer: counted, not limited).
  Admission admit(const std::string& key, std::size_t maxTotal, std::size_t maxPerKey,
                  bool checkPerKey);
  // The connection admitted under `key` has closed.
  void release(const std::string& key);
  // A PROXY header revealed the real client: the count moves from `before` to `after`. False
  // when that puts `after` over `maxPerKey` (moved all the same; the session closes, and its
  // release() names `after`).
  bool rekey(const std::string& before, const std::string& after, std::size_t maxPerKey);

  std::size_t total() const;

 private:
  void dropLocked(const std::string& key);

  mutable std::mutex mutex_;
  std::size_t total_ = 0;
  std::unordered_map<std::string, std::size_t> perKey_;
};

}  // namespace portcullis
