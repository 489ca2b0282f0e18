// fleetd-migrate: copies a fleetd-cloud data directory (cloud.db,
// tenancy.db) into PostgreSQL, resumably, and verifies the copy.

#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "cloud/pg_migrate.hpp"
#include "runtime/node.hpp"
#include "runtime/pg.hpp"
#include "tools/migrate/tables.hpp"

using namespace fleetd;
using namespace fleetd::migration;

namespace {

constexpr const char* usage = R"(usage: fleetd-migrate --from DIR --to URL [options]

Copies a fleetd-cloud data directory (DIR/cloud.db, DIR/tenancy.db) into
the PostgreSQL database at URL: applies the schema, then copies every
table in batches, each batch committed with its checkpoint (table
fleetd_migrate_checkpoint): a killed run continues where it stopped and
never copies a row twice. Refuses while a fleetd-cloud holds DIR. The
role of URL must own the schema (or be able to create it) and bypass Row
Level Security (superuser or BYPASSRLS): rows of all orgs are written.

options:
  --from DIR          the fleetd-cloud data directory (required)
  --to URL            postgresql:// URL of the target (required unless
                      --dry-run)
  --batch-size N      rows per COPY and transaction (default 10000,
                      1..1000000)
  --default-org NAME  org of devices without one (legacy "device" ids
                      without "org/"; default "default")
  --dry-run           print the source's row counts; write nothing
  --verify            copy nothing: compare row counts and an
                      order-independent checksum of every table in DIR and
                      URL; exit 1 naming each differing table
  --progress-interval MS
                      milliseconds between progress lines (default 200 on
                      a terminal, 5000 otherwise; 0: a line per committed
                      batch)
  --help              this text

exit: 0 done, 1 verify found differences, 2 usage or error.
)";

struct options {
  std::string from, to, default_org = "default";
  int64_t batch = 10000;
  bool dry_run = false, verify = false;
  int64_t progress_ms = -1; // -1: by whether stdout is a terminal
};

int fail(const std::string& what) {
  std::fprintf(stderr, "fleetd-migrate: %s\n", what.c_str());
  return 2;
}

bool parse_int(const char* s, int64_t lo, int64_t hi, int64_t& out) {
  char* end = nullptr;
  errno = 0;
  auto v = std::strtoll(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
    return false;
  out = v;
  return true;
}

// Returns "" on success, else the complaint.
std::string parse(int argc, char** argv, options& o, bool& help) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      return i + 1 < argc ? argv[++i] : nullptr;
    };
    if (a == "--help" || a == "-h") {
      help = true;
    } else if (a == "--dry-run") {
      o.dry_run = true;
    } else if (a == "--verify") {
      o.verify = true;
    } else if (a == "--from" || a == "--to" || a == "--default-org") {
      auto v = value();
      if (!v)
        return a + " needs a value";
      (a == "--from" ? o.from : a == "--to" ? o.to : o.default_org) = v;
    } else if (a == "--progress-interval") {
      auto v = value();
      if (!v || !parse_int(v, 0, 3600000, o.progress_ms))
        return a + " needs milliseconds in 0..3600000";
    } else if (a == "--batch-size") {
      auto v = value();
      if (!v || !parse_int(v, 1, 1000000, o.batch))
        return a + " needs an integer in 1..1000000";
    } else {
      return "unknown argument '" + a + "'";
    }
  }
  if (help)
    return "";
  if (o.from.empty())
    return "--from is required";
  if (o.to.empty() && !o.dry_run)
    return "--to is required";
  if (o.default_org.empty() || o.default_org.find('/') != std::string::npos)
    return "--default-org must be a non-empty name without '/'";
  return "";
}

// -- source -------------------------------------------------------------------

struct sqlite_closer {
  void operator()(sqlite3* db) const {
    sqlite3_close(db);
  }
};
using db_ptr = std::unique_ptr<sqlite3, sqlite_closer>;

struct stmt_closer {
  void operator()(sqlite3_stmt* s) const {
    sqlite3_finalize(s);
  }
};
using stmt_ptr = std::unique_ptr<sqlite3_stmt, stmt_closer>;

struct source {
  std::map<std::string, db_ptr> dbs; // "cloud", "tenancy"

  sqlite3* db(const std::string& name) const {
    auto i = dbs.find(name);
    return i == dbs.end() ? nullptr : i->second.get();
  }
};

std::string open_source(const std::string& dir, source& src) {
  for (auto name : {"cloud", "tenancy"}) {
    auto path = dir + "/" + name + ".db";
    if (access(path.c_str(), F_OK) != 0)
      continue; // a node that never enrolled a device has no tenancy.db
    sqlite3* db = nullptr;
    auto rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    db_ptr owned{db};
    if (rc != SQLITE_OK)
      return "cannot open " + path + ": " + sqlite3_errstr(rc);
    sqlite3_busy_timeout(db, 5000);
    src.dbs.emplace(name, std::move(owned));
  }
  if (!src.db("cloud"))
    return dir + "/cloud.db not found: not a fleetd-cloud data directory";
  return "";
}

stmt_ptr prepare(sqlite3* db, const std::string& sql, std::string& err) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK)
    err = "sqlite: " + std::string{sqlite3_errmsg(db)} + " in: " + sql;
  return stmt_ptr{s};
}

bool has_table(sqlite3* db, const char* table) {
  std::string err;
  auto s = prepare(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' "
                       "AND name = ?1", err);
  if (!s)
    return false;
  sqlite3_bind_text(s.get(), 1, table, -1, SQLITE_STATIC);
  return sqlite3_step(s.get()) == SQLITE_ROW;
}

// -1: the source has no such table (an older or partial store).
int64_t count_rows(const source& src, const table_spec& t) {
  auto db = src.db(t.db);
  if (!db || !has_table(db, t.source))
    return -1;
  std::string err;
  auto s = prepare(db, std::string{"SELECT count(*) FROM "} + t.source, err);
  if (!s || sqlite3_step(s.get()) != SQLITE_ROW)
    return -1;
  return sqlite3_column_int64(s.get(), 0);
}

// -- mapping ------------------------------------------------------------------

/// What a row's fields need besides the row: the org of legacy devices, the
/// day each batch arrived, and the series' ids per org.
struct mapping {
  std::string default_org;
  std::unordered_map<std::string, int64_t> batch_day_ms;
  int64_t today_ms = 0;
  // Source series id -> (org -> target id). The first org keeps the id.
  std::unordered_map<int64_t, std::map<std::string, int64_t>> series;
  int64_t next_series_id = 1;

  std::pair<std::string, std::string> split(const std::string& id) const {
    auto slash = id.find('/');
    if (slash == std::string::npos)
      return {default_org, id};
    return {id.substr(0, slash), id.substr(slash + 1)};
  }

  int64_t series_id(int64_t src, const std::string& org) const {
    auto i = series.find(src);
    if (i == series.end())
      return src;
    auto j = i->second.find(org);
    return j == i->second.end() ? src : j->second;
  }
};

int64_t day_of(int64_t ms) {
  return ms - ((ms % 86400000) + 86400000) % 86400000;
}

std::string load_batch_days(const source& src, mapping& m) {
  std::string err;
  auto s = prepare(src.db("cloud"),
                   "SELECT device_id || char(31) || epoch || char(31) || "
                   "sequence, min(received_at) FROM batches GROUP BY 1",
                   err);
  if (!s)
    return err;
  while (sqlite3_step(s.get()) == SQLITE_ROW)
    m.batch_day_ms.emplace(
      reinterpret_cast<const char*>(sqlite3_column_text(s.get(), 0)),
      day_of(sqlite3_column_int64(s.get(), 1)));
  return "";
}

// Series are global in SQLite, per org in PostgreSQL: a series used by two
// orgs becomes two rows; the second gets a fresh id past the largest.
std::string load_series(const source& src, mapping& m) {
  auto db = src.db("cloud");
  std::string err;
  auto mx = prepare(db, "SELECT coalesce(max(id), 0) FROM series", err);
  if (!mx || sqlite3_step(mx.get()) != SQLITE_ROW)
    return err.empty() ? "cannot read series" : err;
  m.next_series_id = sqlite3_column_int64(mx.get(), 0) + 1;
  auto s = prepare(db,
                   "SELECT series_id, device_id FROM (SELECT DISTINCT "
                   "series_id, device_id FROM points UNION SELECT series_id, "
                   "device_id FROM wire_series) ORDER BY 1, 2",
                   err);
  if (!s)
    return err;
  while (sqlite3_step(s.get()) == SQLITE_ROW) {
    auto sid = sqlite3_column_int64(s.get(), 0);
    auto org = m.split(
                  reinterpret_cast<const char*>(sqlite3_column_text(s.get(), 1)))
                 .first;
    auto& orgs = m.series[sid];
    if (orgs.count(org) == 0)
      orgs.emplace(org, orgs.empty() ? sid : m.next_series_id++);
  }
  return "";
}

// -- rows ---------------------------------------------------------------------

/// Order-independent digest of a table: the sum of 64-bit hashes of the
/// rows' canonical text (a sum, unlike xor, also sees a duplicated row).
struct digest {
  int64_t rows = 0;
  uint64_t sum = 0;

  bool operator!=(const digest& o) const {
    return rows != o.rows || sum != o.sum;
  }
};

/// Canonical text of one row: each field length-prefixed, then FNV-1a.
struct canon {
  std::string text;

  void add(std::string_view f) {
    text += std::to_string(f.size());
    text += ':';
    text += f;
  }
  uint64_t hash() const {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char ch : text)
      h = (h ^ ch) * 1099511628211ull;
    // Mix so that sums of nearby hashes do not cancel.
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
  }
};

std::string hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

std::string column_text(sqlite3_stmt* s, int i) {
  auto p = sqlite3_column_text(s, i);
  return p ? std::string{reinterpret_cast<const char*>(p),
                         static_cast<size_t>(sqlite3_column_bytes(s, i))}
           : std::string{};
}

std::string column_blob(sqlite3_stmt* s, int i) {
  auto p = sqlite3_column_blob(s, i);
  return p ? std::string{static_cast<const char*>(p),
                         static_cast<size_t>(sqlite3_column_bytes(s, i))}
           : std::string{};
}

int64_t day_field(sqlite3_stmt* s, int i, const mapping& m) {
  auto it = m.batch_day_ms.find(column_text(s, i));
  return it == m.batch_day_ms.end() ? m.today_ms : it->second;
}

std::string iso_day(int64_t ms) {
  auto t = static_cast<time_t>(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

/// Emits one source row (column i of `s` is t.cols[i]) as a COPY row and
/// into `c`. `org` is the row's org (for series ids).
void emit(const table_spec& t, sqlite3_stmt* s, const mapping& m,
          const std::string& org, pg::copy_rows* out, canon& c) {
  for (size_t i = 0; i < t.cols.size(); ++i) {
    auto k = t.cols[i].kind;
    auto n = static_cast<int>(i);
    switch (k) {
      case col::text: {
        auto v = column_text(s, n);
        if (out)
          out->field(std::string_view{v});
        c.add(v);
        break;
      }
      case col::integer:
      case col::series: {
        int64_t v = sqlite3_column_int64(s, n);
        if (k == col::series)
          v = m.series_id(v, org);
        if (out)
          out->field(v);
        c.add(std::to_string(v));
        break;
      }
      case col::blob: {
        auto v = column_blob(s, n);
        if (out)
          out->bytea(v);
        c.add(hex(v));
        break;
      }
      case col::boolean: {
        auto v = sqlite3_column_int64(s, n) != 0;
        if (out)
          out->field(std::string_view{v ? "t" : "f"});
        c.add(v ? "1" : "0");
        break;
      }
      case col::device_id: {
        auto [o, d] = m.split(column_text(s, n));
        if (out)
          out->field(std::string_view{o}).field(std::string_view{d});
        c.add(o);
        c.add(d);
        break;
      }
      case col::day: // derived, not part of the digest
        if (out)
          out->field(std::string_view{iso_day(day_field(s, n, m))});
        break;
      case col::value: { // derived from bits, not part of the digest
        auto v = sqlite3_column_double(s, n);
        if (!out)
          break;
        if (sqlite3_column_type(s, n) == SQLITE_NULL || std::isnan(v))
          out->null();
        else
          out->field(v);
        break;
      }
    }
  }
}

std::string row_org(const table_spec& t, sqlite3_stmt* s, const mapping& m) {
  for (size_t i = 0; i < t.cols.size(); ++i)
    if (t.cols[i].kind == col::device_id)
      return m.split(column_text(s, static_cast<int>(i))).first;
  return m.default_org;
}

// True when `table` of `db` has `column`.
bool has_column(sqlite3* db, const char* table, const char* column) {
  std::string err;
  auto s = prepare(db, std::string{"SELECT 1 FROM pragma_table_info('"}
                         + table + "') WHERE name = ?1", err);
  if (!s)
    return false;
  sqlite3_bind_text(s.get(), 1, column, -1, SQLITE_STATIC);
  return sqlite3_step(s.get()) == SQLITE_ROW;
}

// Counts a node added to a table in place (a store an older node wrote and
// no newer one opened lacks them): they copy as 0, as the node adds them.
bool added_later(const table_spec& t, const std::string& column) {
  std::string table{t.source};
  return (table == "delivery" || table == "declared_drops")
         && (column == "collected" || column == "stored");
}

std::string select_sql(sqlite3* db, const table_spec& t, bool page) {
  std::string sql = "SELECT ";
  for (size_t i = 0; i < t.cols.size(); ++i) {
    std::string name{t.cols[i].source};
    if (added_later(t, name) && !has_column(db, t.source, name.c_str()))
      name = "0";
    sql += (i ? ", " : "") + name;
  }
  if (t.rowid)
    sql += ", rowid";
  sql += std::string{" FROM "} + t.source;
  if (page)
    sql += t.rowid ? " WHERE rowid > ?1" : "";
  sql += std::string{" ORDER BY "} + t.order;
  if (page)
    sql += t.rowid ? " LIMIT ?2" : " LIMIT ?2 OFFSET ?1";
  return sql;
}

/// Emits a series row once per org using it (the default org if none).
template <class F>
void for_each_series_org(sqlite3_stmt* s, const mapping& m, F f) {
  auto it = m.series.find(sqlite3_column_int64(s, 0));
  if (it == m.series.end()) {
    f(m.default_org);
    return;
  }
  for (auto& [org, id] : it->second)
    f(org);
}

void emit_series(const table_spec&, sqlite3_stmt* s, const mapping& m,
                 const std::string& org, pg::copy_rows* out, canon& c) {
  // Column 0 is the source id: the series kind maps it per org.
  int64_t id = m.series_id(sqlite3_column_int64(s, 0), org);
  if (out)
    out->field(id).field(std::string_view{org});
  c.add(std::to_string(id));
  c.add(org);
  auto name = column_text(s, 1);
  auto labels = column_blob(s, 2);
  if (out)
    out->field(std::string_view{name}).bytea(labels);
  c.add(name);
  c.add(hex(labels));
}

/// Runs `f(org, copy_rows*, canon&)`-style emission for every target row of
/// the current source row; returns the target rows it made.
template <class F>
int64_t emit_row(const table_spec& t, sqlite3_stmt* s, const mapping& m,
                 pg::copy_rows* out, F on_row) {
  int64_t made = 0;
  auto one = [&](const std::string& org) {
    canon c;
    if (std::strcmp(t.target, "series") == 0)
      emit_series(t, s, m, org, out, c);
    else
      emit(t, s, m, org, out, c);
    if (out)
      out->end_row();
    on_row(c);
    ++made;
  };
  if (std::strcmp(t.target, "series") == 0)
    for_each_series_org(s, m, one);
  else
    one(row_org(t, s, m));
  return made;
}

} // namespace

namespace {

// -- progress -----------------------------------------------------------------

/// A bar on a terminal, a line every few seconds otherwise.
class progress {
public:
  explicit progress(int64_t interval_ms)
    : tty_(isatty(STDOUT_FILENO) != 0),
      interval_(interval_ms >= 0 ? interval_ms : tty_ ? 200 : 5000) {
  }

  void start(const std::string& table, int64_t done, int64_t total) {
    table_ = table;
    total_ = total;
    first_ = done;
    started_ = last_ = clock::now();
    show(done, true);
  }

  void show(int64_t done, bool force = false) {
    auto now = clock::now();
    if (!force && now - last_ < interval_)
      return;
    last_ = now;
    double secs = std::chrono::duration<double>(now - started_).count();
    double rate = secs > 0 ? (done - first_) / secs : 0;
    double eta = rate > 0 ? (total_ - done) / rate : 0;
    int pct = total_ > 0 ? static_cast<int>(100 * done / total_) : 100;
    if (tty_) {
      std::string bar(static_cast<size_t>(pct / 5), '#');
      bar.resize(20, '.');
      std::printf("\r%-18s [%s] %lld/%lld rows %.0f rows/s ETA %.0f s   ",
                  table_.c_str(), bar.c_str(), static_cast<long long>(done),
                  static_cast<long long>(total_), rate, eta);
    } else {
      std::printf("%s: %lld/%lld rows, %.0f rows/s, ETA %.0f s\n",
                  table_.c_str(), static_cast<long long>(done),
                  static_cast<long long>(total_), rate, eta);
    }
    std::fflush(stdout);
  }

  void finish(int64_t done) {
    show(done, true);
    if (tty_)
      std::printf("\n");
  }

private:
  using clock = std::chrono::steady_clock;
  bool tty_;
  std::chrono::milliseconds interval_;
  std::string table_;
  int64_t total_ = 0, first_ = 0;
  clock::time_point started_, last_;
};

// -- target -------------------------------------------------------------------

std::string errtext(const caf::error& e) {
  return caf::to_string(e);
}

constexpr const char* checkpoint_ddl
  = "CREATE TABLE IF NOT EXISTS fleetd_migrate_checkpoint ("
    "source text PRIMARY KEY, last_rowid bigint NOT NULL, "
    "rows bigint NOT NULL, made bigint NOT NULL)";

std::string prepare_target(pg::connection& pg) {
  auto r = pg.exec("SELECT rolsuper OR rolbypassrls FROM pg_roles "
                   "WHERE rolname = current_user");
  if (!r)
    return errtext(r.error());
  if (r->rows() != 1 || !r->boolean(0, 0))
    return "the target role must bypass Row Level Security (superuser or "
           "BYPASSRLS): it writes the rows of every org";
  if (auto m = migrate(pg); !m)
    return "schema: " + errtext(m.error());
  if (auto c = pg.exec(checkpoint_ddl); !c)
    return errtext(c.error());
  return "";
}

// Every day a point, log or event arrived needs its partition.
std::string make_partitions(pg::connection& pg, const mapping& m) {
  std::set<int64_t> days{m.today_ms};
  for (auto& [key, day] : m.batch_day_ms)
    days.insert(day);
  for (auto day : days)
    if (auto r = ensure_partitions(pg, day, 1); !r)
      return "partition of " + iso_day(day) + ": " + errtext(r.error());
  return "";
}

std::string ensure_orgs(pg::connection& pg, const source& src,
                        const mapping& m) {
  // Orgs named by the store's device ids but not in tenancy.db (and the
  // default org) still get a registry entry.
  std::set<std::string> orgs{m.default_org};
  std::string err;
  auto s = prepare(src.db("cloud"), "SELECT DISTINCT device_id FROM streams",
                   err);
  if (!s)
    return err;
  while (sqlite3_step(s.get()) == SQLITE_ROW)
    orgs.insert(m.split(column_text(s.get(), 0)).first);
  for (auto& org : orgs) {
    auto r = pg.exec("INSERT INTO orgs (name, created_ms) VALUES ($1, $2) "
                     "ON CONFLICT (name) DO NOTHING",
                     {org, m.today_ms});
    if (!r)
      return errtext(r.error());
  }
  return "";
}

struct checkpoint {
  int64_t last_rowid = 0, rows = 0;
};

caf::expected<checkpoint> read_checkpoint(pg::connection& pg,
                                          const std::string& key) {
  auto r = pg.exec("SELECT last_rowid, rows FROM fleetd_migrate_checkpoint "
                   "WHERE source = $1", {key});
  if (!r)
    return r.error();
  if (r->rows() == 0)
    return checkpoint{};
  return checkpoint{r->int64(0, 0), r->int64(0, 1)};
}

/// Copies one batch in one transaction with its checkpoint.
caf::error commit_batch(pg::connection& pg, const table_spec& t,
                        const std::string& key, const pg::copy_rows& rows,
                        const checkpoint& cp, int64_t made) {
  if (auto err = pg.begin())
    return err;
  auto sql = std::string{"COPY "} + t.target + " (" + t.columns
             + ") FROM STDIN";
  if (auto n = pg.copy_in(sql, rows); !n) {
    pg.rollback();
    return n.error();
  }
  auto r = pg.exec("INSERT INTO fleetd_migrate_checkpoint VALUES ($1, $2, "
                   "$3, $4) ON CONFLICT (source) DO UPDATE SET last_rowid = "
                   "$2, rows = $3, made = fleetd_migrate_checkpoint.made + $4",
                   {key, cp.last_rowid, cp.rows, made});
  if (!r) {
    pg.rollback();
    return r.error();
  }
  return pg.commit();
}

// Returns "" when done, else the error.
std::string copy_table(pg::connection& pg, const source& src,
                       const mapping& m, const table_spec& t, const options& o,
                       progress& bar) {
  auto total = count_rows(src, t);
  if (total < 0)
    return ""; // the source has no such table: nothing to copy
  auto key = std::string{t.db} + "." + t.target;
  auto cp = read_checkpoint(pg, key);
  if (!cp)
    return errtext(cp.error());
  std::string err;
  auto s = prepare(src.db(t.db), select_sql(src.db(t.db), t, true), err);
  if (!s)
    return err;
  bar.start(t.target, cp->rows, total);
  int rowid_col = static_cast<int>(t.cols.size());
  for (;;) {
    sqlite3_reset(s.get());
    sqlite3_bind_int64(s.get(), 1, t.rowid ? cp->last_rowid : cp->rows);
    sqlite3_bind_int64(s.get(), 2, o.batch);
    pg::copy_rows rows;
    int64_t read = 0, made = 0;
    while (sqlite3_step(s.get()) == SQLITE_ROW) {
      ++read;
      made += emit_row(t, s.get(), m, &rows, [](const canon&) {});
      if (t.rowid)
        cp->last_rowid = sqlite3_column_int64(s.get(), rowid_col);
    }
    if (read == 0)
      break;
    cp->rows += read;
    if (auto e = commit_batch(pg, t, key, rows, *cp, made))
      return t.target + std::string{": "} + errtext(e);
    bar.show(cp->rows);
  }
  bar.finish(cp->rows);
  return "";
}

// Identity columns continue past the copied ids.
std::string advance_sequences(pg::connection& pg) {
  for (auto t : {"series", "points", "logs", "events"}) {
    auto sql = std::string{"SELECT setval(pg_get_serial_sequence('"} + t
               + "', 'id'), coalesce((SELECT max(id) FROM " + t
               + "), 0) + 1, false)";
    if (auto r = pg.exec(sql); !r)
      return errtext(r.error());
  }
  return "";
}

// -- verify -------------------------------------------------------------------

digest source_digest(const source& src, const mapping& m,
                     const table_spec& t) {
  digest d;
  std::string err;
  auto s = prepare(src.db(t.db), select_sql(src.db(t.db), t, false), err);
  if (!s)
    return d;
  while (sqlite3_step(s.get()) == SQLITE_ROW)
    d.rows += emit_row(t, s.get(), m, nullptr, [&](const canon& c) {
      d.sum += c.hash();
    });
  return d;
}

caf::expected<digest> target_digest(pg::connection& pg, const table_spec& t,
                                    int64_t batch) {
  digest d;
  if (auto err = pg.begin())
    return err;
  auto decl = std::string{"DECLARE fleetd_migrate_cur NO SCROLL CURSOR FOR "
                          "SELECT "}
              + t.canon + " FROM " + t.target;
  if (auto r = pg.exec(decl); !r) {
    pg.rollback();
    return r.error();
  }
  auto fetch = "FETCH " + std::to_string(batch) + " FROM fleetd_migrate_cur";
  for (;;) {
    auto r = pg.exec(fetch);
    if (!r) {
      pg.rollback();
      return r.error();
    }
    if (r->rows() == 0)
      break;
    for (int i = 0; i < r->rows(); ++i) {
      canon c;
      for (int j = 0; j < r->columns(); ++j)
        c.add(r->text(i, j));
      d.sum += c.hash();
      ++d.rows;
    }
  }
  pg.rollback();
  return d;
}

// The default org's registry entry is the migration's own row: not compared.
int verify(pg::connection& pg, const source& src, const mapping& m,
           const options& o) {
  int differing = 0;
  for (auto& t : tables()) {
    if (count_rows(src, t) < 0)
      continue;
    auto a = source_digest(src, m, t);
    auto b = target_digest(pg, t, o.batch);
    if (!b)
      return fail(std::string{t.target} + ": " + errtext(b.error()));
    bool orgs_extra = std::strcmp(t.target, "orgs") == 0 && b->rows > a.rows;
    bool same = !(a != *b) || orgs_extra;
    std::printf("%-18s source %lld rows, target %lld rows: %s\n", t.target,
                static_cast<long long>(a.rows), static_cast<long long>(b->rows),
                same ? "same" : "DIFFERENT");
    if (!same) {
      std::fprintf(stderr, "fleetd-migrate: table %s differs\n", t.target);
      ++differing;
    }
  }
  std::printf("%d differing tables\n", differing);
  return differing == 0 ? 0 : 1;
}

int dry_run(const source& src) {
  for (auto& t : tables()) {
    auto n = count_rows(src, t);
    std::printf("%-18s %lld rows%s\n", t.target,
                static_cast<long long>(n < 0 ? 0 : n),
                n < 0 ? " (no source table)" : "");
  }
  std::printf("dry run: nothing written\n");
  return 0;
}

std::string load_mapping(const source& src, mapping& m) {
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
               .count();
  m.today_ms = day_of(now);
  if (auto err = load_batch_days(src, m); !err.empty())
    return err;
  return load_series(src, m);
}

int copy_all(pg::connection& pg, const source& src, const mapping& m,
             const options& o) {
  for (auto step : {prepare_target(pg), make_partitions(pg, m)})
    if (!step.empty())
      return fail(step);
  progress bar{o.progress_ms};
  auto started = std::chrono::steady_clock::now();
  int64_t rows = 0;
  for (auto& t : tables()) {
    auto err = copy_table(pg, src, m, t, o, bar);
    // After tenancy's orgs (a COPY cannot skip existing names).
    if (err.empty() && std::strcmp(t.target, "orgs") == 0)
      err = ensure_orgs(pg, src, m);
    if (!err.empty())
      return fail(err);
    rows += std::max<int64_t>(0, count_rows(src, t));
  }
  if (auto err = advance_sequences(pg); !err.empty())
    return fail(err);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now()
                                              - started)
                  .count();
  std::printf("done: %lld source rows in %.1f s\n",
              static_cast<long long>(rows), secs);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  bool help = false;
  if (auto err = parse(argc, argv, o, help); !err.empty())
    return fail(err + " (see --help)");
  if (help) {
    std::fputs(usage, stdout);
    return 0;
  }
  // The same lock fleetd-cloud takes: no node may write while we read.
  auto lock = lock_data_dir(o.from, "fleetd-cloud");
  if (!lock)
    return fail(errtext(lock.error()) + ": stop it first");
  source src;
  if (auto err = open_source(o.from, src); !err.empty())
    return fail(err);
  if (o.dry_run)
    return dry_run(src);
  mapping m;
  m.default_org = o.default_org;
  if (auto err = load_mapping(src, m); !err.empty())
    return fail(err);
  auto pg = pg::connection::open(o.to);
  if (!pg)
    return fail(pg::redact(o.to) + ": " + errtext(pg.error()));
  return o.verify ? verify(*pg, src, m, o) : copy_all(*pg, src, m, o);
}
