// DataFramer. See data_framer.h.

#include "proxy/smtp/data_framer.h"

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
          if (data[pos] == '.') dotLedLine_ = true;
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
          lineLength_ = 0;
          state_ = State::kLineStart;
          ++pos;
        } else {
          bareCr_ = true;  // never turned into CRLF
          countLine(1);    // the bare CR is part of the line
          state_ = State::kMid;
        }
        break;
      case State::kMid: {
        // Fast path: whole CRLF-terminated lines go to the sink as one span, cut only where a
        // line starts with a dot (stuffing to remove, or the end of data), at a bare CR or LF,
        // and at the end of the input. Two memchr scans per line, one sink call per span.
        std::size_t start = pos;
        while (true) {
          const void* cr = std::memchr(data + pos, '\r', n - pos);
          const std::size_t crPos =
              cr ? static_cast<std::size_t>(static_cast<const char*>(cr) - data) : n;
          if (const void* lf = std::memchr(data + pos, '\n', crPos - pos)) {
            // LF without CR: never a line end, never rewritten. What came before it is stored
            // (as if the input had been cut there); from now on the message is poisoned.
            const auto lfPos = static_cast<std::size_t>(static_cast<const char*>(lf) - data);
            emit(data + start, lfPos - start, sink);
            countLine(lfPos + 1 - pos);  // a bare LF does not end the line either
            bareLf_ = true;
            pos = start = lfPos + 1;
            continue;
          }
          if (crPos == n) {  // the line goes on in the next chunk
            countLine(n - pos);
            pos = n;
            break;
          }
          if (crPos + 1 == n) {  // a CR at the very end: kCr decides when the next byte comes
            countLine(crPos - pos);
            emit(data + start, crPos - start, sink);
            state_ = State::kCr;
            return {false, n};
          }
          if (data[crPos + 1] != '\n') {
            emit(data + start, crPos - start, sink);
            countLine(crPos + 1 - pos);
            bareCr_ = true;  // never turned into CRLF
            pos = start = crPos + 1;
            continue;
          }
          countLine(crPos - pos);  // RFC 5321 4.5.3.1.6: the CRLF is not counted against it
          lineLength_ = 0;
          pos = crPos + 2;  // a complete line, CRLF included
          if (pos == n || data[pos] == '.') {
            state_ = State::kLineStart;
            break;
          }
        }
        if (pos > start) emit(data + start, pos - start, sink);
        break;
      }
    }
  }
  return {false, n};
}

}  // namespace portcullis
