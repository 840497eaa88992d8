// Spool. See spool.h.

#include "proxy/smtp/spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

namespace portcullis {
namespace {
constexpr std::size_t kFileWriteChunk = 64 * 1024;
constexpr std::size_t kInitialMemory = 16 * 1024;  // most messages fit; no regrowth for them
std::atomic<std::uint64_t> gMemoryBytes{0};
std::atomic<std::uint64_t> gDiskBytes{0};
}  // namespace

SpoolUsage spoolUsage() {
  return {gMemoryBytes.load(std::memory_order_relaxed), gDiskBytes.load(std::memory_order_relaxed)};
}

Spool::Spool(std::size_t memoryLimit, std::string directory)
    : memoryLimit_(memoryLimit), directory_(std::move(directory)) {}

Spool::~Spool() {
  gMemoryBytes.fetch_sub(accountedMemory_, std::memory_order_relaxed);
  gDiskBytes.fetch_sub(accountedDisk_, std::memory_order_relaxed);
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
}

void Spool::append(const char* data, std::size_t n) {
  size_ += n;
  if (!error_.empty()) return;
  if (fd_ < 0) {
    if (memory_.size() + n <= memoryLimit_) {
      if (memory_.capacity() < kInitialMemory) {
        memory_.reserve(std::min(memoryLimit_, std::max(kInitialMemory, n)));
      }
      memory_.append(data, n);
      accountedMemory_ += n;
      gMemoryBytes.fetch_add(n, std::memory_order_relaxed);
      return;
    }
    spill();
    if (!error_.empty()) return;
  }
  pending_.append(data, n);
  accountedDisk_ += n;
  gDiskBytes.fetch_add(n, std::memory_order_relaxed);
  if (pending_.size() >= kFileWriteChunk) {
    writeFile(pending_.data(), pending_.size());
    pending_.clear();
  }
}

void Spool::spill() {
  std::string tmpl = directory_ + "/" + std::string(kSpoolPrefix) + "XXXXXX";
  // mkstemp creates the file 0600 (glibc); fchmod makes that explicit whatever the umask.
  fd_ = ::mkostemp(tmpl.data(), O_CLOEXEC);
  if (fd_ < 0) {
    error_ = "cannot create spool file in " + directory_ + ": " + std::strerror(errno);
    return;
  }
  ::fchmod(fd_, S_IRUSR | S_IWUSR);
  path_ = tmpl;
  writeFile(memory_.data(), memory_.size());
  gMemoryBytes.fetch_sub(accountedMemory_, std::memory_order_relaxed);
  gDiskBytes.fetch_add(accountedMemory_, std::memory_order_relaxed);
  accountedDisk_ += accountedMemory_;
  accountedMemory_ = 0;
  memory_.clear();
  memory_.shrink_to_fit();
}

void Spool::writeFile(const char* data, std::size_t n) {
  while (n > 0 && error_.empty()) {
    const ssize_t w = ::write(fd_, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      error_ = "spool write failed: " + std::string(std::strerror(errno));
      return;
    }
    data += w;
    n -= static_cast<std::size_t>(w);
  }
}

bool Spool::finish() {
  if (fd_ >= 0 && !pending_.empty() && error_.empty()) {
    writeFile(pending_.data(), pending_.size());
    pending_.clear();
  }
  return error_.empty();
}

std::size_t Spool::read(std::uint64_t offset, char* buf, std::size_t n) const {
  if (offset >= size_ || !error_.empty()) return 0;
  if (fd_ < 0) {
    const std::size_t avail = memory_.size() - static_cast<std::size_t>(offset);
    const std::size_t count = n < avail ? n : avail;
    std::memcpy(buf, memory_.data() + offset, count);
    return count;
  }
  while (true) {
    const ssize_t r = ::pread(fd_, buf, n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    return r < 0 ? 0 : static_cast<std::size_t>(r);
  }
}

int removeStaleSpoolFiles(const std::string& directory) {
  DIR* dir = ::opendir(directory.c_str());
  if (dir == nullptr) return 0;
  int removed = 0;
  while (const dirent* e = ::readdir(dir)) {
    const std::string_view name(e->d_name);
    if (name.substr(0, kSpoolPrefix.size()) == kSpoolPrefix) {
      if (::unlinkat(::dirfd(dir), e->d_name, 0) == 0) ++removed;
    }
  }
  ::closedir(dir);
  return removed;
}

}  // namespace portcullis
