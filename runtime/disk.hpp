#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace fleetd {

/// Where a store's files live (LevelDB's Env is the model): the real file
/// system, or in tests a fault disk (tests/fault_disk) that fakes a full
/// disk, I/O errors and a power cut without root. SQLite reaches it through
/// a VFS; the store's own files (the space reserve) through the calls below.
class disk {
public:
  virtual ~disk() = default;

  /// The SQLite VFS to open databases with; empty for SQLite's default.
  virtual std::string vfs() const = 0;

  /// Bytes free to a writer on the file system holding `dir`; -1 unknown.
  virtual int64_t free_bytes(const std::string& dir) = 0;

  /// Creates `path` taking `bytes` of real space (not a sparse file); false,
  /// and no file, when there is no room.
  virtual bool allocate(const std::string& path, int64_t bytes) = 0;

  /// Removes `path` if it exists.
  virtual void remove(const std::string& path) = 0;
};

/// The real file system (statvfs, posix_fallocate, unlink).
std::shared_ptr<disk> real_disk();

} // namespace fleetd
