#pragma once
// FakeResolver: a scripted Resolver for filter tests. Answers come from a table keyed by
// (name, type). By default answers are queued and delivered only when the test calls flush()
// (the "deferred" path, like a real resolver completing from the event loop); with
// setInline(true) the callback runs inside lookup() (the inline path the chain must survive).
// Destroying a handle cancels its pending answer. Records every query for assertions.

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "portcullis/resolver.h"

namespace portcullis::testing {

class FakeResolver final : public Resolver {
 public:
  // Records: A/AAAA/PTR/MX/TXT values; status defaults to kOk when values are given,
  // kNxDomain for names never set.
  void set(const std::string& name, DnsType type, std::vector<std::string> values,
           std::uint32_t ttl = 60) {
    DnsResult r;
    r.status = values.empty() ? DnsStatus::kNoData : DnsStatus::kOk;
    for (auto& v : values) r.records.push_back({type, ttl, std::move(v), 10});
    table_[{lower(name), type}] = std::move(r);
  }
  void setStatus(const std::string& name, DnsType type, DnsStatus status) {
    DnsResult r;
    r.status = status;
    table_[{lower(name), type}] = std::move(r);
  }
  void setInline(bool on) { inline_ = on; }

  std::unique_ptr<DnsLookup> lookup(std::string_view name, DnsType type,
                                    Callback callback) override {
    queries_.emplace_back(lower(std::string(name)), type);
    DnsResult result;
    auto it = table_.find({lower(std::string(name)), type});
    if (it != table_.end()) {
      result = it->second;
    } else {
      result.status = DnsStatus::kNxDomain;
    }
    auto handle = std::make_unique<Handle>(this);
    if (inline_) {
      callback(result);
      return handle;
    }
    pending_.push_back({handle.get(), std::move(callback), std::move(result)});
    return handle;
  }

  // Delivers every queued answer (and answers queued by those callbacks). Returns how many.
  int flush() {
    int n = 0;
    while (!pending_.empty()) {
      Pending p = std::move(pending_.front());
      pending_.erase(pending_.begin());
      if (p.handle == nullptr) continue;  // cancelled
      ++n;
      p.callback(p.result);
    }
    return n;
  }

  std::size_t pendingCount() const {
    std::size_t n = 0;
    for (const auto& p : pending_) n += p.handle != nullptr;
    return n;
  }
  const std::vector<std::pair<std::string, DnsType>>& queries() const { return queries_; }

 private:
  struct Handle final : DnsLookup {
    explicit Handle(FakeResolver* r) : owner(r) {}
    ~Handle() override {
      for (auto& p : owner->pending_) {
        if (p.handle == this) p.handle = nullptr;
      }
    }
    FakeResolver* owner;
  };
  struct Pending {
    Handle* handle;
    Callback callback;
    DnsResult result;
  };
  static std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
  }

  std::map<std::pair<std::string, DnsType>, DnsResult> table_;
  std::vector<Pending> pending_;
  std::vector<std::pair<std::string, DnsType>> queries_;
  bool inline_ = false;
};

}  // namespace portcullis::testing
