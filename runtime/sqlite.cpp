#include "runtime/sqlite.hpp"

#include <algorithm>
#include <cstring>

#include <sqlite3.h>

#include "messages/error.hpp"
#include "messages/types.hpp"

namespace fleetd::sqlite {

caf::error to_error(sqlite3* db, int rc, const std::string& what) {
  std::string msg = what + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xFF) {
    case SQLITE_FULL:
      return make_error(ec::disk_full, msg);
    case SQLITE_READONLY:
      return make_error(ec::disk_full, msg + " (read-only)");
    case SQLITE_IOERR:
      if (rc == SQLITE_IOERR_WRITE || rc == SQLITE_IOERR_FSYNC)
        return make_error(ec::disk_full, msg);
      return make_error(ec::io_error, msg);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return make_error(ec::storage_corrupt, msg);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return make_error(ec::storage_locked, msg);
    case SQLITE_PERM:
    case SQLITE_CANTOPEN:
    case SQLITE_AUTH:
      return make_error(ec::io_error, msg);
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
      return make_error(ec::invalid_record, msg);
    default:
      return make_error(ec::storage_failed, msg);
  }
}

namespace {

// SQL ieee_bits(x): the exact bits of a REAL, for migrating REAL columns.
void ieee_bits_fn(sqlite3_context* ctx, int, sqlite3_value** argv) {
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL)
    sqlite3_result_null(ctx);
  else
    sqlite3_result_int64(
      ctx, static_cast<int64_t>(bits_of(sqlite3_value_double(argv[0]))));
}

} // namespace

statement::statement(statement&& other) noexcept
  : db_(other.db_), stmt_(other.stmt_), lent_(other.lent_) {
  other.stmt_ = nullptr;
  other.lent_ = nullptr;
}

statement& statement::operator=(statement&& other) noexcept {
  if (this != &other) {
    release();
    db_ = other.db_;
    stmt_ = other.stmt_;
    lent_ = other.lent_;
    other.stmt_ = nullptr;
    other.lent_ = nullptr;
  }
  return *this;
}

statement::~statement() {
  release();
}

void statement::release() {
  if (lent_) {
    reset();
    *lent_ = false;
    lent_ = nullptr;
  } else {
    sqlite3_finalize(stmt_);
  }
  stmt_ = nullptr;
}

statement& statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  return *this;
}

statement& statement::rewind() {
  sqlite3_reset(stmt_);
  return *this;
}

statement& statement::bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

statement& statement::bind(int index, double value) {
  sqlite3_bind_double(stmt_, index, value);
  return *this;
}

statement& statement::bind(int index, std::string_view text) {
  sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()),
                    SQLITE_TRANSIENT);
  return *this;
}

statement& statement::bind_exact(int index, double value) {
  return bind(index, static_cast<int64_t>(bits_of(value)));
}

statement& statement::bind_blob(int index, std::string_view bytes) {
  sqlite3_bind_blob(stmt_, index, bytes.data(), static_cast<int>(bytes.size()),
                    SQLITE_TRANSIENT);
  return *this;
}

statement& statement::bind_column(int index, const statement& from,
                                  int column) {
  sqlite3_bind_value(stmt_, index, sqlite3_column_value(from.stmt_, column));
  return *this;
}

int statement::column_count() const {
  return sqlite3_column_count(stmt_);
}

caf::error each_row(statement& st,
                    const std::function<void(statement&)>& row) {
  return each_row_while(st, [&row](statement& s) {
    row(s);
    return true;
  });
}

caf::error each_row_while(statement& st,
                          const std::function<bool(statement&)>& row) {
  for (;;) {
    auto more = st.step();
    if (!more)
      return more.error();
    if (!*more || !row(st))
      return caf::none;
  }
}

caf::expected<bool> statement::step() {
  auto rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW)
    return true;
  if (rc == SQLITE_DONE)
    return false;
  auto err = to_error(db_, rc, "step");
  sqlite3_reset(stmt_);
  return err;
}

caf::error statement::run() {
  for (;;) {
    auto more = step();
    if (!more)
      return more.error();
    if (!*more)
      return caf::none;
  }
}

int64_t statement::column_int(int index) const {
  return sqlite3_column_int64(stmt_, index);
}

double statement::column_double(int index) const {
  return sqlite3_column_double(stmt_, index);
}

double statement::column_exact(int index) const {
  return double_of(static_cast<uint64_t>(column_int(index)));
}

std::string statement::column_text(int index) const {
  auto p = sqlite3_column_text(stmt_, index);
  auto n = sqlite3_column_bytes(stmt_, index);
  return p ? std::string(reinterpret_cast<const char*>(p),
                         static_cast<size_t>(n))
           : std::string{};
}

int64_t statement::column_bytes(int index) const {
  return sqlite3_column_bytes(stmt_, index);
}

std::string statement::column_blob(int index) const {
  auto p = sqlite3_column_blob(stmt_, index);
  auto n = sqlite3_column_bytes(stmt_, index);
  return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(n))
           : std::string{};
}

bool statement::column_is_null(int index) const {
  return sqlite3_column_type(stmt_, index) == SQLITE_NULL;
}

database::database(database&& other) noexcept
  : db_(other.db_), cache_(std::move(other.cache_)) {
  other.db_ = nullptr;
  other.cache_.clear();
}

database& database::operator=(database&& other) noexcept {
  if (this != &other) {
    close();
    db_ = other.db_;
    cache_ = std::move(other.cache_);
    other.db_ = nullptr;
    other.cache_.clear();
  }
  return *this;
}

bool database::autocommit() const {
  return db_ == nullptr || sqlite3_get_autocommit(db_) != 0;
}

database::~database() {
  close();
}

void database::close() {
  for (auto& kv : cache_)
    sqlite3_finalize(kv.second.stmt);
  cache_.clear();
  if (db_) {
    // sqlite3_close_v2 checkpoints the WAL when it is the last connection.
    sqlite3_close_v2(db_);
    db_ = nullptr;
  }
}

void database::close_as_is() {
  if (db_)
    sqlite3_db_config(db_, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  close();
}

// SQL functions the stores use in migrations and salvage.
static void add_functions(sqlite3* raw) {
  sqlite3_create_function_v2(raw, "ieee_bits", 1,
                             SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr,
                             ieee_bits_fn, nullptr, nullptr, nullptr);
}

caf::expected<database> database::open_readonly(const std::string& path,
                                                const std::string& vfs) {
  sqlite3* raw = nullptr;
  auto rc = sqlite3_open_v2(path.c_str(), &raw,
                            SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                            vfs.empty() ? nullptr : vfs.c_str());
  database db{raw};
  if (rc != SQLITE_OK)
    return to_error(raw, rc, "cannot open " + path);
  sqlite3_extended_result_codes(raw, 1);
  add_functions(raw);
  return db;
}

caf::expected<database> database::open(const std::string& path,
                                       const char* synchronous,
                                       int busy_timeout_ms,
                                       const std::string& vfs,
                                       int page_size, bool exclusive) {
  sqlite3* raw = nullptr;
  auto rc = sqlite3_open_v2(path.c_str(), &raw,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                              | SQLITE_OPEN_NOMUTEX,
                            vfs.empty() ? nullptr : vfs.c_str());
  database db{raw};
  if (rc != SQLITE_OK)
    return to_error(raw, rc, "cannot open " + path);
  sqlite3_busy_timeout(raw, busy_timeout_ms);
  sqlite3_extended_result_codes(raw, 1);
  add_functions(raw);
  // Before WAL mode writes the header of a new file; a no-op on an old one.
  if (page_size > 0)
    if (auto err = db.exec("PRAGMA page_size=" + std::to_string(page_size)))
      return err;
  // Before the first access in WAL mode, or the -shm file is used anyway.
  if (exclusive)
    if (auto err = db.exec("PRAGMA locking_mode=EXCLUSIVE"))
      return err;
  if (auto err = db.exec("PRAGMA journal_mode=WAL"))
    return err;
  if (auto err = db.exec(std::string("PRAGMA synchronous=") + synchronous))
    return err;
  return db;
}

caf::error database::exec(const std::string& sql) {
  char* msg = nullptr;
  auto rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &msg);
  if (msg)
    sqlite3_free(msg);
  if (rc != SQLITE_OK)
    return to_error(db_, rc, sql.substr(0, 40));
  return caf::none;
}

caf::expected<statement> database::prepare(const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  auto rc = sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()),
                               &stmt, nullptr);
  if (rc != SQLITE_OK)
    return to_error(db_, rc, "prepare " + sql.substr(0, 40));
  return statement{db_, stmt};
}

caf::expected<statement> database::cached(const std::string& sql) {
  auto& entry = cache_[sql];
  if (entry.lent)
    return prepare(sql);
  if (!entry.stmt) {
    auto rc = sqlite3_prepare_v2(db_, sql.c_str(),
                                 static_cast<int>(sql.size()), &entry.stmt,
                                 nullptr);
    if (rc != SQLITE_OK) {
      cache_.erase(sql);
      return to_error(db_, rc, "prepare " + sql.substr(0, 40));
    }
  }
  entry.lent = true;
  return statement{db_, entry.stmt, &entry.lent};
}

caf::expected<bool> database::has_column(const std::string& table,
                                         const std::string& column) {
  auto st = prepare("SELECT count(*) FROM pragma_table_info(?1) "
                    "WHERE name = ?2");
  if (!st)
    return st.error();
  st->bind(1, table).bind(2, column);
  auto row = st->step();
  if (!row)
    return row.error();
  return *row && st->column_int(0) > 0;
}

std::string database::quick_check() {
  auto x = integrity();
  return x ? *x : render(x.error());
}

caf::expected<std::string> database::integrity() {
  auto st = prepare("PRAGMA quick_check");
  if (!st)
    return st.error();
  auto row = st->step();
  if (!row)
    return row.error();
  if (!*row)
    return std::string{"no answer"};
  return st->column_text(0);
}

int64_t database::last_insert_rowid() const {
  return sqlite3_last_insert_rowid(db_);
}

int64_t database::changes() const {
  return sqlite3_changes(db_);
}

namespace {

sqlite3_file* as_file(const std::unique_ptr<char[]>& mem) {
  return reinterpret_cast<sqlite3_file*>(mem.get());
}

} // namespace

vfs_file::vfs_file(vfs_file&& other) noexcept
  : path_(std::move(other.path_)), file_(std::move(other.file_)) {
  // nop
}

vfs_file& vfs_file::operator=(vfs_file&& other) noexcept {
  if (this != &other) {
    close();
    path_ = std::move(other.path_);
    file_ = std::move(other.file_);
  }
  return *this;
}

vfs_file::~vfs_file() {
  close();
}

void vfs_file::close() {
  if (!file_)
    return;
  auto f = as_file(file_);
  if (f->pMethods) {
    f->pMethods->xUnlock(f, SQLITE_LOCK_NONE);
    f->pMethods->xClose(f);
  }
  file_.reset();
}

caf::expected<vfs_file> vfs_file::open(const std::string& path,
                                       const std::string& vfs) {
  auto* v = sqlite3_vfs_find(vfs.empty() ? nullptr : vfs.c_str());
  if (!v)
    return make_error(ec::io_error, "no SQLite VFS '" + vfs + "'");
  vfs_file out;
  out.path_ = std::make_unique<std::string>(path);
  out.file_ = std::make_unique<char[]>(static_cast<size_t>(v->szOsFile));
  std::memset(out.file_.get(), 0, static_cast<size_t>(v->szOsFile));
  auto f = as_file(out.file_);
  // Like a super-journal: its directory entry is synced with it, and its
  // mode is not copied from a database file (which may not exist).
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
              | SQLITE_OPEN_SUPER_JOURNAL;
  int got = 0;
  auto rc = v->xOpen(v, out.path_->c_str(), f, flags, &got);
  if (rc != SQLITE_OK) {
    if (!f->pMethods)
      out.file_.reset();
    return to_error(nullptr, rc, "cannot open " + path);
  }
  // Two writers appending to one file would interleave their records.
  if (f->pMethods->xLock(f, SQLITE_LOCK_SHARED) != SQLITE_OK
      || f->pMethods->xLock(f, SQLITE_LOCK_RESERVED) != SQLITE_OK
      || f->pMethods->xLock(f, SQLITE_LOCK_EXCLUSIVE) != SQLITE_OK)
    return make_error(ec::storage_locked,
                      path + " is held by another process");
  return out;
}

caf::expected<int64_t> vfs_file::size() {
  sqlite3_int64 n = 0;
  auto f = as_file(file_);
  if (auto rc = f->pMethods->xFileSize(f, &n); rc != SQLITE_OK)
    return to_error(nullptr, rc, "size of " + *path_);
  return static_cast<int64_t>(n);
}

caf::expected<std::string> vfs_file::read(int64_t offset, int64_t n) {
  std::string out(static_cast<size_t>(n), '\0');
  auto f = as_file(file_);
  auto rc = f->pMethods->xRead(f, out.data(), static_cast<int>(n), offset);
  if (rc == SQLITE_IOERR_SHORT_READ) {
    // The VFS zero-fills past the end: keep what the file holds.
    auto size = this->size();
    if (!size)
      return size.error();
    out.resize(static_cast<size_t>(std::clamp<int64_t>(*size - offset, 0, n)));
    return out;
  }
  if (rc != SQLITE_OK)
    return to_error(nullptr, rc, "read of " + *path_);
  return out;
}

caf::error vfs_file::write(int64_t offset, const std::string& bytes) {
  auto f = as_file(file_);
  auto rc = f->pMethods->xWrite(f, bytes.data(), static_cast<int>(bytes.size()),
                                offset);
  return rc == SQLITE_OK ? caf::error{}
                         : to_error(nullptr, rc, "write of " + *path_);
}

caf::error vfs_file::sync() {
  auto f = as_file(file_);
  auto rc = f->pMethods->xSync(f, SQLITE_SYNC_NORMAL);
  return rc == SQLITE_OK ? caf::error{}
                         : to_error(nullptr, rc, "sync of " + *path_);
}

caf::error vfs_file::truncate(int64_t size) {
  auto f = as_file(file_);
  auto rc = f->pMethods->xTruncate(f, size);
  return rc == SQLITE_OK ? caf::error{}
                         : to_error(nullptr, rc, "truncate of " + *path_);
}

} // namespace fleetd::sqlite
