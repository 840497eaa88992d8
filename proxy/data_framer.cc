// DataFramer. See data_framer.h.

#include "proxy/data_framer.h"

#include <cstring>

namespace portcullis {

void DataFramer::emit(const char* p, std::size_t n, ByteSink& sink) {
  const std::uint64_t before = size_;
  size_ += n;
  if (poisoned() || before >= maxSize_) return;  // stop storing; keep counting
  const std::uint64_t room = maxSize_ - before;
  sink.append(p, n <= room ? n : static_cast<std::size_t>(room));
}

DataFramer::Result DataFramer::feed(std::string_view in, ByteSink& sink) {
  const char* const data = in.data();
  const std::size_t n = in.size();
  std::size_t pos = 0;
  while (pos < n) {
    switch (state_) {
      case State::kLineStart:
        if (data[pos] == '.') {
          state_ = State::kDot;
          ++pos;
        } else {
          state_ = State::kMid;
        }
        break;
      case State::kDot:
        if (data[pos] == '\r') {
          state_ = State::kDotCr;
          ++pos;
        } else {
          // A stuffed line: the leading dot is dropped (RFC 5321 4.5.2).
          state_ = State::kMid;
        }
        break;
      case State::kDotCr:
        if (data[pos] == '\n') {
          state_ = State::kLineStart;
          return {true, pos + 1};
        }
        state_ = State::kCr;  // ".\r" then not LF: the CR is bare; handled below
        break;
      case State::kCr:
        if (data[pos] == '\n') {
          emit("\r\n", 2, sink);
          state_ = State::kLineStart;
          ++pos;
        } else {
          bareCr_ = true;  // never turned into CRLF
          state_ = State::kMid;
        }
        break;
      case State::kMid: {
        // Fast path: copy the run up to the next CR or LF (two memchr scans per line).
        const void* cr = std::memchr(data + pos, '\r', n - pos);
        const std::size_t crPos =
            cr ? static_cast<std::size_t>(static_cast<const char*>(cr) - data) : n;
        const void* lf = std::memchr(data + pos, '\n', crPos - pos);
        const std::size_t end =
            lf ? static_cast<std::size_t>(static_cast<const char*>(lf) - data) : crPos;
        if (end > pos) emit(data + pos, end - pos, sink);
        pos = end;
        if (pos == n) break;
        if (data[pos] == '\r') {
          state_ = State::kCr;
        } else {
          bareLf_ = true;  // LF without CR: never a line end, never rewritten
        }
        ++pos;
        break;
      }
    }
  }
  return {false, n};
}

}  // namespace portcullis
