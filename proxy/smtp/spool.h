#pragma once
// Spool: holds one message between the client's end of data and the upstream's reply.
// Memory up to `memoryLimit`, then a temporary file created mode 0600 in `directory`.
// The file is removed when the Spool is destroyed, however the transaction ended; stale files
// from a crash are removed at start-up (removeStaleSpoolFiles). File I/O is synchronous and
// local; errors are sticky and reported through ok()/error() (the session answers 451).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "portcullis/session_view.h"
#include "proxy/smtp/data_framer.h"

namespace portcullis {

inline constexpr std::string_view kSpoolPrefix = "portcullis-spool-";

class Spool final : public ByteSink, public MessageReader {
 public:
  Spool(std::size_t memoryLimit, std::string directory);
  ~Spool() override;
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  void append(const char* data, std::size_t n) override;
  // Flushes buffered file writes; call once after the end of data.
  [[nodiscard]] bool finish();

  std::uint64_t size() const override { return size_; }
  std::size_t read(std::uint64_t offset, char* buf, std::size_t n) const override;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  bool inMemory() const { return fd_ < 0; }
  const std::string& path() const { return path_; }
  // The whole message when inMemory().
  std::string_view memory() const { return memory_; }
  // MessageReader's zero-copy view: the memory, or the spool file (nothing once an error
  // made the spool unreliable).
  std::optional<Bytes> bytes() const override {
    if (!ok()) return std::nullopt;
    return inMemory() ? Bytes{{}, memory_, -1} : Bytes{{}, std::nullopt, fd_};
  }

 private:
  void spill();
  void writeFile(const char* data, std::size_t n);

  std::size_t memoryLimit_;
  std::string directory_;
  std::string memory_;
  std::string pending_;  // write buffer when on file
  std::uint64_t size_ = 0;
  std::uint64_t accountedMemory_ = 0;  // this spool's share of spoolUsage()
  std::uint64_t accountedDisk_ = 0;
  int fd_ = -1;
  std::string path_;
  std::string error_;
};

// Message bytes every live Spool of the process holds now, in memory and in spool files (what
// is buffered for a file counts as on disk); for the metrics endpoint.
struct SpoolUsage {
  std::uint64_t memoryBytes = 0;
  std::uint64_t diskBytes = 0;
};
SpoolUsage spoolUsage();

// Removes leftover spool files (from a crash) in `directory`; returns how many.
int removeStaleSpoolFiles(const std::string& directory);

}  // namespace portcullis
