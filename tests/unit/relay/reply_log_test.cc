// reply_log: the reference on our refusals, the queue id in the MTA's 250, the reject stage.

#include "proxy/relay/reply_log.h"

#include <gtest/gtest.h>

#include "proxy/base/reference.h"

namespace portcullis {
namespace {

Reply make(int code, const std::string& enhanced, std::vector<std::string> lines) {
  return *Reply::make(code, enhanced, std::move(lines));
}

TEST(ReplyLog, ReferenceGoesAtTheEndOfTheLastLine) {
  const Reply r = withReference(make(554, "5.7.1", {"first", "Service unavailable"}), "7Q2K9XHM");
  EXPECT_EQ(r.wire(), "554-5.7.1 first\r\n554 5.7.1 Service unavailable [ref=7Q2K9XHM]\r\n");
}

TEST(ReplyLog, ReferenceKeepsALongLineWithinTheLimit) {
  const std::string text(Reply::kMaxLineLength - 4 - 6 - 2, 'x');  // exactly fits
  const Reply r = withReference(make(550, "5.7.1", {text}), "7Q2K9XHM");
  const std::string wire = r.wire();
  EXPECT_EQ(wire.size(), Reply::kMaxLineLength);
  EXPECT_TRUE(wire.ends_with(" [ref=7Q2K9XHM]\r\n"));
  EXPECT_EQ(r.code(), 550);
  EXPECT_EQ(r.enhanced(), "5.7.1");
}

TEST(ReplyLog, QueueIdFromTheMtasReply) {
  EXPECT_EQ(queueIdFromReply(make(250, "2.0.0", {"Ok: queued as F3F5DA74037"})), "F3F5DA74037");
  EXPECT_EQ(queueIdFromReply(make(250, "2.0.0", {"Ok: queued as 4Qx9Lw6kz5z9vFm"})),
            "4Qx9Lw6kz5z9vFm");
  EXPECT_EQ(queueIdFromReply(make(250, "", {"OK id=1vQ2x5-000Abc-Ql"})), "1vQ2x5-000Abc-Ql");
  EXPECT_EQ(queueIdFromReply(make(250, "2.0.0", {"Message queued as ABC123."})), "ABC123");
  EXPECT_EQ(queueIdFromReply(make(250, "2.0.0", {"Ok"})), "");
  EXPECT_EQ(queueIdFromReply(make(250, "2.0.0", {"Ok valid=yes"})), "") << "id= inside a word";
  // Whatever the MTA says, only a plain token gets into the logs.
  EXPECT_EQ(queueIdFromReply(make(250, "2.0.0", {"queued as A\"B event=x"})), "A");
  EXPECT_EQ(queueIdFromReply(make(250, "2.0.0", {"queued as " + std::string(200, 'Z')})).size(),
            64u);
}

TEST(ReplyLog, RejectStageNamesTheStep) {
  EXPECT_EQ(rejectStage("CONNECT"), "connect");
  EXPECT_EQ(rejectStage("EHLO"), "helo");
  EXPECT_EQ(rejectStage("HELO"), "helo");
  EXPECT_EQ(rejectStage("MAIL"), "mail");
  EXPECT_EQ(rejectStage("RCPT"), "rcpt");
  EXPECT_EQ(rejectStage("DATA"), "data");
  EXPECT_EQ(rejectStage("DATA-TIMEOUT"), "data");
  EXPECT_EQ(rejectStage("."), "end_of_message");
  EXPECT_EQ(rejectStage("TIMEOUT"), "timeout");
  EXPECT_EQ(rejectStage("STARTTLS"), "starttls");
}

TEST(ReplyLog, SenderAsTheClientGaveIt) {
  Envelope e;
  EXPECT_EQ(senderForLog(e), "");
  e.nullSender = true;
  EXPECT_EQ(senderForLog(e), "<>");
  e = Envelope{};
  e.mailFrom = "a@b.example";
  EXPECT_EQ(senderForLog(e), "<a@b.example>");
}

TEST(ReplyLog, WhoGaveIt) {
  EXPECT_EQ(ReplySource::mta().by(), "mta");
  EXPECT_EQ(ReplySource::local("x").by(), "portcullis");
  EXPECT_EQ(ReplySource::filterVerdict("dnsbl#2", "listed").by(), "dnsbl#2");
}

}  // namespace
}  // namespace portcullis
