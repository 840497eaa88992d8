#pragma once
// Reply references: the short code portcullis puts at the end of every refusal it writes
// ("554 5.7.1 ... [ref=7Q2K9XHM]") and logs on the reject line, so that an admin holding only a
// bounce finds the session (`portcullis explain 7Q2K9XHM`).
// Eight characters from an alphabet without look-alikes (no 0/O, 1/I/L, U): read out over the
// phone, typed back from a screenshot. Unique within a process: a counter run through a
// bijection of the 30^8 values, from a random start, so that consecutive references do not
// look alike and two instances or restarts are unlikely to meet.

#include <cstdint>
#include <string>

namespace portcullis {

inline constexpr std::string_view kReferenceAlphabet = "23456789ABCDEFGHJKMNPQRSTVWXYZ";
inline constexpr std::size_t kReferenceLength = 8;

class ReferenceGenerator {
 public:
  explicit ReferenceGenerator(std::uint64_t start);  // any value; reduced modulo 30^8
  std::string next();

 private:
  std::uint64_t counter_;
};

// The process-wide generator, seeded once from the CSPRNG.
std::string newReference();

// True if `s` has the shape of a reference (length and alphabet, case-insensitive).
bool looksLikeReference(std::string_view s);

}  // namespace portcullis
