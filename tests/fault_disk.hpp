#pragma once

// A disk for tests that fakes what needs root or luck on a real one: a full
// disk, I/O errors and a power cut. SQLite reaches it through a VFS that
// wraps the default one; the store's own files through runtime/disk.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "runtime/disk.hpp"

namespace fleetd::test {

class fault_disk : public disk,
                   public std::enable_shared_from_this<fault_disk> {
public:
  /// A disk of `capacity` bytes (-1: as large as the real one) whose VFS is
  /// registered under a name of its own.
  static std::shared_ptr<fault_disk> make(int64_t capacity = -1);
  ~fault_disk() override;

  // -- runtime/disk ---------------------------------------------------------
  std::string vfs() const override;
  int64_t free_bytes(const std::string& dir) override;
  bool allocate(const std::string& path, int64_t bytes) override;
  void remove(const std::string& path) override;

  // -- faults ----------------------------------------------------------------
  /// Bytes of every file written through this disk (databases, WALs,
  /// journals, allocations); a write that would pass `capacity` fails with
  /// SQLITE_FULL and writes nothing.
  void set_capacity(int64_t bytes);
  int64_t used() const;

  /// While set, reads / writes / syncs fail with SQLITE_IOERR_*.
  void fail_reads(bool on);
  void fail_writes(bool on);
  void fail_syncs(bool on);

  /// The power goes out at the `n`th write from now (n >= 1): that write and
  /// everything after it fails, and every byte written since its file's last
  /// sync is undone, as on a disk whose cache is lost. Until revive().
  void cut_power_after_writes(int64_t n);
  /// The same, now.
  void cut_power();
  bool power_cut() const;
  /// The power is back: files keep what was synced; open them again.
  void revive();

  /// Counters for the test's own checks.
  int64_t writes() const;
  int64_t syncs() const;

  // Called by the VFS (internal).
  struct file_state;
  int on_write(const std::string& path, int64_t offset, const void* data,
               int amount, int64_t size_before, void* real);
  int on_truncate(const std::string& path, int64_t size, int64_t size_before,
                  void* real);
  int on_sync(const std::string& path);
  int on_read();
  void on_open(const std::string& key, const std::string& path, int64_t size);
  void on_delete(const std::string& key);

private:
  struct registration;

  fault_disk();
  void undo_unsynced();
  // Bytes of every tracked file; called with mtx_ held.
  int64_t total() const;
  // Keeps the bytes [from, to) of `real` (an sqlite3_file) for the undo log
  // of `path` when they lie within its synced length; mtx_ held.
  void keep_old(const std::string& path, int64_t from, int64_t to,
                void* real);

  mutable std::mutex mtx_;
  std::unique_ptr<registration> reg_;
  int64_t capacity_ = -1;
  std::map<std::string, int64_t> sizes_;
  // Per file: the bytes each write overwrote since the file's last sync, in
  // write order (replayed newest first, so the oldest copy of a byte wins),
  // and its size at that sync.
  // Files are known by their inode ("ino:<dev>:<ino>"), not their name, so
  // a renamed file keeps its log and a new file of an old name gets its own;
  // the descriptor opened with it undoes into it wherever it was moved.
  struct undo_log {
    int64_t synced_size = 0;
    std::vector<std::pair<int64_t, std::string>> old;
    int fd = -1;
  };
  std::map<std::string, undo_log> undo_;
  bool fail_reads_ = false;
  bool fail_writes_ = false;
  bool fail_syncs_ = false;
  int64_t cut_countdown_ = 0;
  bool dead_ = false;
  int64_t writes_ = 0;
  int64_t syncs_ = 0;
};

/// Rows of `table` in the SQLite database at `path` as committed: read from
/// a copy of the file and its WAL (what a power cut would leave), so a store
/// holding its database exclusively (the rounds file) still lets a test look.
int64_t rows_unlocked(const std::string& path, const std::string& table);

} // namespace fleetd::test
