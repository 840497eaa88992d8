// SessionRecordView: filters see the core's SessionRecord through SessionView's accessors, read
// live (a change to the record between stages shows without making a new view), including the
// lists, which also iterate; and the public version constants match the daemon's.

#include "proxy/api/session_record.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "portcullis/version.h"

namespace portcullis {
namespace {

std::vector<std::string> all(const StringListView& list) {
  std::vector<std::string> out;
  for (const std::string_view s : list) out.emplace_back(s);
  return out;
}

TEST(SessionViewTest, AccessorsShowTheRecord) {
  SessionRecord r;
  r.id = "abc123";
  r.client = {"2001:db8::1", 4567, true, ReverseStatus::kVerified, "ptr.test", "name.test"};
  r.localAddress = "192.0.2.25";
  r.localPort = 25;
  r.hostname = "mx.test";
  r.helo = "client.test";
  r.esmtp = true;
  r.tls = {true, "TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, true};
  r.limits = {1000, 50};
  r.transactions = 3;
  r.authenticatedUser = "alice@b.test";
  r.envelope.mailFrom = "a@b.test";
  r.envelope.mailParams = {"SIZE=10", "BODY=8BITMIME"};
  r.envelope.declaredSize = 10;
  r.envelope.smtputf8 = true;
  r.envelope.recipients = {"x@y.test"};
  r.envelope.currentRecipient = "z@y.test";
  r.envelope.currentRecipientParams = {"NOTIFY=NEVER"};
  r.message.headers = {{"Subject", "hi"}, {"From", "a@b.test"}};
  r.message.size = 1234;
  r.message.oversized = true;

  const SessionRecordView rv(r);
  const SessionView& v = rv;
  EXPECT_EQ(v.id(), "abc123");
  EXPECT_EQ(v.client().address(), "2001:db8::1");
  EXPECT_EQ(v.client().port(), 4567);
  EXPECT_TRUE(v.client().ipv6());
  EXPECT_EQ(v.client().reverse(), ReverseStatus::kVerified);
  EXPECT_EQ(v.client().ptrName(), "ptr.test");
  EXPECT_EQ(v.client().name(), "name.test");
  EXPECT_EQ(v.localAddress(), "192.0.2.25");
  EXPECT_EQ(v.localPort(), 25);
  EXPECT_EQ(v.hostname(), "mx.test");
  EXPECT_EQ(v.helo(), "client.test");
  EXPECT_TRUE(v.esmtp());
  EXPECT_EQ(v.authenticatedUser(), "alice@b.test");
  EXPECT_EQ(SessionRecordView(SessionRecord{}).authenticatedUser(), "");
  EXPECT_TRUE(v.tls().active());
  EXPECT_EQ(v.tls().protocol(), "TLSv1.3");
  EXPECT_EQ(v.tls().cipher(), "TLS_AES_256_GCM_SHA384");
  EXPECT_EQ(v.tls().bits(), 256);
  EXPECT_TRUE(v.tls().resumed());
  EXPECT_EQ(v.limits().maxMessageSize(), 1000u);
  EXPECT_EQ(v.limits().maxRecipients(), 50u);
  EXPECT_EQ(v.transactions(), 3u);
  EXPECT_FALSE(v.envelope().nullSender());
  EXPECT_EQ(v.envelope().mailFrom(), "a@b.test");
  EXPECT_EQ(all(v.envelope().mailParams()), (std::vector<std::string>{"SIZE=10", "BODY=8BITMIME"}));
  EXPECT_EQ(v.envelope().declaredSize(), 10u);
  EXPECT_TRUE(v.envelope().smtputf8());
  EXPECT_EQ(all(v.envelope().recipients()), std::vector<std::string>{"x@y.test"});
  EXPECT_EQ(v.envelope().currentRecipient(), "z@y.test");
  EXPECT_EQ(all(v.envelope().currentRecipientParams()), std::vector<std::string>{"NOTIFY=NEVER"});
  ASSERT_EQ(v.message().headers().size(), 2u) << "the header count, not the message size";
  EXPECT_EQ(v.message().headers()[1].name, "From");
  EXPECT_EQ(v.message().size(), 1234u);
  EXPECT_TRUE(v.message().oversized());
  EXPECT_EQ(v.message().reader(), nullptr);
}

TEST(SessionViewTest, TheViewReadsTheRecordLive) {
  SessionRecord r;
  const SessionRecordView v(r);
  EXPECT_TRUE(v.envelope().recipients().empty());
  r.envelope.recipients.emplace_back("a@test");
  r.helo = "later.test";
  EXPECT_EQ(all(v.envelope().recipients()), std::vector<std::string>{"a@test"});
  EXPECT_EQ(v.helo(), "later.test");
  // The session resets the transaction by assignment; the view stays valid.
  r.envelope = Envelope{};
  r.message = MessageInfo{};
  EXPECT_EQ(v.envelope().recipients().size(), 0u);
  r.message.headers.push_back({"X-A", "1"});
  std::vector<std::string> names;
  for (const HeaderField& h : v.message().headers()) names.push_back(h.name);
  EXPECT_EQ(names, std::vector<std::string>{"X-A"});
}

TEST(VersionTest, TheDaemonReportsTheApiItImplementsAndItsRelease) {
  EXPECT_EQ(apiVersion().major, kApiVersionMajor);
  EXPECT_EQ(apiVersion().minor, kApiVersionMinor);
  EXPECT_EQ(projectVersion(), PORTCULLIS_VERSION);
  EXPECT_FALSE(projectVersion().empty());
}

}  // namespace
}  // namespace portcullis
