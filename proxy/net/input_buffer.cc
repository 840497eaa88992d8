// InputBuffer. See input_buffer.h.

#include "proxy/net/input_buffer.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace portcullis {
namespace {

constexpr std::size_t kMinCapacity = 256;

}  // namespace

void InputBuffer::drain(std::size_t n) {
  begin_ += std::min(n, size());
  if (begin_ != end_) return;
  begin_ = end_ = 0;
  if (lent_ == nullptr && capacity_ > kKeepCapacity) {
    owned_.reset();
    capacity_ = 0;
  }
}

void InputBuffer::append(std::string_view bytes) {
  if (bytes.empty()) return;
  endLoan();
  reserveOwned(bytes.size());
  std::memcpy(owned_.get() + end_, bytes.data(), bytes.size());
  end_ += bytes.size();
}

void InputBuffer::lend(std::string_view bytes) {
  assert(empty() && lent_ == nullptr);
  lent_ = bytes.data();
  begin_ = 0;
  end_ = bytes.size();
}

void InputBuffer::endLoan() {
  if (lent_ == nullptr) return;
  const std::string_view rest = view();
  lent_ = nullptr;
  begin_ = end_ = 0;
  append(rest);  // the loan's memory is still valid here
}

void InputBuffer::reserveOwned(std::size_t n) {
  if (end_ + n <= capacity_) return;
  const std::size_t used = size();
  if (used + n <= capacity_) {
    std::memmove(owned_.get(), owned_.get() + begin_, used);
  } else {
    const std::size_t capacity = std::max({used + n, 2 * capacity_, kMinCapacity});
    auto grown = std::make_unique_for_overwrite<char[]>(capacity);
    if (used > 0) std::memcpy(grown.get(), owned_.get() + begin_, used);
    owned_ = std::move(grown);
    capacity_ = capacity;
  }
  begin_ = 0;
  end_ = used;
}

}  // namespace portcullis
