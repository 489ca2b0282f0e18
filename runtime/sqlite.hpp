#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include <caf/error.hpp>
#include <caf/expected.hpp>

struct sqlite3;
struct sqlite3_stmt;

namespace fleetd::sqlite {

/// A prepared statement; reset and rebound for every use. One lent by a
/// database's cache (database::cached) is reset and returned to the cache
/// when dropped, not finalized.
class statement {
public:
  statement() = default;
  statement(sqlite3* db, sqlite3_stmt* stmt, bool* lent = nullptr)
    : db_(db), stmt_(stmt), lent_(lent) {
    // nop
  }
  statement(statement&& other) noexcept;
  statement& operator=(statement&& other) noexcept;
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;
  ~statement();

  statement& reset();
  /// Resets for the next run but keeps the bindings: a loop rebinds only
  /// the parameters that change.
  statement& rewind();
  statement& bind(int index, int64_t value);
  statement& bind(int index, double value);
  statement& bind(int index, std::string_view text);
  statement& bind_blob(int index, std::string_view bytes);
  /// Binds column `column` of the current row of `from`, type and all.
  statement& bind_column(int index, const statement& from, int column);
  /// Binds a double's IEEE-754 bits as INTEGER: NaN payloads, infinities and
  /// -0.0 survive (a REAL binds NaN as NULL and turns -0.0 into 0.0).
  statement& bind_exact(int index, double value);

  /// Advances one row: true while a row is available, error on failure.
  caf::expected<bool> step();

  /// Runs to completion, ignoring rows.
  caf::error run();

  int64_t column_int(int index) const;
  double column_double(int index) const;
  /// The double whose bits bind_exact stored.
  double column_exact(int index) const;
  std::string column_text(int index) const;
  std::string column_blob(int index) const;
  /// Bytes of a text or blob column, without copying it.
  int64_t column_bytes(int index) const;
  bool column_is_null(int index) const;
  int column_count() const;

private:
  // Finalizes the statement, or gives a lent one back to its cache.
  void release();

  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  bool* lent_ = nullptr;
};

/// One connection; owned by a single detached actor.
class database {
public:
  database() = default;
  database(database&& other) noexcept;
  database& operator=(database&& other) noexcept;
  database(const database&) = delete;
  database& operator=(const database&) = delete;
  ~database();

  /// Opens (creating) `path` in WAL mode with the given synchronous level;
  /// a lock held elsewhere is waited for up to `busy_timeout_ms`.
  /// `vfs` names the SQLite VFS (empty: the default; tests pass a fault
  /// disk's). `page_size` (0: SQLite's) applies to a file created here
  /// only; an existing file keeps its own. `exclusive`: locking_mode
  /// EXCLUSIVE, so no other connection reads it while this one is open and
  /// the WAL index lives in this process's memory, not in a mapped -shm
  /// file whose page every read dirties again after each writeback.
  static caf::expected<database> open(const std::string& path,
                                      const char* synchronous = "FULL",
                                      int busy_timeout_ms = 5000,
                                      const std::string& vfs = {},
                                      int page_size = 0,
                                      bool exclusive = false);

  /// Opens an existing file read-only, as it is (no pragma, no checkpoint
  /// on close): for reading what is left of a damaged file.
  static caf::expected<database> open_readonly(const std::string& path,
                                               const std::string& vfs = {});

  caf::error exec(const std::string& sql);
  caf::expected<statement> prepare(const std::string& sql);
  /// `sql` prepared once per connection: lent until the statement is
  /// dropped, then reset (no read snapshot outlives its use) and kept for
  /// the next call. While lent, a second call prepares a statement of its
  /// own. What it lends must be dropped before the database closes.
  caf::expected<statement> cached(const std::string& sql);

  /// True when `table` exists and has a column named `column`.
  caf::expected<bool> has_column(const std::string& table,
                                 const std::string& column);

  /// "ok" when PRAGMA quick_check finds nothing wrong, else its first line.
  std::string quick_check();
  /// The same, but a check that could not run (busy, corrupt, I/O) is the
  /// error, so callers can tell a lock from a verdict.
  caf::expected<std::string> integrity();

  int64_t changes() const;
  int64_t last_insert_rowid() const;
  /// False while a transaction is open on this connection.
  bool autocommit() const;
  bool is_open() const {
    return db_ != nullptr;
  }
  sqlite3* handle() const {
    return db_;
  }
  void close();
  /// Closes without the checkpoint a last connection makes: the main file
  /// keeps its bytes and the WAL stays beside it (a file to salvage).
  void close_as_is();

private:
  explicit database(sqlite3* db) : db_(db) {
    // nop
  }
  struct cached_statement {
    sqlite3_stmt* stmt = nullptr;
    bool lent = false;
  };
  sqlite3* db_ = nullptr;
  // Node-based: an entry's `lent` stays where it is while the map grows.
  std::unordered_map<std::string, cached_statement> cache_;
};

/// A plain file opened through an SQLite VFS (the default, or a test's fault
/// disk), so the store's own append-only files meet the same faults as its
/// database: a full disk, I/O errors, a power cut that undoes unsynced bytes.
class vfs_file {
public:
  vfs_file() = default;
  vfs_file(vfs_file&& other) noexcept;
  vfs_file& operator=(vfs_file&& other) noexcept;
  vfs_file(const vfs_file&) = delete;
  vfs_file& operator=(const vfs_file&) = delete;
  ~vfs_file();

  /// Opens or creates `path` for reading and writing, held exclusively
  /// (ec::storage_locked when another process holds it).
  static caf::expected<vfs_file> open(const std::string& path,
                                      const std::string& vfs = {});

  caf::expected<int64_t> size();
  /// Reads `n` bytes at `offset`; fewer only at the end of the file.
  caf::expected<std::string> read(int64_t offset, int64_t n);
  caf::error write(int64_t offset, const std::string& bytes);
  /// Makes the written bytes durable (fdatasync on the default VFS).
  caf::error sync();
  caf::error truncate(int64_t size);
  bool is_open() const {
    return file_ != nullptr;
  }

private:
  void close();
  // The VFS keeps a pointer to the name for the file's lifetime.
  std::unique_ptr<std::string> path_;
  std::unique_ptr<char[]> file_;
};

/// Maps an SQLite result code to the project's error: disk full, corrupt
/// (CORRUPT, NOTADB), locked (BUSY, LOCKED), io_error for permission and
/// open failures, invalid_record for a record the store refuses as written
/// (constraint, type, size: retrying the same record cannot help).
caf::error to_error(sqlite3* db, int rc, const std::string& what);

/// Steps `st` through every result row, calling `row` for each; the first
/// step error ends it.
caf::error each_row(statement& st, const std::function<void(statement&)>& row);
/// The same, stopping early (no error) once `row` returns false.
caf::error each_row_while(statement& st,
                          const std::function<bool(statement&)>& row);

/// Runs `fn` inside BEGIN IMMEDIATE ... COMMIT; rolls back on error. Inside
/// a transaction already open, a savepoint: all of `fn` or none of it joins
/// that transaction (which commits later).
template <class F>
caf::error transaction(database& db, F&& fn) {
  if (!db.autocommit()) {
    if (auto err = db.exec("SAVEPOINT nested"))
      return err;
    if (auto err = fn()) {
      // SQLite may have rolled the whole transaction back already.
      if (!db.autocommit()) {
        db.exec("ROLLBACK TO nested");
        db.exec("RELEASE nested");
      }
      return err;
    }
    return db.exec("RELEASE nested");
  }
  if (auto err = db.exec("BEGIN IMMEDIATE"))
    return err;
  if (auto err = fn()) {
    db.exec("ROLLBACK");
    return err;
  }
  if (auto err = db.exec("COMMIT")) {
    db.exec("ROLLBACK");
    return err;
  }
  return caf::none;
}

} // namespace fleetd::sqlite
