// TracedMessage: the scanners read our trace header and then the spool as one message, at any
// offset and in any chunk size, exactly as the MTA will get them.

#include "proxy/relay/transaction.h"

#include <gtest/gtest.h>

#include <string>

namespace portcullis {
namespace {

std::string readAll(const MessageReader& r, std::size_t chunk) {
  std::string out;
  std::string buf(chunk, '\0');
  for (;;) {
    const std::size_t got = r.read(out.size(), buf.data(), buf.size());
    if (got == 0) return out;
    out.append(buf, 0, got);
  }
}

TEST(TracedMessage, TheTraceHeaderComesFirstThenTheSpool) {
  Spool spool(1 << 20, "/tmp");
  const std::string body = "Subject: s\r\n\r\nhello\r\n";
  spool.append(body.data(), body.size());
  ASSERT_TRUE(spool.finish());
  std::string head;
  const TracedMessage m(head, spool);
  EXPECT_EQ(m.size(), body.size());
  EXPECT_EQ(readAll(m, 7), body) << "no trace header: the spool alone";
  head = "Received: from a by b\r\n";  // set later, as judgeHeaderBlock does
  EXPECT_EQ(m.size(), head.size() + body.size());
  for (std::size_t chunk : {1, 5, 23, 24, 4096}) {
    EXPECT_EQ(readAll(m, chunk), head + body) << "chunk " << chunk;
  }
}

}  // namespace
}  // namespace portcullis
