// Reply references. See reference.h.

#include "proxy/base/reference.h"

#include <openssl/rand.h>

#include <algorithm>
#include <mutex>
#include <random>

namespace portcullis {
namespace {

constexpr std::uint64_t kBase = kReferenceAlphabet.size();  // 30
constexpr std::uint64_t kSpace = kBase * kBase * kBase * kBase * kBase * kBase * kBase * kBase;
// Coprime with 30 (odd, digit sum 34, not ending in 0 or 5), so i -> i * kStep mod 30^8 is a
// bijection; small enough that i * kStep fits in 64 bits for every i < 30^8.
constexpr std::uint64_t kStep = 16777213;
static_assert(kSpace < (~std::uint64_t{0}) / kStep);

}  // namespace

ReferenceGenerator::ReferenceGenerator(std::uint64_t start) : counter_(start % kSpace) {}

std::string ReferenceGenerator::next() {
  std::uint64_t v = (counter_ * kStep) % kSpace;
  counter_ = (counter_ + 1) % kSpace;
  std::string out(kReferenceLength, '2');
  for (std::size_t i = 0; i < kReferenceLength; ++i) {
    out[kReferenceLength - 1 - i] = kReferenceAlphabet[v % kBase];
    v /= kBase;
  }
  return out;
}

std::string newReference() {
  // One generator for the process, so references stay unique across the workers' threads.
  static std::mutex mutex;
  const std::lock_guard lock(mutex);
  static ReferenceGenerator generator = [] {
    std::uint64_t seed = 0;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&seed), sizeof seed) != 1) {
      seed = std::random_device{}();
    }
    return ReferenceGenerator(seed);
  }();
  return generator.next();
}

bool looksLikeReference(std::string_view s) {
  return s.size() == kReferenceLength && std::ranges::all_of(s, [](char c) {
           const char upper = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
           return kReferenceAlphabet.find(upper) != std::string_view::npos;
         });
}

}  // namespace portcullis
