// ConnectionTable. See connection_table.h.

#include "proxy/server/connection_table.h"

namespace portcullis {

ConnectionTable::Admission ConnectionTable::admit(const std::string& key, std::size_t maxTotal,
                                                  std::size_t maxPerKey, bool checkPerKey) {
  const std::lock_guard lock(mutex_);
  Admission a;
  a.total = total_;
  if (const auto it = perKey_.find(key); it != perKey_.end()) a.fromKey = it->second;
  if (total_ >= maxTotal) {
    a.verdict = Verdict::kTooMany;
  } else if (checkPerKey && a.fromKey >= maxPerKey) {
    a.verdict = Verdict::kTooManyFromAddress;
  } else {
    ++total_;
    ++perKey_[key];
  }
  return a;
}

void ConnectionTable::dropLocked(const std::string& key) {
  if (auto it = perKey_.find(key); it != perKey_.end() && --it->second == 0) perKey_.erase(it);
}

void ConnectionTable::release(const std::string& key) {
  const std::lock_guard lock(mutex_);
  dropLocked(key);
  if (total_ > 0) --total_;
}

bool ConnectionTable::rekey(const std::string& before, const std::string& after,
                            std::size_t maxPerKey) {
  const std::lock_guard lock(mutex_);
  dropLocked(before);
  return ++perKey_[after] <= maxPerKey;
}

std::size_t ConnectionTable::total() const {
  const std::lock_guard lock(mutex_);
  return total_;
}

}  // namespace portcullis
