#pragma once
// InputBuffer: what a connection has read and its owner has not consumed yet, in one contiguous
// block (a command line or a reply line is always whole in view(); nothing to pull up).
//
// A read into an empty buffer is lent, not copied: the stream points the buffer at the bytes it
// just read (lend), calls its owner, and then keeps only what the owner left (endLoan), usually
// nothing. So a session that consumes each read whole (one command, a body chunk) costs neither
// a copy nor an allocation; an evbuffer allocated and freed a chain for every read. Storage of
// its own is allocated only for a remainder (a partial line, pipelined commands waiting on a
// filter), kept while small, and released when drained if it grew past kKeepCapacity.

#include <cstddef>
#include <memory>
#include <string_view>

namespace portcullis {

class InputBuffer {
 public:
  // Storage a buffer keeps once drained; more (a body read while the session waited) is freed.
  static constexpr std::size_t kKeepCapacity = 4096;

  InputBuffer() = default;
  InputBuffer(const InputBuffer&) = delete;
  InputBuffer& operator=(const InputBuffer&) = delete;

  std::size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  // Everything unread, contiguous. Valid until the next call that changes the buffer.
  std::string_view view() const { return {base() + begin_, size()}; }
  // Consumes the first min(n, size()) bytes.
  void drain(std::size_t n);
  void clear() { drain(size()); }
  void append(std::string_view bytes);

  // The buffer shows `bytes` (which must stay valid and unchanged until endLoan) without copying
  // them. Only into an empty buffer, and not while a loan is out.
  void lend(std::string_view bytes);
  // Copies what is left of the loan (if anything) into the buffer's own storage.
  void endLoan();
  bool lent() const { return lent_ != nullptr; }
  // Bytes of storage of its own (what an idle connection costs).
  std::size_t capacity() const { return capacity_; }

 private:
  const char* base() const { return lent_ != nullptr ? lent_ : owned_.get(); }
  void reserveOwned(std::size_t n);

  std::unique_ptr<char[]> owned_;
  std::size_t capacity_ = 0;
  const char* lent_ = nullptr;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace portcullis
