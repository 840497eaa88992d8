// `portcullis explain` end to end on small hand-written logs: each input format (text, syslog,
// journald's bare messages, JSON), .gz, a session split over two rotated files, standard input,
// and the --session, --client and --code modes.

#include "proxy/explain/explain.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

namespace portcullis {
namespace {

// Two sessions interleaved: a3f9c2d1e0b4 refused at RCPT by the dnsbl filter (ref 7Q2K9XHM),
// b0b0b0b0b0b0 delivered; then c0c0c0c0c0c0 from the same client as the first, refused by the
// MTA. Messages only (no timestamp): each format test wraps them.
// Long lines are split into adjacent literals on purpose (one message per element):
// NOLINTBEGIN(bugprone-suspicious-missing-comma)
const std::vector<std::string> kMessages = {
    "event=started version=0.1.0 filters=2",
    "a3f9c2d1e0b4 event=connect client=127.0.0.1:40312 local=127.0.0.1:25",
    "b0b0b0b0b0b0 event=connect client=10.0.0.1:5000 local=127.0.0.1:25",
    "a3f9c2d1e0b4 event=tls protocol=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256 resumed=no",
    std::string("a3f9c2d1e0b4 event=verdict stage=rcpt filter=dnsbl verdict=reject code=550 ") +
        "mode=enforce reason=\"client listed in zen.example\"",
    "b0b0b0b0b0b0 event=transaction from=<ok@example.org> rcpts=1/1 to=\"<u@example.net>:250:mta\" "
    "size=302 result=delivered code=250 by=mta queued_as=F3F5DA74037",
    // (the split point for the rotation test is after this line)
    "a3f9c2d1e0b4 event=reject from=<a@b.example> to=<x@y.example> helo=mail.example "
    "client=unknown[127.0.0.1]:40312 stage=rcpt code=550 dsn=5.7.1 filter=dnsbl "
    "reason=\"client listed in zen.example\" ref=7Q2K9XHM reply=\"Service unavailable; client "
    "[127.0.0.1] blocked using zen.example [ref=7Q2K9XHM]\"",
    "a3f9c2d1e0b4 event=transaction from=<a@b.example> rcpts=0/1 to=\"<x@y.example>:550:dnsbl\" "
    "size=0 result=no-recipients code=550 by=dnsbl",
    "b0b0b0b0b0b0 event=session client=relay.example.net[10.0.0.1]:5000 helo=relay.example.net "
    "tls=no stage=end_of_message commands=CONNECT:220,EHLO:250,MAIL:250,RCPT:250,DATA:354,.:250,"
    "QUIT:221 messages=1 closed_by=client quit=yes duration=0.200s from=<ok@example.org> "
    "rcpts=1/1 queued_as=F3F5DA74037",
    "a3f9c2d1e0b4 event=session client=unknown[127.0.0.1]:40312 helo=mail.example tls=TLSv1.3 "
    "tls_cipher=TLS_AES_256_GCM_SHA384 stage=rcpt commands=CONNECT:220,EHLO:250,STARTTLS:220,"
    "EHLO:250,MAIL:250,RCPT:550,QUIT:221 messages=0 closed_by=client quit=yes duration=0.040s "
    "from=<a@b.example> rcpts=0/1",
    "c0c0c0c0c0c0 event=connect client=127.0.0.1:40400 local=127.0.0.1:25",
    "c0c0c0c0c0c0 event=reject from=<a@b.example> to=<nobody@y.example> helo=mail.example "
    "client=unknown[127.0.0.1]:40400 stage=rcpt code=550 dsn=5.1.1 filter=mta "
    "reason=\"5.1.1 <nobody@y.example>: Recipient address rejected: User unknown\" "
    "reply=\"5.1.1 <nobody@y.example>: Recipient address rejected: User unknown\"",
    "c0c0c0c0c0c0 event=session client=unknown[127.0.0.1]:40400 helo=mail.example tls=no "
    "stage=rcpt commands=CONNECT:220,EHLO:250,MAIL:250,RCPT:550,QUIT:221 messages=0 "
    "closed_by=client quit=yes duration=0.010s",
};
// NOLINTEND(bugprone-suspicious-missing-comma)
constexpr std::size_t kRotationSplit = 6;

std::string textLine(std::size_t i, const std::string& m) {
  return "2026-12-03T07:01:" + std::to_string(10 + i) + ".000 info " + m + "\n";
}
std::string syslogLine(std::size_t i, const std::string& m) {
  return "Dec  3 07:01:" + std::to_string(10 + i) + " mx1 portcullis[123]: " + m + "\n";
}
std::string bareLine(std::size_t, const std::string& m) { return m + "\n"; }

// JSON: the message's fields as string values (the relay's json format).
std::string jsonLine(std::size_t i, const std::string& m) {
  std::string out =
      "{\"ts\":\"2026-12-03T07:01:" + std::to_string(10 + i) + ".000Z\",\"level\":\"info\"";
  std::size_t p = 0;
  if (m.size() > 13 && m[12] == ' ') {
    out += ",\"session\":\"" + m.substr(0, 12) + "\"";
    p = 13;
  }
  while (p < m.size()) {
    const std::size_t eq = m.find('=', p);
    const std::string key = m.substr(p, eq - p);
    std::string value;
    p = eq + 1;
    if (m[p] == '"') {
      ++p;
      while (p < m.size() && m[p] != '"') {
        if (m[p] == '\\') ++p;
        value += m[p++];
      }
      ++p;
    } else {
      const std::size_t sp = m.find(' ', p);
      value = m.substr(p, sp == std::string::npos ? std::string::npos : sp - p);
      p = sp == std::string::npos ? m.size() : sp;
    }
    while (p < m.size() && m[p] == ' ') ++p;
    std::string escaped;
    for (const char c : value) {
      if (c == '"' || c == '\\') escaped += '\\';
      escaped += c;
    }
    out += ",\"";
    out += key;
    out += "\":\"";
    out += escaped;
    out += '"';
  }
  return out + "}\n";
}

using Formatter = std::string (*)(std::size_t, const std::string&);

std::string render(Formatter f, std::size_t from = 0, std::size_t to = kMessages.size()) {
  std::string out;
  for (std::size_t i = from; i < to; ++i) out += f(i, kMessages[i]);
  return out;
}

class ExplainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "explain-XXXXXX";
    ASSERT_NE(::mkdtemp(dir_.data()), nullptr);
  }
  std::string write(const std::string& name, const std::string& data, bool gz = false) {
    std::string path = dir_ + "/" + name;
    if (gz) {
      gzFile g = gzopen(path.c_str(), "wb");
      EXPECT_NE(g, nullptr);
      gzwrite(g, data.data(), static_cast<unsigned>(data.size()));
      gzclose(g);
    } else {
      FILE* f = std::fopen(path.c_str(), "wb");
      EXPECT_NE(f, nullptr);
      std::fwrite(data.data(), 1, data.size(), f);
      std::fclose(f);
    }
    return path;
  }
  int run(const std::vector<std::string>& args, bool stdinIsTty = true) {
    out_.str("");
    err_.str("");
    ExplainOptions o;
    std::string error;
    if (!parseExplainArgs(args, o, error)) {
      err_ << error;
      return 2;
    }
    return runExplain(o, out_, err_, stdinIsTty);
  }
  std::string out() const { return out_.str(); }
  std::string err() const { return err_.str(); }

  // The story of the refused session, whatever the format.
  void expectRefusedStory() {
    const std::string o = out();
    EXPECT_NE(o.find("Session a3f9c2d1e0b4 (ref 7Q2K9XHM)"), std::string::npos) << o;
    EXPECT_NE(o.find("unknown[127.0.0.1]:40312"), std::string::npos) << o;
    EXPECT_NE(o.find("TLSv1.3"), std::string::npos) << o;
    EXPECT_NE(o.find("HELO      mail.example"), std::string::npos) << o;
    EXPECT_NE(o.find("RCPT                  550   <-- failed here"), std::string::npos) << o;
    EXPECT_NE(o.find("REJECT       at rcpt: 550 5.7.1 by filter dnsbl   <-- failed here"),
              std::string::npos)
        << o;
    EXPECT_NE(o.find("reason: client listed in zen.example"), std::string::npos) << o;
    EXPECT_NE(o.find("to <x@y.example>  550 by dnsbl   <-- refused"), std::string::npos) << o;
    EXPECT_NE(o.find("Delivery not authorized"), std::string::npos) << o;
    EXPECT_NE(o.find("permanent"), std::string::npos) << o;
    EXPECT_NE(o.find("bounce"), std::string::npos) << o;
    EXPECT_EQ(o.find("b0b0b0b0b0b0"), std::string::npos) << "another session's lines:\n" << o;
    EXPECT_EQ(o.find("F3F5DA74037"), std::string::npos) << o;
    EXPECT_EQ(o.find("Incomplete"), std::string::npos) << o;
  }

  std::string dir_;
  std::ostringstream out_;
  std::ostringstream err_;
};

TEST_F(ExplainTest, FindsTheRefInEachFormat) {
  const struct {
    const char* name;
    Formatter f;
  } formats[] = {
      {"text", textLine}, {"syslog", syslogLine}, {"bare", bareLine}, {"json", jsonLine}};
  for (const auto& fmt : formats) {
    SCOPED_TRACE(fmt.name);
    const std::string path = write(std::string(fmt.name) + ".log", render(fmt.f));
    for (const char* ref : {"7Q2K9XHM", "7q2k9xhm", "[ref=7Q2K9XHM]", "ref=7q2k9xhm"}) {
      ASSERT_EQ(run({ref, "--log", path}), 0) << err();
      expectRefusedStory();
    }
  }
}

TEST_F(ExplainTest, ReadsGzip) {
  const std::string path = write("mail.log.1.gz", render(textLine), /*gz=*/true);
  ASSERT_EQ(run({"7Q2K9XHM", path}), 0) << err();
  expectRefusedStory();
}

TEST_F(ExplainTest, JoinsASessionSplitOverTwoRotatedFiles) {
  // The older half compressed by logrotate; given newest first, as a shell glob lists them.
  const std::string older = write("mail.log.1.gz", render(syslogLine, 0, kRotationSplit), true);
  const std::string newer = write("mail.log", render(syslogLine, kRotationSplit));
  ASSERT_EQ(run({"7Q2K9XHM", "--log", newer, "--log", older}), 0) << err();
  expectRefusedStory();
  const std::string o = out();
  EXPECT_LT(o.find("connect "), o.find("REJECT")) << o;
  EXPECT_NE(o.find("mail.log.1.gz, " + newer), std::string::npos) << o;

  // Only the newer file: the story is told with what is there, and says what is missing.
  ASSERT_EQ(run({"7Q2K9XHM", newer}), 0) << err();
  EXPECT_NE(out().find("Incomplete"), std::string::npos) << out();
  EXPECT_NE(out().find("the start of the session"), std::string::npos) << out();
  EXPECT_NE(out().find("<-- failed here"), std::string::npos) << out();

  // Only the older file: the ref is not in it.
  EXPECT_EQ(run({"7Q2K9XHM", older}), 1);
  EXPECT_NE(err().find("no line with ref=7Q2K9XHM"), std::string::npos) << err();
}

TEST_F(ExplainTest, ReadsStandardInputTwice) {
  const std::string path = write("journal.txt", render(bareLine));
  const int saved = ::dup(STDIN_FILENO);
  const int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ::dup2(fd, STDIN_FILENO);
  ::close(fd);
  const int rc = run({"7Q2K9XHM"}, /*stdinIsTty=*/false);
  ::dup2(saved, STDIN_FILENO);
  ::close(saved);
  ASSERT_EQ(rc, 0) << err();
  expectRefusedStory();
}

TEST_F(ExplainTest, NoLogAndATerminalSaysWhatToGive) {
  EXPECT_EQ(run({"7Q2K9XHM"}, /*stdinIsTty=*/true), 2);
  EXPECT_NE(err().find("--log FILE"), std::string::npos) << err();
  EXPECT_NE(err().find("journalctl"), std::string::npos) << err();
}

TEST_F(ExplainTest, SessionById) {
  const std::string path = write("mail.log", render(textLine));
  ASSERT_EQ(run({"--session", "B0B0B0B0B0B0", path}), 0) << err();
  const std::string o = out();
  EXPECT_NE(o.find("Session b0b0b0b0b0b0"), std::string::npos) << o;
  EXPECT_NE(o.find("queued as F3F5DA74037"), std::string::npos) << o;
  EXPECT_NE(o.find("No refusal"), std::string::npos) << o;
  EXPECT_EQ(o.find("failed here"), std::string::npos) << o;
  EXPECT_EQ(run({"--session", "0123456789ab", path}), 1);
}

TEST_F(ExplainTest, ClientsLastSessions) {
  const std::string path = write("mail.log", render(textLine));
  ASSERT_EQ(run({"--client", "127.0.0.1", "--log", path}), 0) << err();
  std::string o = out();
  EXPECT_NE(o.find("The last 2 session(s) of client 127.0.0.1"), std::string::npos) << o;
  EXPECT_LT(o.find("Session a3f9c2d1e0b4"), o.find("Session c0c0c0c0c0c0")) << o;
  EXPECT_EQ(o.find("b0b0b0b0b0b0"), std::string::npos) << o;
  // The MTA's refusal: who refused, with its text.
  EXPECT_NE(o.find("by the MTA behind portcullis"), std::string::npos) << o;
  EXPECT_NE(o.find("User unknown"), std::string::npos) << o;
  EXPECT_NE(o.find("Bad destination mailbox address"), std::string::npos) << o;

  ASSERT_EQ(run({"--client", "127.0.0.1", "--last", "1", path}), 0) << err();
  o = out();
  EXPECT_NE(o.find("Session c0c0c0c0c0c0"), std::string::npos) << o;
  EXPECT_EQ(o.find("a3f9c2d1e0b4"), std::string::npos) << o;

  // 127.0.0.10 is not 127.0.0.1's prefix match.
  EXPECT_EQ(run({"--client", "127.0.0.10", path}), 1);
  EXPECT_EQ(run({"--client", "127.0.0", path}), 1);
}

TEST_F(ExplainTest, ManySessionsOfOneClient) {
  // More sessions than the per-id memmem path takes: the collector looks up each line's id.
  std::string log;
  for (int i = 0; i < 40; ++i) {
    char id[13];
    std::snprintf(id, sizeof id, "%012x", 0xabc000 + i);
    log += textLine(0, std::string(id) + " event=connect client=192.0.2.9:" +
                           std::to_string(1000 + i) + " local=127.0.0.1:25");
    log += textLine(1, std::string(id) +
                           " event=session client=unknown[192.0.2.9]:" + std::to_string(1000 + i) +
                           " helo=h tls=no stage=connect commands=CONNECT:220,QUIT:221 "
                           "messages=0 closed_by=client quit=yes duration=0.001s");
  }
  const std::string path = write("many.log", log);
  ASSERT_EQ(run({"--client", "192.0.2.9", "--last", "30", path}), 0) << err();
  const std::string o = out();
  EXPECT_NE(o.find("The last 30 session(s) of client 192.0.2.9"), std::string::npos) << o;
  EXPECT_EQ(o.find("Session 000000abc009\n"), std::string::npos) << o;  // the 10th: too old
  EXPECT_NE(o.find("Session 000000abc00a\n"), std::string::npos) << o;
  EXPECT_NE(o.find("Session 000000abc027\n"), std::string::npos) << o;
  EXPECT_EQ(o.find("Incomplete"), std::string::npos) << o;
}

TEST_F(ExplainTest, CodeAlone) {
  ASSERT_EQ(run({"--code", "451"}), 0) << err();
  EXPECT_NE(out().find("transient"), std::string::npos) << out();
  ASSERT_EQ(run({"--code", "550 5.7.1"}), 0) << err();
  EXPECT_NE(out().find("Delivery not authorized"), std::string::npos) << out();
  EXPECT_EQ(run({"--code", "999"}), 2);
}

TEST_F(ExplainTest, UsageErrors) {
  struct Case {
    std::vector<std::string> args;
    const char* error;
  };
  const Case cases[] = {
      {{}, "give a REF"},
      {{"HELLO"}, "not a reference"},
      {{"7Q2K9XH0"}, "not a reference"},  // 0 is not in the alphabet
      {{"7Q2K9XHM", "--bogus"}, "unknown option"},
      {{"--session", "xyz"}, "12 hex digits"},
      {{"--client"}, "needs a value"},
      {{"--client", "1.2.3.4", "--last", "0"}, "--last"},
      {{"--session", "0123456789ab", "--client", "::1"}, "one of"},
      {{"--code", "451", "x.log"}, "needs no log"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(run(c.args), 2);
    EXPECT_NE(err().find(c.error), std::string::npos) << "got: " << err() << ", want " << c.error;
  }
}

TEST_F(ExplainTest, UnreadableLogIsAnError) {
  EXPECT_EQ(run({"7Q2K9XHM", "--log", dir_ + "/missing.log"}), 2);
  EXPECT_NE(err().find("missing.log"), std::string::npos) << err();
}

}  // namespace
}  // namespace portcullis
