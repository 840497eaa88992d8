// InputBuffer: contiguous unread bytes, lent reads, kept remainders, released storage.

#include "proxy/net/input_buffer.h"

#include <gtest/gtest.h>

#include <string>

namespace portcullis {
namespace {

TEST(InputBufferTest, AppendsAndDrainsInOrder) {
  InputBuffer in;
  EXPECT_TRUE(in.empty());
  in.append("MAIL FROM:<a@example.org>\r\n");
  in.append("RCPT TO:<b@example.org>\r\n");
  EXPECT_EQ(in.size(), 52u);
  in.drain(27);
  EXPECT_EQ(in.view(), "RCPT TO:<b@example.org>\r\n");
  in.drain(1000);  // more than there is: everything
  EXPECT_TRUE(in.empty());
  EXPECT_EQ(in.view(), "");
}

TEST(InputBufferTest, StaysContiguousAcrossGrowthAndCompaction) {
  InputBuffer in;
  std::string expected;
  for (int i = 0; i < 2000; ++i) {
    const std::string piece = "line " + std::to_string(i) + "\r\n";
    in.append(piece);
    expected += piece;
    if (i % 3 == 0) {  // consume some from the front now and then: compaction keeps the order
      in.drain(5);
      expected.erase(0, 5);
    }
    ASSERT_EQ(in.view(), expected) << "after piece " << i;
  }
}

TEST(InputBufferTest, ALoanConsumedWholeLeavesNothingBehind) {
  const std::string read = "QUIT\r\n";
  InputBuffer in;
  in.lend(read);
  EXPECT_TRUE(in.lent());
  EXPECT_EQ(in.view().data(), read.data());  // shown, not copied
  in.drain(read.size());
  in.endLoan();
  EXPECT_FALSE(in.lent());
  EXPECT_TRUE(in.empty());
}

TEST(InputBufferTest, WhatALoanLeavesIsCopiedAndOutlivesTheLoanedBytes) {
  std::string read = "EHLO a\r\nMAIL FR";
  InputBuffer in;
  in.lend(read);
  in.drain(8);  // the owner took one whole line
  in.endLoan();
  read.assign(read.size(), 'x');  // the stream's scratch is reused for the next read
  EXPECT_EQ(in.view(), "MAIL FR");
  EXPECT_NE(in.view().data(), read.data());
  in.append("OM:<>\r\n");  // the line completes with the next read
  EXPECT_EQ(in.view(), "MAIL FROM:<>\r\n");
}

TEST(InputBufferTest, AppendingDuringALoanKeepsBothInOrder) {
  const std::string read = "DATA\r\n";
  InputBuffer in;
  in.lend(read);
  in.append("more");
  EXPECT_FALSE(in.lent());
  in.endLoan();  // nothing left to end
  EXPECT_EQ(in.view(), "DATA\r\nmore");
}

TEST(InputBufferTest, LargeStorageIsReleasedOnceDrainedSmallIsKept) {
  InputBuffer in;
  EXPECT_EQ(in.capacity(), 0u);
  const std::string read = "NOOP\r\n";
  in.lend(read);
  in.clear();
  in.endLoan();
  EXPECT_EQ(in.capacity(), 0u);  // a loan consumed whole allocates nothing

  in.append(std::string(100, 'a'));
  const char* small = in.view().data();
  const std::size_t kept = in.capacity();
  in.clear();
  EXPECT_EQ(in.capacity(), kept);
  in.append("b");
  EXPECT_EQ(in.view().data(), small);  // the small block is reused
  in.clear();

  in.append(std::string(InputBuffer::kKeepCapacity * 4, 'c'));
  in.drain(InputBuffer::kKeepCapacity);  // partly drained: kept
  EXPECT_EQ(in.size(), InputBuffer::kKeepCapacity * 3);
  EXPECT_GT(in.capacity(), InputBuffer::kKeepCapacity);
  in.clear();
  EXPECT_EQ(in.capacity(), 0u);  // an idle connection does not hold a body's worth
  in.append("d");
  EXPECT_EQ(in.view(), "d");
}

}  // namespace
}  // namespace portcullis
