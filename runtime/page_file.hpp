#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <caf/error.hpp>
#include <caf/expected.hpp>

namespace fleetd {

/// A file written in whole pages: the store's rounds file. Through the
/// page cache a synced page rewritten later is charged again when dirtied;
/// written with O_DIRECT it costs exactly the pages written (plus, on a
/// file system without lazytime, the inode block each mtime update dirties).
/// Up to `n` bytes of `fd` at `offset` (fewer at its end), read through
/// EINTR; ec::io_error naming `path` else.
caf::expected<std::string> read_at(int fd, int64_t offset, int64_t n,
                                   const std::string& path);

class page_file {
public:
  static constexpr int64_t page_bytes = 4096;

  virtual ~page_file() = default;

  virtual caf::expected<int64_t> size() = 0;
  /// Reads `n` bytes at `offset`; fewer only at the end of the file.
  virtual caf::expected<std::string> read(int64_t offset, int64_t n) = 0;
  /// Writes whole pages: `offset` and `bytes.size()` are multiples of
  /// page_bytes (ec::invalid_argument otherwise).
  virtual caf::error write(int64_t offset, const std::string& bytes) = 0;
  /// Makes the written bytes durable (fdatasync).
  virtual caf::error sync() = 0;
  virtual caf::error truncate(int64_t size) = 0;
  /// Makes the file `size` bytes long, zeros past its end, their blocks
  /// taken now (fallocate) where the file system can, else as a hole:
  /// a write with O_DIRECT into a hole is charged 8-16 KiB, not its page.
  virtual caf::error grow(int64_t size) = 0;
  /// True once a write went around the page cache (O_DIRECT).
  virtual bool direct() const = 0;
};

/// Opens or creates `path`, held exclusively (ec::storage_locked when
/// another process holds it). With `vfs` empty, POSIX calls that write
/// with O_DIRECT where the file system takes it (else through the page
/// cache); otherwise through that SQLite VFS (tests' fault disk).
caf::expected<std::unique_ptr<page_file>>
open_page_file(const std::string& path, const std::string& vfs);

/// Syncs the directory holding `path`, so that a file made or renamed
/// there keeps its name across a power cut.
caf::error sync_dir_of(const std::string& path);

} // namespace fleetd
