// Spool (memory -> file spill, mode 0600, removal on destruction, read across the boundary),
// removeStaleSpoolFiles.

#include "proxy/smtp/spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis {
namespace {

std::vector<std::string> listDir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") out.push_back(name);
  }
  ::closedir(d);
  return out;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string readAll(const MessageReader& r, std::size_t bufSize) {
  std::string out;
  std::vector<char> buf(bufSize);
  std::uint64_t off = 0;
  while (true) {
    const std::size_t n = r.read(off, buf.data(), buf.size());
    if (n == 0) break;
    out.append(buf.data(), n);
    off += n;
  }
  return out;
}

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/portcullis-spool-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (const auto& f : listDir(dir_)) ::unlink((dir_ + "/" + f).c_str());
    ::rmdir(dir_.c_str());
  }
  std::string dir_;
};

TEST_F(SpoolTest, SmallMessageStaysInMemory) {
  Spool s(16, dir_);
  s.append("hello ", 6);
  s.append("world", 5);
  ASSERT_TRUE(s.finish());
  EXPECT_TRUE(s.ok());
  EXPECT_TRUE(s.inMemory());
  EXPECT_EQ(s.size(), 11u);
  EXPECT_EQ(s.memory(), "hello world");
  EXPECT_TRUE(listDir(dir_).empty()) << "no file for a message under the memory limit";

  const struct {
    std::uint64_t offset;
    std::size_t n;
    std::string want;
  } reads[] = {{0, 100, "hello world"}, {6, 5, "world"}, {2, 3, "llo"},
               {10, 10, "d"},           {11, 5, ""},     {1000, 5, ""}};
  for (const auto& tc : reads) {
    std::string buf(tc.n, '\0');
    buf.resize(s.read(tc.offset, buf.data(), tc.n));
    EXPECT_EQ(buf, tc.want) << "read(" << tc.offset << ", " << tc.n << "): got \"" << buf
                            << "\", want \"" << tc.want << "\"";
  }
}

TEST_F(SpoolTest, UsageFollowsTheBytesInMemoryAndOnDisk) {
  const SpoolUsage before = spoolUsage();
  {
    Spool small(16, dir_);
    small.append("0123456789", 10);
    auto big = std::make_unique<Spool>(8, dir_);
    big->append("abcdef", 6);
    EXPECT_EQ(spoolUsage().memoryBytes, before.memoryBytes + 16);
    EXPECT_EQ(spoolUsage().diskBytes, before.diskBytes);
    big->append("ghijkl", 6);  // over its limit: all 12 move to its file
    EXPECT_EQ(spoolUsage().memoryBytes, before.memoryBytes + 10);
    EXPECT_EQ(spoolUsage().diskBytes, before.diskBytes + 12);
    big.reset();
    EXPECT_EQ(spoolUsage().diskBytes, before.diskBytes);
  }
  EXPECT_EQ(spoolUsage().memoryBytes, before.memoryBytes);
}

TEST_F(SpoolTest, ExactlyTheMemoryLimitStaysInMemory) {
  Spool s(10, dir_);
  s.append("0123456789", 10);
  ASSERT_TRUE(s.finish());
  EXPECT_TRUE(s.inMemory());
  EXPECT_TRUE(listDir(dir_).empty());
}

TEST_F(SpoolTest, SpillsToAPrivateFileAndRemovesIt) {
  const mode_t oldMask = ::umask(0);  // the file must be 0600 whatever the umask
  std::string path;
  {
    Spool s(10, dir_);
    s.append("0123456", 7);
    EXPECT_TRUE(s.inMemory());
    s.append("789ABCDEF", 9);  // 16 > 10: spill
    ::umask(oldMask);
    ASSERT_TRUE(s.ok()) << s.error();
    ASSERT_FALSE(s.inMemory());
    path = s.path();
    ASSERT_EQ(path.rfind(dir_ + "/" + std::string(kSpoolPrefix), 0), 0u)
        << "got path " << path << ", want it in " << dir_ << " named " << kSpoolPrefix << "*";
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0) << "the spool file exists while the Spool lives";
    EXPECT_EQ(st.st_mode & 0777, 0600u)
        << "got mode " << std::oct << (st.st_mode & 0777) << ", want 600";
    EXPECT_TRUE(S_ISREG(st.st_mode));
    s.append("GHIJ", 4);
    ASSERT_TRUE(s.finish());
    EXPECT_EQ(s.size(), 20u);
    // Reads across the old memory/file boundary (offset 7) and in odd buffer sizes.
    for (const std::size_t buf : {1u, 3u, 7u, 64u}) {
      EXPECT_EQ(readAll(s, buf), "0123456789ABCDEFGHIJ") << "buffer " << buf;
    }
    char b[6] = {};
    ASSERT_EQ(s.read(5, b, 6), 6u);
    EXPECT_EQ(std::string(b, 6), "56789A");
    EXPECT_EQ(s.read(20, b, 6), 0u);
    EXPECT_EQ(s.read(18, b, 6), 2u);
    EXPECT_EQ(listDir(dir_).size(), 1u);
  }
  EXPECT_FALSE(exists(path)) << "the spool file must be removed when the Spool is destroyed";
  EXPECT_TRUE(listDir(dir_).empty());
}

TEST_F(SpoolTest, RemovedEvenWithoutFinish) {
  std::string path;
  {
    Spool s(4, dir_);
    s.append("0123456789", 10);
    path = s.path();
    ASSERT_TRUE(exists(path));
  }
  EXPECT_FALSE(exists(path));
}

TEST_F(SpoolTest, LargeMessageRoundTrips) {
  std::string want;
  for (int i = 0; want.size() < 300'000; ++i) want += "line " + std::to_string(i) + "\r\n";
  Spool s(1000, dir_);
  for (std::size_t off = 0; off < want.size(); off += 777) {
    const std::size_t n = std::min<std::size_t>(777, want.size() - off);
    s.append(want.data() + off, n);
  }
  ASSERT_TRUE(s.finish()) << s.error();
  EXPECT_FALSE(s.inMemory());
  EXPECT_EQ(s.size(), want.size());
  const std::string got = readAll(s, 4096);
  EXPECT_EQ(got.size(), want.size());
  EXPECT_TRUE(got == want) << "the spooled bytes differ from what was appended";
}

TEST_F(SpoolTest, UnwritableDirectoryIsASoftError) {
  Spool s(4, dir_ + "/does-not-exist");
  s.append("0123456789", 10);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.error().find("does-not-exist"), std::string::npos)
      << "got error \"" << s.error() << "\", want it to name the directory";
  EXPECT_FALSE(s.finish());
  EXPECT_EQ(s.size(), 10u) << "the size still counts";
  char b[4];
  EXPECT_EQ(s.read(0, b, 4), 0u) << "a failed spool reads as empty";
}

TEST_F(SpoolTest, RemoveStaleSpoolFiles) {
  for (const char* name : {"portcullis-spool-abc123", "portcullis-spool-", "keep.txt",
                           "portcullis-spoo", "xportcullis-spool-1"}) {
    const int fd = ::open((dir_ + "/" + name).c_str(), O_CREAT | O_WRONLY, 0600);
    ASSERT_GE(fd, 0);
    ::close(fd);
  }
  EXPECT_EQ(removeStaleSpoolFiles(dir_), 2);
  std::vector<std::string> left = listDir(dir_);
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"keep.txt", "portcullis-spoo", "xportcullis-spool-1"}));
  EXPECT_EQ(removeStaleSpoolFiles(dir_), 0);
  EXPECT_EQ(removeStaleSpoolFiles(dir_ + "/missing"), 0);
}

}  // namespace
}  // namespace portcullis
