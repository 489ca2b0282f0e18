#include "edge/sqlite_store.hpp"

#include <cerrno>
#include <filesystem>
#include <functional>
#include <cstdio>
#include <cstring>
#include <random>
#include <ctime>
#include <sstream>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>
#include <algorithm>
#include <array>
#include <optional>
#include <utility>
#include <sys/statvfs.h>

#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "messages/wire.hpp"
#include "runtime/json.hpp"
#include "runtime/config_check.hpp"
#include "runtime/logger.hpp"
#include "runtime/random.hpp"
#include "runtime/options.hpp"
#include "runtime/result.hpp"

namespace fleetd {

namespace {

// Batches are cut from `id > batched_upto`, so a row id must never be
// reused after the table was emptied by retention or caps (plain rowids
// restart at max + 1). Events are AUTOINCREMENT; metrics and logs rows get
// their ids from the store (next_row_id), since AUTOINCREMENT's
// sqlite_sequence update is one more page written by every commit.
constexpr const char* schema = R"(
CREATE TABLE IF NOT EXISTS series (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  labels BLOB NOT NULL,
  UNIQUE (name, labels));
CREATE TABLE IF NOT EXISTS metrics (
  id INTEGER PRIMARY KEY,
  series_id INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  bits INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sync_queue (
  stream TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  last_id INTEGER NOT NULL,
  points INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  retry_count INTEGER NOT NULL DEFAULT 0,
  next_retry INTEGER NOT NULL DEFAULT 0,
  payload BLOB NOT NULL,
  PRIMARY KEY (stream, sequence)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ts INTEGER NOT NULL,
  kind TEXT NOT NULL,
  message TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS logs (
  id INTEGER PRIMARY KEY,
  ts INTEGER NOT NULL,
  labels BLOB NOT NULL,
  line TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS wire_series (
  stream TEXT NOT NULL,
  idx INTEGER NOT NULL,
  name TEXT NOT NULL,
  labels BLOB NOT NULL,
  PRIMARY KEY (stream, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wire_history (
  stream TEXT PRIMARY KEY,
  history BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS drops (
  kind TEXT PRIMARY KEY,
  count INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS source_cursors (
  key TEXT PRIMARY KEY,
  generation INTEGER NOT NULL,
  value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stream_state (
  stream TEXT PRIMARY KEY,
  next_sequence INTEGER NOT NULL,
  batched_upto INTEGER NOT NULL,
  acked_sequence INTEGER NOT NULL,
  acked_upto INTEGER NOT NULL) WITHOUT ROWID;
)";

// Stores before metrics.bits kept values as REAL, which refuses NaN and
// loses -0.0: rebuild the table with the bits, keeping ids and the
// AUTOINCREMENT high-water mark.
caf::error migrate_metric_values(sqlite::database& db) {
  auto legacy = db.has_column("metrics", "value");
  if (!legacy)
    return legacy.error();
  if (!*legacy)
    return caf::none;
  log_info("storage", "migrating metrics.value to exact bits");
  return sqlite::transaction(db, [&] {
    return db.exec(
      "CREATE TABLE metrics_exact (id INTEGER PRIMARY KEY AUTOINCREMENT, "
      "series_id INTEGER NOT NULL, ts INTEGER NOT NULL, "
      "bits INTEGER NOT NULL);"
      "INSERT INTO metrics_exact (id, series_id, ts, bits) "
      "SELECT id, series_id, ts, ieee_bits(value) FROM metrics;"
      "DELETE FROM sqlite_sequence WHERE name = 'metrics_exact';"
      "UPDATE sqlite_sequence SET name = 'metrics_exact' "
      "WHERE name = 'metrics';"
      "DROP TABLE metrics;"
      "ALTER TABLE metrics_exact RENAME TO metrics;");
  });
}

int64_t file_size(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : -1;
}

std::string series_key(const std::string& name, const std::string& labels) {
  std::string key = name;
  key += '\0';
  key += labels;
  return key;
}

// Pages of a new file: SQLite's 4 KiB. 2 KiB pages wrote 24 % less a round
// but read a backlog 27 % slower (sync_kill_test's drain missed its bound).
constexpr int new_file_page_size = 4096;

// How long a start waits for a lock held elsewhere before it says so.
constexpr int open_busy_timeout_ms = 2000;

bool has_code(const caf::error& err, ec code) {
  return err && err.category() == caf::atom("fleetd")
         && static_cast<ec>(err.code()) == code;
}

// Why a start cannot use the file, for the operator: the file, the cause,
// and that nothing was changed.
caf::error cannot_use(const std::string& path, const caf::error& err) {
  auto code = err.category() == caf::atom("fleetd") ? static_cast<ec>(err.code())
                                                    : ec::storage_failed;
  const char* why = code == ec::storage_locked
                      ? "another process holds a lock on it; stop that "
                        "process (or end its transaction) and start again"
                    : code == ec::io_error
                      ? "it cannot be opened (permission or path)"
                    : code == ec::disk_full
                      ? "the disk is full or the file is read-only"
                      : "SQLite refused it";
  return make_error(code, "database " + path + ": " + why + " (" + render(err)
                            + "); the file was left as it is");
}

// A file we cannot use is renamed, never deleted: an operator may want it.
// Returns the new name, empty when the rename failed.
std::string move_aside(const std::string& path, int64_t now_ms) {
  auto target = path + ".corrupt-" + std::to_string(now_ms);
  if (rename(path.c_str(), target.c_str()) != 0) {
    log_error("storage", "cannot move ", path, " aside: ", strerror(errno));
    return {};
  }
  for (auto suffix : {"-wal", "-shm"}) {
    auto side = path + suffix;
    rename(side.c_str(), (target + suffix).c_str());
  }
  log_error("storage", "database ", path, " is corrupt; moved aside to ",
            target, ", salvaging what it still holds into a fresh one");
  return target;
}

// The first column of the first row; nullopt when it cannot be read.
std::optional<int64_t> try_scalar(sqlite::database& db,
                                  const std::string& sql) {
  auto st = db.prepare(sql);
  if (!st)
    return std::nullopt;
  auto row = st->step();
  if (!row)
    return std::nullopt;
  return *row && !st->column_is_null(0) ? st->column_int(0) : 0;
}

// Cursor positions of a stream: acked and batched row ids.
std::pair<int64_t, int64_t> stream_cursors(sqlite::database& db,
                                           const char* stream) {
  auto st = db.prepare("SELECT acked_upto, batched_upto FROM stream_state "
                       "WHERE stream = ?1");
  if (!st)
    return {0, 0};
  st->bind(1, std::string_view{stream});
  auto row = st->step();
  if (!row || !*row)
    return {0, 0};
  return {st->column_int(0), st->column_int(1)};
}

// The key in meta under which the highest id ever given in `table` is kept
// when rows that may include it are deleted.
std::string id_floor_key(const char* table) {
  return std::string("id_floor.") + table;
}

// The next id for a row of `table` (metrics or logs): above every id it
// holds, ever held (AUTOINCREMENT's mark of older files, the floor kept
// before deletes) and every batch cursor.
int64_t next_row_id(sqlite::database& db, const char* table) {
  auto t = std::string(table);
  auto [acked, batched] = stream_cursors(db, table);
  int64_t top = std::max(acked, batched);
  for (auto sql : {"SELECT max(id) FROM " + t,
                   "SELECT seq FROM sqlite_sequence WHERE name = '" + t + "'",
                   "SELECT CAST(value AS INTEGER) FROM meta WHERE key = '"
                     + id_floor_key(table) + "'"})
    top = std::max(top, try_scalar(db, sql).value_or(0));
  return top + 1;
}

// Keeps the highest id of `table` before a delete that may remove it.
caf::error keep_id_floor(sqlite::database& db, const char* table) {
  auto st = db.prepare(std::string("INSERT INTO meta (key, value) SELECT ?1, "
                                   "m FROM (SELECT max(id) AS m FROM ")
                       + table + ") WHERE m IS NOT NULL ON CONFLICT (key) DO "
                                 "UPDATE SET value = max(CAST(value AS "
                                 "INTEGER), CAST(excluded.value AS INTEGER))");
  if (!st)
    return st.error();
  return st->bind(1, id_floor_key(table)).run();
}

struct copy_result {
  int64_t copied = 0;
  // Every row was read; false when a damaged region was skipped.
  bool complete = true;
};

// Copies the rows of `table` with `key` > `from` from `src` into the same
// table of `dst`. A region that cannot be read is skipped by probing ever
// further past it (bounded); without a `key` (WITHOUT ROWID tables) the
// first unreadable row ends the copy. Only a failed write is an error.
caf::expected<copy_result> copy_rows(sqlite::database& src,
                                     sqlite::database& dst,
                                     const std::string& table,
                                     const std::string& key, int64_t from,
                                     const std::string& columns = "*") {
  copy_result out;
  auto where = key.empty() ? std::string{}
                           : " WHERE " + key + " >= ?1 ORDER BY " + key;
  sqlite::statement ins;
  bool prepared = false;
  int64_t next = from + 1;
  for (int probes = 0; probes < 256;) {
    auto sel = src.prepare("SELECT " + columns + " FROM " + table + where);
    if (!sel) {
      out.complete = false;
      return out;
    }
    if (!key.empty())
      sel->bind(1, next);
    for (;;) {
      auto row = sel->step();
      if (!row)
        break;
      if (!*row)
        return out;
      if (!prepared) {
        std::string sql = "INSERT INTO " + table + " VALUES (";
        for (int c = 0; c < sel->column_count(); ++c)
          sql += (c > 0 ? ",?" : "?") + std::to_string(c + 1);
        auto st = dst.prepare(sql + ")");
        if (!st)
          return st.error();
        ins = std::move(*st);
        prepared = true;
      }
      ins.reset();
      for (int c = 0; c < sel->column_count(); ++c)
        ins.bind_column(c + 1, *sel, c);
      if (auto err = ins.run())
        return err;
      ++out.copied;
      if (!key.empty())
        next = sel->column_int(0) + 1;
    }
    out.complete = false;
    if (key.empty())
      return out;
    auto probe = src.prepare("SELECT " + key + " FROM " + table + " WHERE "
                             + key + " >= ?1 ORDER BY " + key + " LIMIT 1");
    if (!probe)
      return out;
    // From key `x` on: 0 readable and empty, 1 readable, -1 damaged.
    auto readable_from = [&](int64_t x) {
      ++probes;
      auto row = probe->reset().bind(1, x).step();
      return !row ? -1 : *row ? 1 : 0;
    };
    int64_t bad = next;
    int64_t step = 1;
    int verdict = -1;
    for (; probes < 256 && step > 0; step *= 2) {
      verdict = readable_from(next + step);
      if (verdict >= 0)
        break;
      bad = next + step;
    }
    if (verdict <= 0)
      return out;
    // Back to the first readable position, so no readable row is skipped.
    int64_t good = next + step;
    while (good - bad > 1 && probes < 256) {
      auto mid = bad + (good - bad) / 2;
      (readable_from(mid) >= 0 ? good : bad) = mid;
    }
    next = good;
  }
  return out;
}

} // namespace

// Reads what the corrupt file at `aside` still gives of the unsynced data
// into the fresh (empty) store: with its epoch and stream cursors readable
// the store goes on with the same numbering (queued batches, series session
// and rows past the acked cursors); otherwise every readable row is cut
// again under a new epoch. What cannot be read is counted as dropped.
namespace {

// What a salvage got out of a corrupt file so far.
struct salvage_tally {
  std::map<std::string, int64_t> lost;
  int64_t recovered = 0;
  bool same_epoch = false;
};

// Copies `table`'s readable rows from `src` (those with `key` > `from`).
caf::expected<copy_result> salvage_copy(sqlite::database& src,
                                        sqlite::database& dst,
                                        const std::string& table,
                                        const std::string& key, int64_t from,
                                        salvage_tally& t) {
  // A file of the REAL-valued schema gives its values as exact bits.
  auto has_value = src.has_column("metrics", "value");
  auto legacy = table == "metrics" && has_value && *has_value;
  auto r = copy_rows(src, dst, table, key, from,
                     legacy ? "id, series_id, ts, ieee_bits(value)" : "*");
  if (r)
    t.recovered += r->copied;
  return r;
}

// The epoch and cursors, then (same epoch only) the queue and the session.
caf::error salvage_cursors(sqlite::database& src, sqlite::database& dst,
                           salvage_tally& t) {
  auto meta = salvage_copy(src, dst, "meta", "", 0, t);
  if (!meta)
    return meta.error();
  // Best effort: a file older than the table has none to give.
  if (auto c = salvage_copy(src, dst, "source_cursors", "", 0, t); !c)
    log_warning("storage", "salvage: no source cursors: ", render(c.error()));
  auto state = salvage_copy(src, dst, "stream_state", "", 0, t);
  if (!state)
    return state.error();
  t.same_epoch = meta->complete && state->complete
                 && try_scalar(dst, "SELECT count(*) FROM meta WHERE "
                                    "key = 'epoch'")
                      == 1;
  if (!t.same_epoch) {
    // The numbering cannot go on: a new epoch cuts every row again.
    for (auto sql : {"DELETE FROM meta WHERE key = 'epoch'",
                     "DELETE FROM stream_state"})
      if (auto err = dst.exec(sql))
        return err;
    return caf::none;
  }
  auto queue = salvage_copy(src, dst, "sync_queue", "", 0, t);
  if (!queue)
    return queue.error();
  if (auto n = try_scalar(src, "SELECT count(*) FROM sync_queue"))
    t.lost[drop_kind::batches_unreadable] = *n - queue->copied;
  auto ws = salvage_copy(src, dst, "wire_series", "", 0, t);
  if (!ws)
    return ws.error();
  auto wh = salvage_copy(src, dst, "wire_history", "", 0, t);
  if (!wh)
    return wh.error();
  // Half a series session is worse than none: the next batch starts one.
  if (!ws->complete || !wh->complete)
    for (auto sql : {"DELETE FROM wire_series", "DELETE FROM wire_history"})
      if (auto err = dst.exec(sql))
        return err;
  return caf::none;
}

// The rows of `table` past its acked cursor; what is missing counts as
// `kind`; ids never go back below a cursor, so new rows sort after it.
caf::error salvage_table(sqlite::database& src, sqlite::database& dst,
                         const char* table, const char* kind,
                         salvage_tally& t) {
  auto [acked, batched] = t.same_epoch ? stream_cursors(dst, table)
                                       : std::pair<int64_t, int64_t>{0, 0};
  auto r = salvage_copy(src, dst, table, "id", acked, t);
  if (!r)
    return r.error();
  // The highest id the table ever gave, by whatever the file still says.
  auto top = next_row_id(src, table) - 1;
  // The count when the table still gives it, else the id range.
  auto expected = try_scalar(src, std::string("SELECT count(*) FROM ") + table
                                    + " WHERE id > " + std::to_string(acked));
  if (!expected && top > 0)
    expected = top - acked;
  if (expected)
    t.lost[kind] = std::max<int64_t>(0, *expected - r->copied);
  auto floor = std::max(batched, top);
  auto run = [&](const char* sql) -> caf::error {
    auto st = dst.prepare(sql);
    if (!st)
      return st.error();
    return st->bind(1, std::string_view{table}).bind(2, floor).run();
  };
  if (auto err = run("UPDATE sqlite_sequence SET seq = max(seq, ?2) "
                     "WHERE name = ?1"))
    return err;
  if (dst.changes() == 0 && floor > 0)
    return run("INSERT INTO sqlite_sequence (name, seq) VALUES (?1, ?2)");
  return caf::none;
}

// Series, then the rows of each record table; a point whose series was not
// readable cannot be sent.
caf::error salvage_rows(sqlite::database& src, sqlite::database& dst,
                        salvage_tally& t) {
  if (auto r = salvage_copy(src, dst, "series", "id", 0, t); !r)
    return r.error();
  const std::pair<const char*, const char*> tables[]
    = {{"metrics", drop_kind::metrics_unreadable},
       {"logs", drop_kind::logs_unreadable},
       {"events", drop_kind::events_unreadable}};
  for (auto [table, kind] : tables)
    if (auto err = salvage_table(src, dst, table, kind, t))
      return err;
  if (auto err = keep_id_floor(dst, "metrics"))
    return err;
  if (auto err = dst.exec("DELETE FROM metrics WHERE series_id NOT IN "
                          "(SELECT id FROM series)"))
    return err;
  t.lost[drop_kind::metrics_unreadable] += dst.changes();
  t.recovered -= dst.changes();
  return caf::none;
}

} // namespace

caf::error sqlite_store::salvage(const std::string& aside) {
  auto src = sqlite::database::open_readonly(aside, cfg_.disk->vfs());
  if (!src) {
    log_error("storage", "cannot read ", aside, ": ", render(src.error()));
    return record_event("storage_salvaged",
                        "database was corrupt; moved aside to " + aside
                          + ", nothing could be read from it");
  }
  salvage_tally t;
  auto err = sqlite::transaction(db_, [&]() -> caf::error {
    if (auto err = salvage_cursors(*src, db_, t))
      return err;
    if (auto err = salvage_rows(*src, db_, t))
      return err;
    for (auto& [kind, n] : t.lost)
      if (auto err = count_drop(kind.c_str(), n))
        return err;
    return caf::none;
  });
  if (err)
    return err;
  std::string what = "database was corrupt; moved aside to " + aside
                     + "; recovered " + std::to_string(t.recovered) + " rows ("
                     + (t.same_epoch ? "same sequence epoch"
                                     : "epoch unreadable: every readable row "
                                       "is sent again under a new epoch")
                     + ")";
  for (auto& [kind, n] : t.lost)
    if (n > 0)
      what += ", " + kind + "=" + std::to_string(n);
  log_warning("storage", what);
  return record_event("storage_salvaged", what);
}

caf::error sqlite_store::init(const std::string* salvage_from) {
  if (auto err = migrate_metric_values(db_))
    return err;
  if (auto err = db_.exec(schema))
    return err;
  if (salvage_from)
    if (auto err = salvage(*salvage_from))
      return err;
  if (auto err = load_epoch())
    return err;
  if (auto err = prepare())
    return err;
  next_metric_id_ = next_row_id(db_, "metrics");
  next_log_id_ = next_row_id(db_, "logs");
  fit_wal_to_disk();
  if (auto err = limit_wal())
    return err;
  if (!hold_reserve())
    log_warning("storage", "no room for the ", cfg_.limits.reserve_bytes,
                "-byte reserve beside ", cfg_.path);
  return open_journal();
}

caf::expected<sqlite_store> sqlite_store::open(const sqlite_store_config& cfg) {
  if (auto err = validate(cfg))
    return err;
  sqlite_store out;
  out.cfg_ = cfg;
  // With the rounds file nothing reads the tables from outside (they lag
  // it): no -shm file, whose page each read dirties, a page written per
  // writeback (~30 s) on top of the round's.
  auto db = sqlite::database::open(cfg.path, "FULL", open_busy_timeout_ms,
                                   cfg.disk->vfs(), new_file_page_size,
                                   cfg.limits.rounds_file);
  caf::error err = db ? caf::error{} : db.error();
  std::string verdict;
  if (db) {
    if (auto check = db->integrity(); !check)
      err = check.error();
    else if (*check != "ok")
      verdict = "quick_check: " + *check;
  }
  if (!err && verdict.empty()) {
    out.db_ = std::move(*db);
    err = out.init(nullptr);
    if (!err)
      return out;
  }
  // Only SQLite's own verdict of corruption may move a file aside.
  if (verdict.empty() && !has_code(err, ec::storage_corrupt))
    return cannot_use(cfg.path, err);
  log_error("storage", "cannot use ", cfg.path, ": ",
            verdict.empty() ? render(err) : verdict);
  out.db_.close_as_is();
  if (db)
    db->close_as_is();
  auto aside = move_aside(cfg.path, cfg.clock->now_ms());
  if (aside.empty())
    return make_error(ec::storage_corrupt, "database " + cfg.path
                                             + " is corrupt and cannot be "
                                               "moved aside");
  ++out.moved_aside_;
  auto fresh = sqlite::database::open(cfg.path, "FULL", open_busy_timeout_ms,
                                      cfg.disk->vfs(), new_file_page_size,
                                      cfg.limits.rounds_file);
  if (!fresh)
    return cannot_use(cfg.path, fresh.error());
  out.db_ = std::move(*fresh);
  if (auto err = out.init(&aside))
    return cannot_use(cfg.path, err);
  return out;
}

caf::error sqlite_store::load_epoch() {
  // Set once when the file is created: it names this store's numbering.
  auto ins = db_.prepare("INSERT OR IGNORE INTO meta (key, value) "
                         "VALUES ('epoch', ?1)");
  if (!ins)
    return ins.error();
  ins->bind(1, random_hex(8));
  if (auto err = ins->run())
    return err;
  auto sel = db_.prepare("SELECT value FROM meta WHERE key = 'epoch'");
  if (!sel)
    return sel.error();
  auto row = sel->step();
  if (!row)
    return row.error();
  epoch_ = *row ? sel->column_text(0) : std::string{};
  return caf::none;
}

caf::error sqlite_store::prepare() {
  auto make = [this](sqlite::statement& dst, const char* sql) -> caf::error {
    auto st = db_.prepare(sql);
    if (!st)
      return st.error();
    dst = std::move(*st);
    return caf::none;
  };
  caf::error err;
  auto step = [&](sqlite::statement& dst, const char* sql) {
    if (!err)
      err = make(dst, sql);
  };
  step(insert_metric_, "INSERT INTO metrics (series_id, ts, bits, id) "
                       "VALUES (?1, ?2, ?3, ?4)");
  step(insert_series_, "INSERT INTO series (name, labels) VALUES (?1, ?2)");
  step(select_unbatched_,
       "SELECT id, series_id, ts, bits FROM metrics WHERE id > ?1 "
       "ORDER BY id LIMIT ?2");
  step(select_state_, "SELECT next_sequence, batched_upto, acked_sequence "
                      "FROM stream_state WHERE stream = ?1");
  step(insert_queue_,
       "INSERT INTO sync_queue (stream, sequence, last_id, points, "
       "created_at, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  step(update_batched_,
       "INSERT INTO stream_state (stream, next_sequence, batched_upto, "
       "acked_sequence, acked_upto) VALUES (?1, ?2, ?3, 0, 0) "
       "ON CONFLICT (stream) DO UPDATE SET next_sequence = ?2, "
       "batched_upto = ?3");
  step(select_pending_,
       "SELECT sequence, last_id, points, created_at, retry_count, payload "
       "FROM sync_queue WHERE stream = ?1 ORDER BY sequence LIMIT ?2");
  step(delete_acked_,
       "DELETE FROM sync_queue WHERE stream = ?1 AND sequence <= ?2");
  step(update_acked_,
       "UPDATE stream_state SET acked_sequence = max(acked_sequence, ?2), "
       "acked_upto = max(acked_upto, ?3) WHERE stream = ?1");
  if (err)
    return err;
  // Series are few; keep them all in memory for the insert path.
  auto all = db_.prepare("SELECT id, name, labels FROM series");
  if (!all)
    return all.error();
  for (;;) {
    auto row = all->step();
    if (!row)
      return row.error();
    if (!*row)
      break;
    auto id = all->column_int(0);
    auto name = all->column_text(1);
    auto labels = all->column_blob(2);
    series_.emplace(series_key(name, labels), id);
    series_by_id_.emplace(id, std::make_pair(name, decode_labels(labels)));
  }
  return caf::none;
}

std::optional<int64_t> sqlite_store::known_series_id(const metric_sample& x) {
  // series_key(name, encode_labels(labels)) built in a buffer that keeps its
  // capacity: no allocation per row on the hot path.
  auto& key = key_buf_;
  key.assign(x.name);
  key += '\0';
  for (auto& kv : x.labels) {
    key += kv.first;
    key += '\0';
    key += kv.second;
    key += '\0';
  }
  if (auto i = series_.find(key); i != series_.end())
    return i->second;
  return std::nullopt;
}

caf::expected<int64_t> sqlite_store::series_id(const metric_sample& x) {
  if (auto id = known_series_id(x))
    return *id;
  auto& key = key_buf_; // as known_series_id left it
  auto labels = encode_labels(x.labels);
  insert_series_.reset().bind(1, x.name).bind_blob(2, labels);
  if (auto err = insert_series_.run())
    return err;
  auto id = db_.last_insert_rowid();
  series_.emplace(key, id);
  series_by_id_.emplace(id, std::make_pair(x.name, x.labels));
  return id;
}

void sqlite_store::forget_new_series(size_t known_before) {
  // Series ids a rollback took back must not be used: read them again.
  if (series_.size() == known_before)
    return;
  series_.clear();
  series_by_id_.clear();
  prepare();
}

caf::expected<int64_t> sqlite_store::insert_all(const metric_samples& xs) {
  // New series ids live only if the transaction commits: remember to forget.
  auto known_before = series_.size();
  auto err = sqlite::transaction(db_, [&]() -> caf::error {
    for (auto& x : xs) {
      auto sid = series_id(x);
      if (!sid)
        return sid.error();
      insert_metric_.reset().bind(1, *sid).bind(2, x.timestamp_ms)
        .bind_exact(3, x.value).bind(4, next_metric_id_++);
      if (auto err = insert_metric_.run())
        return err;
    }
    return caf::none;
  });
  if (err) {
    forget_new_series(known_before);
    return err;
  }
  return static_cast<int64_t>(xs.size());
}

bool sqlite_store::journaling() const {
  return journal_ && cfg_.limits.rounds_file
         && cfg_.limits.commit_interval_ms <= 0 && !under_pressure_;
}

int64_t sqlite_store::journal_bound() const {
  // Its records are held in memory too: a quarter MiB of frames is ~30k
  // samples, hours of rounds, and far below the WAL's bound.
  return std::min<int64_t>(256 * 1024, wal_bound());
}

caf::error sqlite_store::open_journal() {
  find_kept_rounds();
  auto path = cfg_.path + "-rounds";
  // A fold's next file, left by a crash before it took the name.
  cfg_.disk->remove(path + ".new");
  if (!cfg_.limits.rounds_file && file_size(path) <= 0)
    return caf::none;
  auto j = round_journal::open(path, cfg_.disk->vfs(), epoch_);
  if (!j && has_code(j.error(), ec::storage_corrupt)) {
    // Records numbered by another store cannot join this one's batches.
    auto aside = path + ".orphan-" + std::to_string(cfg_.clock->now_ms());
    log_error("storage", render(j.error()), "; moved aside to ", aside);
    std::rename(path.c_str(), aside.c_str());
    record_event("storage_salvaged", "rounds file of another epoch moved "
                                     "aside to " + aside);
    j = round_journal::open(path, cfg_.disk->vfs(), epoch_);
  }
  if (!j)
    return j.error();
  journal_.emplace(std::move(*j));
  if (journal_->torn_bytes() > 0)
    log_warning("storage", path, ": cut ", journal_->torn_bytes(),
                " bytes of an unfinished commit (never answered)");
  // Batches and acks after the tables' last commit: taken again, in order.
  if (!journal_->ops().empty())
    if (auto err = sqlite::transaction(db_, [&] { return apply_journal_ops(); }))
      return err;
  // Records the cloud acked are gone from the file's view too.
  for (bool logs : {false, true})
    if (auto err = journal_->forget_upto(
          logs, stream_cursors(db_, logs ? logs_stream : metrics_stream).first))
      return err;
  next_metric_id_ = std::max(next_metric_id_, journal_->largest_id(false) + 1);
  next_log_id_ = std::max(next_log_id_, journal_->largest_id(true) + 1);
  if (!journal_->empty())
    log_info("storage", path, ": ", journal_->metrics().size(), " samples and ",
             journal_->logs().size(), " log lines read back");
  if (cfg_.limits.rounds_file)
    return caf::none;
  // Switched off: what the file holds moves into the tables, once.
  if (auto err = fold_journal())
    return err;
  journal_.reset();
  cfg_.disk->remove(path);
  return caf::none;
}

caf::expected<int64_t> sqlite_store::journal_samples(const metric_samples& xs) {
  // New series are committed before the records that name them.
  auto known_before = series_.size();
  std::vector<int64_t> ids;
  ids.reserve(xs.size());
  // Known series need no transaction: even a read one dirties a page of
  // the WAL index (-shm), and that page is written out again.
  for (auto& x : xs) {
    auto sid = known_series_id(x);
    if (!sid)
      break;
    ids.push_back(*sid);
  }
  caf::error err;
  if (ids.size() < xs.size()) {
    ids.clear();
    err = sqlite::transaction(db_, [&]() -> caf::error {
      for (auto& x : xs) {
        auto sid = series_id(x);
        if (!sid)
          return sid.error();
        ids.push_back(*sid);
      }
      return caf::none;
    });
  }
  if (err) {
    forget_new_series(known_before);
    // The tables' path knows how to make room on a full disk.
    return held_store(xs.size(), [&] { return insert_all(xs); },
                      drop_kind::metrics_rejected, points_stored_,
                      held_points_);
  }
  // The frame names series ids: new ones must be in the file first.
  if (series_.size() != known_before)
    if (auto err = commit_lazy())
      return err;
  for (size_t i = 0; i < xs.size(); ++i)
    journal_->add(journal_metric{next_metric_id_++, ids[i],
                                 xs[i].timestamp_ms, bits_of(xs[i].value)});
  points_stored_ += static_cast<int64_t>(xs.size());
  if (!grouping_)
    if (auto err = flush_journal())
      return err;
  return static_cast<int64_t>(xs.size());
}

caf::expected<int64_t> sqlite_store::journal_lines(const log_lines& xs,
                                                   const source_cursors& cursors) {
  for (auto& x : xs)
    journal_->add(journal_log{next_log_id_++, x.timestamp_ns,
                              encode_labels(x.labels), x.line});
  // In the lines' frame: both are kept, or neither.
  for (auto& c : cursors)
    journal_->add(c);
  logs_stored_ += static_cast<int64_t>(xs.size());
  if (!grouping_)
    if (auto err = flush_journal())
      return err;
  return static_cast<int64_t>(xs.size());
}

namespace {

// Rows [from, to) of the rounds file into a table: `bind` binds one.
template <class Rows, class Bind>
caf::error insert_rows(sqlite::database& db, const char* sql, const Rows& rows,
                       size_t from, size_t to, Bind bind) {
  auto st = db.cached(sql);
  if (!st)
    return st.error();
  for (auto i = from; i < to; ++i) {
    bind(st->reset(), rows[i]);
    if (auto err = st->run())
      return err;
  }
  return caf::none;
}

} // namespace

caf::error sqlite_store::insert_journal_metrics(size_t from, size_t to) {
  return insert_rows(db_, "INSERT OR IGNORE INTO metrics (series_id, ts, "
                          "bits, id) VALUES (?1, ?2, ?3, ?4)",
                     journal_->metrics(), from, to,
                     [](sqlite::statement& st, const journal_metric& r) {
                       st.bind(1, r.series_id).bind(2, r.ts_ms)
                         .bind(3, static_cast<int64_t>(r.bits)).bind(4, r.id);
                     });
}

caf::error sqlite_store::insert_journal_logs(size_t from, size_t to) {
  return insert_rows(db_, "INSERT OR IGNORE INTO logs (ts, labels, line, id) "
                          "VALUES (?1, ?2, ?3, ?4)",
                     journal_->logs(), from, to,
                     [](sqlite::statement& st, const journal_log& r) {
                       st.bind(1, r.ts_ns).bind_blob(2, r.labels)
                         .bind(3, r.line).bind(4, r.id);
                     });
}

caf::error sqlite_store::flush_journal() {
  // with_room below commits before it makes room: that is this call.
  if (!journal_ || !journal_->has_pending() || flushing_)
    return caf::none;
  flushing_ = true;
  struct unset {
    bool& flag;
    ~unset() {
      flag = false;
    }
  } done{flushing_};
  auto err = journal_->flush();
  if (!err) {
    ++commits_;
    if (journal_->bytes() > journal_bound())
      if (auto ferr = fold_journal())
        log_warning("storage", "rounds file kept: ", render(ferr));
    if (auto n = enforce_limits(); !n)
      log_warning("storage", "cannot apply caps: ", render(n.error()));
    return caf::none;
  }
  log_warning("storage", "rounds file refused a commit: ", render(err),
              "; storing it in the tables");
  // The tables' path makes room on a full disk and counts what it refuses.
  auto& ms = journal_->metrics();
  auto& ls = journal_->logs();
  auto pm = journal_->pending_metrics();
  auto pl = journal_->pending_logs();
  auto& cs = journal_->pending_cursors();
  auto first_m = ms.size() - static_cast<size_t>(pm);
  auto first_l = ls.size() - static_cast<size_t>(pl);
  auto into_tables = [&](int64_t n, auto insert, const char* kind,
                         int64_t& stored, bool cursors) -> caf::error {
    if (n == 0 && !cursors)
      return caf::none;
    auto r = with_room(static_cast<size_t>(n), [&]() -> caf::expected<int64_t> {
      if (auto e = sqlite::transaction(db_, insert))
        return e;
      return n;
    }, kind);
    if (r)
      return caf::none;
    stored -= n;
    return r.error();
  };
  auto merr = into_tables(pm, [&] {
    return insert_journal_metrics(first_m, ms.size());
  }, drop_kind::metrics_rejected, points_stored_, false);
  // The cursors commit with the lines they follow.
  auto lerr = into_tables(pl, [&]() -> caf::error {
    if (auto err = insert_journal_logs(first_l, ls.size()))
      return err;
    return upsert_cursors(cs);
  }, drop_kind::logs_rejected, logs_stored_, !cs.empty());
  journal_->drop_pending();
  return merr ? merr : lerr;
}

int64_t sqlite_store::journal_unbatched(bool logs) {
  if (!journal_)
    return 0;
  auto after = stream_cursors(db_, logs ? logs_stream : metrics_stream).second;
  auto count = [after](auto& rows) {
    return static_cast<int64_t>(std::count_if(
      rows.begin(), rows.end(), [after](auto& r) { return r.id > after; }));
  };
  return logs ? count(journal_->logs()) : count(journal_->metrics());
}

caf::error sqlite_store::fold_journal() {
  if (!journal_ || journal_->bytes() == 0)
    return commit_lazy();
  auto pm = static_cast<size_t>(journal_->pending_metrics());
  auto pl = static_cast<size_t>(journal_->pending_logs());
  auto nm = journal_->metrics().size() - pm;
  auto nl = journal_->logs().size() - pl;
  auto err = sqlite::transaction(db_, [&]() -> caf::error {
    if (auto err = insert_journal_metrics(0, nm))
      return err;
    if (auto err = insert_journal_logs(0, nl))
      return err;
    // The file is emptied next: its cursors must be in the tables first.
    return upsert_cursors(journal_->cursors());
  });
  // The file is the redo log of what the tables hold uncommitted.
  if (!err)
    err = commit_lazy();
  if (err)
    return err;
  if (nm + nl > 0)
    log_info("storage", "moved ", nm, " samples and ", nl,
             " log lines from the rounds file into the tables");
  auto am = journal_->acked_metrics();
  auto al = journal_->acked_logs();
  if (am + al == 0)
    return journal_->reset();
  // Acked records stay on the device until storage.retention, as the
  // tables' synced rows do, in the file as written: no page rewritten.
  kept_rounds k;
  // Names stay unique and in fold order on an injected clock too.
  k.sealed_ms = std::max(cfg_.clock->now_ms(),
                         kept_.empty() ? 0 : kept_.back().sealed_ms + 1);
  k.path = cfg_.path + "-rounds." + std::to_string(k.sealed_ms) + "."
           + std::to_string(am) + "." + std::to_string(al);
  k.metrics = am;
  k.logs = al;
  k.bytes = journal_->bytes();
  if (auto err = journal_->seal(k.path)) {
    log_warning("storage", "cannot keep the rounds file (", render(err),
                "); its acked records are let go");
    count_kept_drop(k);
    return journal_->reset();
  }
  kept_.push_back(std::move(k));
  return caf::none;
}

void sqlite_store::find_kept_rounds() {
  kept_.clear();
  auto slash = cfg_.path.find_last_of('/');
  auto dir = slash == std::string::npos ? std::string(".")
                                        : cfg_.path.substr(0, slash);
  auto prefix = cfg_.path.substr(slash == std::string::npos ? 0 : slash + 1)
                + "-rounds.";
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator(dir, ec)) {
    auto name = e.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0)
      continue;
    // <sealed ms>.<samples>.<lines>, digits only; anything else is not ours.
    int64_t v[3] = {0, 0, 0};
    size_t at = prefix.size();
    bool ok = true;
    for (int i = 0; i < 3 && ok; ++i) {
      auto end = name.find('.', at);
      auto part = name.substr(at, end == std::string::npos ? end : end - at);
      ok = !part.empty() && part.size() <= 18
           && part.find_first_not_of("0123456789") == std::string::npos
           && (i == 2) == (end == std::string::npos);
      if (ok)
        v[i] = std::stoll(part);
      at = end == std::string::npos ? end : end + 1;
    }
    if (!ok)
      continue;
    auto bytes = file_size(e.path().string());
    kept_.push_back({e.path().string(), v[0], v[1], v[2],
                     std::max<int64_t>(0, bytes)});
  }
  std::sort(kept_.begin(), kept_.end(), [](auto& a, auto& b) {
    return a.sealed_ms < b.sealed_ms;
  });
}

void sqlite_store::count_kept_drop(const kept_rounds& k) {
  auto err = sqlite::transaction(db_, [&]() -> caf::error {
    if (auto err = count_drop(drop_kind::metrics_synced, k.metrics))
      return err;
    return count_drop(drop_kind::logs_synced, k.logs);
  });
  if (err)
    log_warning("storage", "cannot count the synced records of ", k.path,
                ": ", render(err));
}

int64_t
sqlite_store::drop_kept_while(const std::function<bool(const kept_rounds&)>& drop) {
  int64_t records = 0;
  while (!kept_.empty() && drop(kept_.front())) {
    auto k = kept_.front();
    cfg_.disk->remove(k.path);
    kept_.erase(kept_.begin());
    count_kept_drop(k);
    records += k.metrics + k.logs;
  }
  return records;
}

int64_t sqlite_store::kept_rounds_bytes() const {
  int64_t n = 0;
  for (auto& k : kept_)
    n += k.bytes;
  return n;
}

caf::error sqlite_store::open_lazy() {
  if (auto err = redo_if_lost())
    return err;
  if (lazy_ || !db_.autocommit())
    return caf::none;
  if (auto err = db_.exec("BEGIN IMMEDIATE"))
    return err;
  lazy_ = true;
  return caf::none;
}

caf::error sqlite_store::commit_lazy() {
  if (!lazy_)
    return caf::none;
  if (auto err = redo_if_lost())
    return err;
  lazy_ = false;
  if (db_.autocommit())
    return caf::none;
  if (auto err = db_.exec("COMMIT")) {
    db_.exec("ROLLBACK");
    // The rounds file still holds every batch and ack: take them again.
    if (auto redo = apply_journal_ops())
      log_error("storage", "cannot take the rounds file's batches again: ",
                render(redo));
    return err;
  }
  ++commits_;
  return caf::none;
}

caf::error sqlite_store::redo_if_lost() {
  // SQLite rolls a transaction back itself on some errors (disk full, I/O).
  if (!lazy_ || !db_.autocommit())
    return caf::none;
  lazy_ = false;
  log_warning("storage", "the tables lost what they held uncommitted; "
                         "taking the rounds file's batches and acks again");
  if (auto err = open_lazy())
    return err;
  return apply_journal_ops();
}

caf::error sqlite_store::apply_journal_ops() {
  if (!journal_)
    return caf::none;
  for (auto& op : journal_->ops()) {
    if (op.kind == 'E') {
      if (auto err = insert_event(op.event))
        return err;
      continue;
    }
    if (op.kind == 'A') {
      int64_t deleted = 0;
      int64_t upto = 0;
      auto& a = op.ack;
      if (auto err = ack_rows(a.stream, a.sequence, a.base, a.defs, a.history,
                              deleted, upto))
        return err;
      continue;
    }
    // A batch the tables hold already, or one acked since, is skipped.
    auto err = enqueue_rows(op.batch);
    if (err && !has_code(err, ec::bad_sequence))
      return err;
  }
  return caf::none;
}

caf::expected<int64_t> sqlite_store::store(const metric_samples& xs) {
  if (journaling())
    return journal_samples(xs);
  return held_store(xs.size(), [&] { return insert_all(xs); },
                    drop_kind::metrics_rejected, points_stored_, held_points_);
}

caf::expected<int64_t>
sqlite_store::held_store(size_t records,
                         const std::function<caf::expected<int64_t>()>& insert,
                         const char* rejected_kind, int64_t& stored,
                         int64_t& held) {
  if (auto err = defer_commits())
    return err;
  auto n = with_room(records, insert, rejected_kind);
  if (!n)
    return n;
  stored += *n;
  held += held_since_ms_ >= 0 ? *n : 0;
  if (auto err = commit_if_due())
    return err;
  return n;
}

sqlite_store::~sqlite_store() {
  if (auto err = commit_pending())
    log_error("storage", "records held back at close are lost: ", render(err));
  if (auto err = commit_lazy())
    log_error("storage", "the rounds file keeps what the tables could not "
                         "commit at close: ", render(err));
  // Acks not written yet: without them the next start resends their batches.
  if (journal_)
    if (auto err = journal_->sync_unwritten())
      log_warning("storage", "acks held back at close are not kept (their "
                             "batches go again, as duplicates): ",
                  render(err));
}

caf::error sqlite_store::defer_commits() {
  // A held transaction SQLite rolled back itself: count what it lost.
  if (held_since_ms_ >= 0 && db_.autocommit())
    commit_pending();
  if (cfg_.limits.commit_interval_ms <= 0 || under_pressure_ || !db_.autocommit())
    return caf::none;
  if (auto err = db_.exec("BEGIN IMMEDIATE"))
    return err;
  held_since_ms_ = cfg_.clock->now_ms();
  return caf::none;
}

caf::error sqlite_store::commit_if_due() {
  if (held_since_ms_ < 0 || under_pressure_)
    return commit_pending();
  if (grouping_
      || cfg_.clock->now_ms() - held_since_ms_ < cfg_.limits.commit_interval_ms)
    return caf::none;
  return commit_pending();
}

bool sqlite_store::begin_group() {
  // The rounds file needs no transaction: the group is one frame.
  if (journaling() && !grouping_ && held_since_ms_ < 0) {
    grouping_ = true;
    ++groups_;
    return true;
  }
  // A held transaction that SQLite rolled back itself: count what it lost.
  if (held_since_ms_ >= 0 && db_.autocommit())
    commit_pending();
  if (grouping_ || cfg_.limits.commit_interval_ms > 0 || under_pressure_
      || !db_.autocommit() || db_.exec("BEGIN IMMEDIATE"))
    return false;
  held_since_ms_ = cfg_.clock->now_ms();
  grouping_ = true;
  ++groups_;
  return true;
}

caf::error sqlite_store::end_group() {
  // What a commit-interval holds is not the group's to commit.
  auto err = grouping_ ? commit_pending() : caf::error{};
  if (!err)
    err = std::exchange(group_error_, caf::error{});
  group_error_ = caf::error{};
  return err;
}

caf::error sqlite_store::commit_pending() {
  // Any commit ends a group; its members learn the outcome from end_group().
  bool group = std::exchange(grouping_, false);
  if (auto err = flush_journal()) {
    if (group)
      group_error_ = err;
    if (held_since_ms_ < 0)
      return err;
  }
  if (held_since_ms_ < 0)
    return caf::none;
  auto points = std::exchange(held_points_, 0);
  auto lines = std::exchange(held_lines_, 0);
  held_since_ms_ = -1;
  // SQLite rolls a transaction back itself on some errors (disk full, I/O).
  caf::error err = db_.autocommit()
                     ? make_error(ec::storage_failed, "the held transaction "
                                                      "was rolled back")
                     : db_.exec("COMMIT");
  if (!err) {
    ++commits_;
    return caf::none;
  }
  if (!db_.autocommit())
    db_.exec("ROLLBACK");
  // Series ids the rollback took back must not be used again.
  series_.clear();
  series_by_id_.clear();
  prepare();
  // Rows of the rollback are gone; counted once the disk takes the count.
  unpersisted_rejected_[drop_kind::metrics_rejected] += points;
  unpersisted_rejected_[drop_kind::logs_rejected] += lines;
  points_stored_ -= points;
  logs_stored_ -= lines;
  last_error_ = render(err);
  log_error("storage", "commit of ", points, " samples and ", lines,
            " log lines held back failed: ", last_error_);
  if (group)
    group_error_ = err;
  return err;
}



void sqlite_store::persist_rejected(const char* kind) {
  auto i = unpersisted_rejected_.find(kind);
  if (i != unpersisted_rejected_.end() && !count_drop(kind, i->second))
    unpersisted_rejected_.erase(i);
}

caf::expected<int64_t>
sqlite_store::with_room(size_t records,
                      const std::function<caf::expected<int64_t>()>& insert,
                      const char* rejected_kind) {
  auto n = insert();
  if (!n && static_cast<ec>(n.error().code()) == ec::disk_full) {
    // Back-pressure: free room by the drop policy, keep the newest data.
    if (!under_pressure_)
      log_warning("storage", "disk full or read-only: ", render(n.error()),
                  "; dropping oldest data to make room");
    under_pressure_ = true;
    // Room is made and retried in commits of their own.
    commit_pending();
    auto need = std::max<int64_t>(64 * 1024,
                                  static_cast<int64_t>(records) * 64);
    // Give back the reserve and the WAL's space so the deletes can be logged.
    release_reserve();
    db_.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    make_room(std::max<int64_t>(0, used_bytes() - need));
    db_.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    n = insert();
  }
  if (!n) {
    ++store_failures_;
    last_error_ = render(n.error());
    if (static_cast<ec>(n.error().code()) == ec::disk_full)
      unpersisted_rejected_[rejected_kind] += static_cast<int64_t>(records);
    return n.error();
  }
  persist_rejected(rejected_kind);
  // Rows in the tables are durable only once committed.
  if (auto err = commit_lazy())
    return err;
  if (!reserve_held_)
    hold_reserve();
  if (under_pressure_ && reserve_held_) {
    under_pressure_ = false;
    log_info("storage", "writes succeed again");
    record_event("storage_recovered", "writes succeed again after disk full");
  }
  last_error_.clear();
  fit_wal_to_disk();
  if (auto dropped = enforce_limits(); !dropped)
    log_warning("storage", "cannot apply caps: ", render(dropped.error()));
  return *n;
}

void sqlite_store::apply(const tier_settings& settings) {
  auto lim = cfg_.limits;
  lim.max_bytes = settings.storage_bytes;
  lim.retention_ms = settings.retention_ms;
  set_limits(lim);
  if (auto n = enforce_limits(); !n)
    log_warning("storage", "cannot apply new caps: ", render(n.error()));
}

void sqlite_store::set_limits(const storage_limits& limits) {
  cfg_.limits = limits;
  last_age_check_ms_ = 0;
  if (auto err = limit_wal())
    log_warning("storage", "cannot size the WAL: ", render(err));
}

int64_t sqlite_store::wal_bound() const {
  // A twentieth of the cap (SQLite's own 4 MB default without one), never
  // below 64 KiB so small stores are not checkpointed on every write.
  auto cap = cfg_.limits.max_bytes;
  return cap > 0 ? std::max<int64_t>(64 * 1024, cap / 20) : 4 * 1024 * 1024;
}

int64_t sqlite_store::checkpoint_bound() const {
  // On a disk with less room than two WAL bounds: a quarter of what is free.
  auto bound = wal_bound();
  if (disk_free_ >= 0 && disk_free_ < 2 * bound)
    bound = std::max<int64_t>(64 * 1024, disk_free_ / 4 / 65536 * 65536);
  return bound;
}

caf::error sqlite_store::limit_wal() {
  if (!db_.is_open())
    return caf::none;
  auto page = try_scalar(db_, "PRAGMA page_size").value_or(4096);
  auto pages = std::max<int64_t>(1, checkpoint_bound()
                                      / std::max<int64_t>(1, page));
  if (auto err = db_.exec("PRAGMA wal_autocheckpoint="
                          + std::to_string(pages)))
    return err;
  // Not shrunk with the disk: the WAL's blocks are where the next write
  // (and the deletes that make room) go when the disk is full.
  if (!try_scalar(db_, "PRAGMA journal_size_limit="
                         + std::to_string(wal_bound())))
    return make_error(ec::storage_failed, "PRAGMA journal_size_limit failed");
  return caf::none;
}

void sqlite_store::fit_wal_to_disk() {
  auto dir = cfg_.path.substr(0, cfg_.path.find_last_of('/') + 1);
  auto free = cfg_.disk->free_bytes(dir);
  if (free < 0)
    return;
  auto before = checkpoint_bound();
  disk_free_ = free;
  if (checkpoint_bound() == before)
    return;
  // The disk is short (or no longer): checkpoint sooner, and now.
  if (auto err = limit_wal())
    log_warning("storage", "cannot size the WAL: ", render(err));
  db_.exec("PRAGMA wal_checkpoint(PASSIVE)");
}

int64_t sqlite_store::used_bytes() {
  auto pragma = [this](const char* sql) -> int64_t {
    auto st = db_.prepare(sql);
    if (!st)
      return 0;
    auto row = st->step();
    return row && *row ? st->column_int(0) : 0;
  };
  auto pages = pragma("PRAGMA page_count") - pragma("PRAGMA freelist_count");
  return pages * pragma("PRAGMA page_size") + kept_rounds_bytes();
}

caf::error sqlite_store::count_drop(const char* kind, int64_t n) {
  if (n <= 0)
    return caf::none;
  auto st = db_.prepare("INSERT INTO drops (kind, count) VALUES (?1, ?2) "
                        "ON CONFLICT (kind) DO UPDATE SET count = count + ?2");
  if (!st)
    return st.error();
  st->bind(1, std::string_view{kind}).bind(2, n);
  return st->run();
}

int64_t sqlite_store::unsynced_events(const char* sql, int64_t a) {
  auto st = db_.prepare(sql);
  if (!st)
    return 0;
  st->bind(1, a).bind(2, stream_cursors(db_, events_stream).second);
  auto row = st->step();
  return row && *row ? st->column_int(0) : 0;
}

caf::error sqlite_store::count_refused(const std::string& kind, int64_t n) {
  // Committed now, as an event is: the count is declared to the cloud.
  if (journaling())
    if (auto err = open_lazy())
      return err;
  if (auto err = count_drop(kind.c_str(), n))
    return err;
  return commit_lazy();
}

flow_counts sqlite_store::load_flow() {
  auto st = db_.prepare("SELECT value FROM meta WHERE key = 'delivery_flow'");
  if (!st)
    return {};
  auto row = st->step();
  if (!row || !*row)
    return {};
  return decode_flow(st->column_text(0));
}

caf::error sqlite_store::save_flow(const flow_counts& x) {
  // No commit of its own (one per batch cut would add a page write each):
  // it commits with the next one; a crash before may lose the last counts.
  if (journaling())
    if (auto err = open_lazy())
      return err;
  auto st = db_.cached("INSERT INTO meta (key, value) VALUES "
                       "('delivery_flow', ?1) ON CONFLICT (key) DO UPDATE "
                       "SET value = ?1");
  if (!st)
    return st.error();
  return st->bind(1, encode_flow(x)).run();
}

bool sqlite_store::hold_reserve() {
  if (cfg_.limits.reserve_bytes <= 0)
    return reserve_held_ = true;
  reserve_held_ = cfg_.disk->allocate(cfg_.path + ".reserve",
                                      cfg_.limits.reserve_bytes);
  return reserve_held_;
}

void sqlite_store::release_reserve() {
  cfg_.disk->remove(cfg_.path + ".reserve");
  reserve_held_ = false;
}

std::map<std::string, int64_t> sqlite_store::drops() {
  std::map<std::string, int64_t> out;
  auto st = db_.prepare("SELECT kind, count FROM drops");
  if (!st)
    return out;
  for (;;) {
    auto row = st->step();
    if (!row || !*row)
      break;
    out[st->column_text(0)] = st->column_int(1);
  }
  out.emplace(drop_kind::metrics_rejected, 0); // listed even when 0
  for (auto& [kind, n] : unpersisted_rejected_)
    out[kind] += n;
  return out;
}

caf::error sqlite_store::insert_event(const journal_event& e) {
  // id 0: the table gives it (AUTOINCREMENT); a replayed one keeps its own.
  auto st = db_.cached(e.id > 0 ? "INSERT OR IGNORE INTO events (id, ts, kind, "
                                  "message) VALUES (?1, ?2, ?3, ?4)"
                                : "INSERT INTO events (ts, kind, message) "
                                  "VALUES (?2, ?3, ?4)");
  if (!st)
    return st.error();
  if (e.id > 0)
    st->bind(1, e.id);
  return st->bind(2, e.ts_ms).bind(3, e.kind).bind(4, e.message).run();
}

caf::error sqlite_store::record_event(const std::string& kind,
                                    const std::string& message) {
  journal_event e{0, cfg_.clock->now_ms(), kind, message};
  if (journaling() && !open_lazy()) {
    // Its synced frame makes it durable; the tables take it uncommitted.
    auto err = insert_event(e);
    if (!err) {
      e.id = db_.last_insert_rowid();
      // Without the frame the commit must keep it.
      if (journal_->append(e))
        err = commit_lazy();
    }
    if (err) {
      ++unpersisted_rejected_[drop_kind::events_rejected];
      return err;
    }
    persist_rejected(drop_kind::events_rejected);
    return caf::none;
  }
  auto err = insert_event(e);
  // An event that cannot be kept is lost: count it (persisted when the
  // disk has room again).
  if (err) {
    ++unpersisted_rejected_[drop_kind::events_rejected];
    return err;
  }
  persist_rejected(drop_kind::events_rejected);
  // An event is data to sync: it does not wait for the rounds file's fold.
  return commit_lazy();
}

namespace {

// A table of rows that batches are cut from, and its drop counters.
struct row_stream {
  const char* stream;
  const char* table;
  const char* synced;
  const char* queued_copy;
  const char* unsynced;
};

const row_stream row_streams[] = {
  {"metrics", "metrics", drop_kind::metrics_synced,
   drop_kind::metrics_queued_copy, drop_kind::metrics_unsynced},
  {"logs", "logs", drop_kind::logs_synced, drop_kind::logs_queued_copy,
   drop_kind::logs_unsynced},
};

} // namespace

caf::expected<int64_t> sqlite_store::drop_oldest_batch() {
  auto oldest = db_.prepare("SELECT stream, sequence, points FROM sync_queue "
                            "WHERE stream != 'events' "
                            "ORDER BY created_at, sequence LIMIT 1");
  if (!oldest)
    return oldest.error();
  auto row = oldest->step();
  if (!row)
    return row.error();
  if (!*row)
    return int64_t{0};
  auto stream = oldest->column_text(0);
  auto seq = oldest->column_int(1);
  auto points = oldest->column_int(2);
  auto del = db_.prepare("DELETE FROM sync_queue WHERE stream = ?1 AND "
                         "sequence = ?2");
  if (!del)
    return del.error();
  del->bind(1, stream).bind(2, seq);
  if (auto err = del->run())
    return err;
  log_warning("storage", "dropped unsynced batch ", seq, " of ", stream, " (",
              points, " records) to stay within the cap");
  if (auto err = count_drop(drop_kind::batches_unsynced, 1))
    return err;
  if (auto err = count_drop(drop_kind::lost_batches(stream).c_str(), 1))
    return err;
  if (auto err = count_drop(drop_kind::unsynced_kind(stream), points))
    return err;
  return int64_t{1};
}

caf::expected<int64_t>
sqlite_store::drop_batches_before(const char* stream, const char* kind,
                                  int64_t cutoff_ms) {
  auto lost = db_.prepare("SELECT count(*), coalesce(sum(points), 0) FROM "
                          "sync_queue WHERE created_at < ?1 AND stream = ?2");
  if (!lost)
    return lost.error();
  lost->bind(1, cutoff_ms).bind(2, std::string_view{stream});
  auto row = lost->step();
  if (!row)
    return row.error();
  auto batches = *row ? lost->column_int(0) : 0;
  auto points = *row ? lost->column_int(1) : 0;
  lost->reset();
  if (batches == 0)
    return int64_t{0};
  auto gone = db_.prepare("DELETE FROM sync_queue WHERE created_at < ?1 "
                          "AND stream = ?2");
  if (!gone)
    return gone.error();
  gone->bind(1, cutoff_ms).bind(2, std::string_view{stream});
  if (auto err = gone->run())
    return err;
  if (auto err = count_drop(drop_kind::batches_unsynced, batches))
    return err;
  if (auto err = count_drop(drop_kind::lost_batches(stream).c_str(), batches))
    return err;
  if (auto err = count_drop(kind, points))
    return err;
  return batches;
}

caf::expected<int64_t> sqlite_store::drop_chunk(int64_t rows) {
  int64_t dropped = 0;
  auto err = sqlite::transaction(db_, [&]() -> caf::error {
    auto delete_rows = [&](const row_stream& rs, const char* where,
                           int64_t upto, const char* kind) -> caf::error {
      auto st = db_.prepare(std::string("DELETE FROM ") + rs.table
                            + " WHERE id IN (SELECT id FROM " + rs.table
                            + " WHERE " + where + " ORDER BY id LIMIT ?2)");
      if (!st)
        return st.error();
      st->bind(1, upto).bind(2, rows);
      if (auto err = st->run())
        return err;
      dropped = db_.changes();
      return count_drop(kind, dropped);
    };
    // 1. Rows the cloud already holds.
    for (auto& rs : row_streams) {
      auto acked = stream_cursors(db_, rs.stream).first;
      if (auto err = delete_rows(rs, "id <= ?1", acked, rs.synced))
        return err;
      if (dropped > 0)
        return caf::none;
    }
    // 2. Rows whose data also sits in a queued batch.
    for (auto& rs : row_streams) {
      auto batched = stream_cursors(db_, rs.stream).second;
      if (auto err = delete_rows(rs, "id <= ?1", batched, rs.queued_copy))
        return err;
      if (dropped > 0)
        return caf::none;
    }
    // 3. The oldest queued batch of metrics or logs: its records are lost.
    auto batch = drop_oldest_batch();
    if (!batch)
      return batch.error();
    if (*batch > 0) {
      dropped = *batch;
      return caf::none;
    }
    // 4. The oldest rows no batch covers yet: lost.
    for (auto& rs : row_streams) {
      auto batched = stream_cursors(db_, rs.stream).second;
      if (auto err = keep_id_floor(db_, rs.table))
        return err;
      if (auto err = delete_rows(rs, "id > ?1", batched, rs.unsynced))
        return err;
      if (dropped > 0)
        return caf::none;
    }
    // 5. Events, last of all; those no batch covers yet are lost.
    auto lost = unsynced_events(
      "SELECT count(*) FROM (SELECT id FROM events ORDER BY id LIMIT ?1) "
      "WHERE id > ?2", rows);
    auto ev = db_.prepare("DELETE FROM events WHERE id IN (SELECT id FROM "
                          "events ORDER BY id LIMIT ?1)");
    if (!ev)
      return ev.error();
    ev->bind(1, rows);
    if (auto err = ev->run())
      return err;
    dropped = db_.changes();
    if (auto err = count_drop(drop_kind::events_unsynced, lost))
      return err;
    return count_drop(drop_kind::events, dropped);
  });
  if (err)
    return err;
  return dropped;
}

caf::expected<int64_t> sqlite_store::drop_older_than(int64_t cutoff_ms) {
  // Records past the cutoff in the rounds file go where they can be dropped.
  if (journal_) {
    auto& ms = journal_->metrics();
    auto& ls = journal_->logs();
    if ((!ms.empty() && ms.front().ts_ms < cutoff_ms)
        || (!ls.empty() && ls.front().ts_ns / 1000000 < cutoff_ms))
      if (auto err = fold_journal())
        log_warning("storage", "rounds file kept: ", render(err));
  }
  int64_t dropped = 0;
  auto err = sqlite::transaction(db_, [&]() -> caf::error {
    auto del = [&](const std::string& sql, int64_t a, int64_t b,
                   const char* kind) -> caf::error {
      auto st = db_.prepare(sql);
      if (!st)
        return st.error();
      st->bind(1, a).bind(2, b);
      if (auto err = st->run())
        return err;
      auto n = db_.changes();
      dropped += n;
      return count_drop(kind, n);
    };
    for (auto& rs : row_streams) {
      auto [acked, batched] = stream_cursors(db_, rs.stream);
      // Log timestamps are nanoseconds.
      auto cutoff = rs.table == std::string_view{"logs"}
                      ? cutoff_ms * 1000000
                      : cutoff_ms;
      // Rows are stored in time order: when the oldest row of a range is
      // new enough, the whole range is, and the scan (there is no ts index)
      // is skipped; a once-a-minute check must not read a 100 MB table.
      auto oldest_after = [&](int64_t after) -> int64_t {
        auto st = db_.prepare(std::string("SELECT ts FROM ") + rs.table
                              + " WHERE id > ?1 ORDER BY id LIMIT 1");
        if (!st)
          return 0;
        st->bind(1, after);
        auto row = st->step();
        return row && *row ? st->column_int(0) : cutoff;
      };
      auto sql = std::string("DELETE FROM ") + rs.table + " WHERE ts < ?1 AND ";
      if (oldest_after(0) < cutoff) {
        if (auto err = del(sql + "id <= ?2", cutoff, acked, rs.synced))
          return err;
        if (auto err = del(sql + "id <= ?2", cutoff, batched, rs.queued_copy))
          return err;
      }
      if (oldest_after(batched) < cutoff) {
        if (auto err = keep_id_floor(db_, rs.table))
          return err;
        if (auto err = del(sql + "id > ?2", cutoff, batched, rs.unsynced))
          return err;
      }
    }
    // Queued batches cut before the cutoff: count their records as lost.
    for (auto& rs : row_streams) {
      auto n = drop_batches_before(rs.stream, rs.unsynced, cutoff_ms);
      if (!n)
        return n.error();
      dropped += *n;
    }
    auto ev_cutoff = cfg_.clock->now_ms() - cfg_.limits.events_retention_ms;
    if (cfg_.limits.events_retention_ms > 0) {
      auto lost = unsynced_events("SELECT count(*) FROM events WHERE ts < ?1 "
                                  "AND id > ?2", ev_cutoff);
      if (auto err = count_drop(drop_kind::events_unsynced, lost))
        return err;
      if (auto err = del("DELETE FROM events WHERE ts < ?1 AND ?2 = ?2",
                         ev_cutoff, 0, drop_kind::events))
        return err;
    }
    return caf::none;
  });
  if (err)
    return err;
  // A kept rounds file sealed before the cutoff holds older records only.
  dropped += drop_kept_while(
    [cutoff_ms](const kept_rounds& k) { return k.sealed_ms < cutoff_ms; });
  return dropped;
}

caf::expected<int64_t> sqlite_store::make_room(int64_t target_bytes) {
  int64_t dropped = 0;
  auto used = used_bytes();
  // Chunks of ~1% of the rows a full store holds, at least 256.
  auto chunk = std::max<int64_t>(256, cfg_.limits.max_bytes / 40 / 100);
  // Kept rounds files hold only synced records: they go first, oldest first.
  dropped += drop_kept_while([&](const kept_rounds&) {
    return (used = used_bytes()) > target_bytes;
  });
  while (used > target_bytes) {
    auto n = drop_chunk(chunk);
    // A delete is logged too: on a full disk, smaller ones fit the reserve.
    if (!n && has_code(n.error(), ec::disk_full) && chunk > 16) {
      chunk /= 2;
      continue;
    }
    if (!n)
      return n.error();
    if (*n == 0)
      break;
    dropped += *n;
    used = used_bytes();
  }
  return dropped;
}

caf::expected<int64_t> sqlite_store::enforce_limits() {
  int64_t dropped = 0;
  auto now = cfg_.clock->now_ms();
  auto& lim = cfg_.limits;
  // Age caps need checking once a minute of (injected) time, not per write.
  if (lim.retention_ms > 0 && now - last_age_check_ms_ >= 60000) {
    last_age_check_ms_ = now;
    auto n = drop_older_than(now - lim.retention_ms);
    if (!n)
      return n.error();
    dropped += *n;
  }
  if (lim.max_bytes > 0 && used_bytes() > lim.max_bytes) {
    // Hysteresis: drop to 95% so every write does not trigger a delete.
    auto n = make_room(lim.max_bytes / 100 * 95);
    if (!n)
      return n.error();
    dropped += *n;
  }
  if (dropped > 0)
    record_event("storage_drop",
                 "dropped " + std::to_string(dropped)
                   + " records to stay within the caps (see drop counters)");
  return dropped;
}

caf::expected<int64_t> sqlite_store::store_logs(const log_lines& xs,
                                                const source_cursors& cursors) {
  if (journaling())
    return journal_lines(xs, cursors);
  auto insert = [&]() -> caf::expected<int64_t> {
    auto err = sqlite::transaction(db_, [&]() -> caf::error {
      auto st = db_.prepare("INSERT INTO logs (ts, labels, line, id) "
                            "VALUES (?1, ?2, ?3, ?4)");
      if (!st)
        return st.error();
      for (auto& x : xs) {
        st->reset().bind(1, x.timestamp_ns)
          .bind_blob(2, encode_labels(x.labels)).bind(3, x.line)
          .bind(4, next_log_id_++);
        if (auto err = st->run())
          return err;
      }
      return upsert_cursors(cursors);
    });
    if (err)
      return err;
    return static_cast<int64_t>(xs.size());
  };
  return held_store(xs.size(), insert, drop_kind::logs_rejected, logs_stored_,
                    held_lines_);
}

caf::error sqlite_store::upsert_cursors(const source_cursors& xs) {
  if (xs.empty())
    return caf::none;
  auto st = db_.cached("INSERT INTO source_cursors (key, generation, value) "
                       "VALUES (?1, ?2, ?3) ON CONFLICT (key) DO UPDATE SET "
                       "generation = excluded.generation, value = "
                       "excluded.value WHERE excluded.generation > "
                       "source_cursors.generation");
  if (!st)
    return st.error();
  for (auto& x : xs) {
    st->reset().bind(1, x.key).bind(2, x.generation).bind_blob(3, x.value);
    if (auto err = st->run())
      return err;
  }
  return caf::none;
}

caf::expected<source_cursors> sqlite_store::cursors() {
  source_cursors out;
  auto st = db_.cached("SELECT key, generation, value FROM source_cursors");
  if (!st)
    return st.error();
  st->reset();
  auto err = sqlite::each_row(*st, [&out](sqlite::statement& row) {
    out.push_back(source_cursor{row.column_text(0), row.column_int(1),
                                row.column_blob(2)});
  });
  st->reset();
  if (err)
    return err;
  // The rounds file holds what the tables were not given yet.
  if (journal_)
    for (auto& c : journal_->cursors())
      keep_newest(out, c);
  return out;
}

namespace {

// `rows` (from the tables, ids ascending) merged with the records of the
// rounds file after `after`, the first `max` by id: a fallback to the
// tables can give a row an id above some the file still holds.
template <class Row, class Held>
void merge_after(std::vector<Row>& rows, const Held& held, int64_t after,
                 int64_t max) {
  auto first = std::upper_bound(held.begin(), held.end(), after,
                                [](int64_t id, const Row& r) {
                                  return id < r.id;
                                });
  auto mid = rows.size();
  for (auto i = first; i != held.end() && static_cast<int64_t>(rows.size() - mid) < max; ++i)
    rows.push_back(*i);
  std::inplace_merge(rows.begin(), rows.begin() + mid, rows.end(),
                     [](const Row& a, const Row& b) { return a.id < b.id; });
  if (static_cast<int64_t>(rows.size()) > max)
    rows.resize(static_cast<size_t>(max));
}

} // namespace

caf::expected<unbatched_points>
sqlite_store::fetch(const std::string& stream, int64_t max, int64_t max_bytes) {
  if (auto err = check_stream(stream))
    return err;
  // Cursors the tables lost with their open transaction come back first.
  if (auto err = redo_if_lost())
    return err;
  unbatched_points out;
  int64_t batched_upto = 0;
  select_state_.reset().bind(1, stream);
  auto row = select_state_.step();
  if (!row)
    return row.error();
  if (*row) {
    out.next_sequence = select_state_.column_int(0);
    batched_upto = select_state_.column_int(1);
  }
  select_state_.reset();
  out.last_id = batched_upto;
  out.epoch = epoch_;
  if (stream != metrics_stream)
    return fetch_rows(stream, batched_upto, max, max_bytes, std::move(out));
  std::vector<journal_metric> rows;
  select_unbatched_.reset().bind(1, batched_upto).bind(2, max);
  for (;;) {
    auto more = select_unbatched_.step();
    if (!more)
      return more.error();
    if (!*more)
      break;
    rows.push_back(journal_metric{
      select_unbatched_.column_int(0), select_unbatched_.column_int(1),
      select_unbatched_.column_int(2),
      static_cast<uint64_t>(select_unbatched_.column_int(3))});
  }
  select_unbatched_.reset();
  if (journal_)
    merge_after(rows, journal_->metrics(), batched_upto, max);
  // How many rows fit the byte bound first: the samples are then sized once
  // (a doubling vector held twice its samples' structs at its peak).
  size_t take = 0;
  int64_t bytes = 0;
  for (; take < rows.size(); ++take) {
    auto i = series_by_id_.find(rows[take].series_id);
    if (i != series_by_id_.end())
      bytes += sample_bytes(i->second.first, i->second.second);
    if (take > 0 && bytes > max_bytes) {
      out.full = true;
      break;
    }
  }
  out.samples.reserve(take);
  for (size_t k = 0; k < take; ++k) {
    auto& r = rows[k];
    metric_sample s;
    if (auto i = series_by_id_.find(r.series_id); i != series_by_id_.end()) {
      s.name = i->second.first;
      s.labels = i->second.second;
    }
    out.last_id = r.id;
    s.timestamp_ms = r.ts_ms;
    s.value = double_of(r.bits);
    out.samples.push_back(std::move(s));
  }
  return out;
}

caf::expected<unbatched_points>
sqlite_store::fetch_rows(const std::string& stream, int64_t after, int64_t max,
                         int64_t max_bytes, unbatched_points out) {
  bool logs = stream == logs_stream;
  auto st = db_.prepare(logs ? "SELECT id, ts, labels, line FROM logs "
                               "WHERE id > ?1 ORDER BY id LIMIT ?2"
                             : "SELECT id, ts, kind, message FROM events "
                               "WHERE id > ?1 ORDER BY id LIMIT ?2");
  if (!st)
    return st.error();
  st->bind(1, after).bind(2, max);
  std::vector<journal_log> lines;
  // Rows are read only up to the byte bound: a row past it is not taken.
  int64_t bytes = 0;
  bool cut = false;
  int64_t table_last = after;
  if (auto err = sqlite::each_row_while(*st, [&](sqlite::statement& r) {
        auto row_bytes = static_cast<int64_t>(
          sizeof(event_record) + r.column_bytes(2) + r.column_bytes(3));
        bool empty = lines.empty() && out.events.empty();
        if (!empty && bytes + row_bytes > max_bytes) {
          cut = true;
          return false;
        }
        bytes += row_bytes;
        table_last = r.column_int(0);
        if (logs) {
          lines.push_back(journal_log{r.column_int(0), r.column_int(1),
                                      r.column_blob(2), r.column_text(3)});
          return true;
        }
        event_record e;
        e.timestamp_ms = r.column_int(1);
        e.kind = r.column_text(2);
        e.message = r.column_text(3);
        out.events.push_back(std::move(e));
        return true;
      }))
    return err;
  if (!logs) {
    out.last_id = table_last;
    out.full = cut;
    return out;
  }
  // A cut table read ends the batch where it stopped: rows of the rounds
  // file past it would skip the table's next ones.
  auto table_end = cut ? table_last : std::numeric_limits<int64_t>::max();
  if (journal_)
    merge_after(lines, journal_->logs(), after, max);
  out.full = cut;
  bytes = 0;
  for (auto& l : lines) {
    if (l.id > table_end) {
      out.full = true;
      break;
    }
    log_line x{decode_labels(l.labels), l.ts_ns, std::move(l.line)};
    bytes += record_bytes(x);
    if (!out.logs.empty() && bytes > max_bytes) {
      out.full = true;
      break;
    }
    out.last_id = l.id;
    out.logs.push_back(std::move(x));
  }
  return out;
}

caf::error sqlite_store::enqueue_rows(const queued_batch& b) {
  return sqlite::transaction(db_, [&]() -> caf::error {
    select_state_.reset().bind(1, b.stream);
    auto row = select_state_.step();
    if (!row)
      return row.error();
    int64_t expected_seq = *row ? select_state_.column_int(0) : 1;
    select_state_.reset();
    if (b.sequence < expected_seq) {
      // The same records re-encoded (a new series session): replace them.
      auto up = db_.prepare("UPDATE sync_queue SET payload = ?3 WHERE "
                            "stream = ?1 AND sequence = ?2 AND points = ?4 "
                            "AND last_id = ?5");
      if (!up)
        return up.error();
      up->bind(1, b.stream).bind(2, b.sequence).bind_blob(3, b.body)
        .bind(4, b.points).bind(5, b.last_id);
      if (auto err = up->run())
        return err;
      if (db_.changes() == 1)
        return caf::none;
    }
    if (b.sequence != expected_seq)
      return make_error(ec::bad_sequence,
                        "batch " + std::to_string(b.sequence) + " of "
                          + b.stream + " but the next is "
                          + std::to_string(expected_seq));
    insert_queue_.reset()
      .bind(1, b.stream)
      .bind(2, b.sequence)
      .bind(3, b.last_id)
      .bind(4, b.points)
      .bind(5, b.created_ms)
      .bind_blob(6, b.body);
    if (auto err = insert_queue_.run())
      return err;
    update_batched_.reset().bind(1, b.stream).bind(2, b.sequence + 1).bind(
      3, b.last_id);
    return update_batched_.run();
  });
}

caf::expected<int64_t> sqlite_store::enqueue(const queued_batch& b) {
  // The batch may cover records still waiting for their frame.
  if (auto err = flush_journal())
    return err;
  caf::error err;
  if (journaling()) {
    // Its frame in the rounds file makes it durable; the tables hold it
    // uncommitted until the file is folded (see commit_lazy).
    err = open_lazy();
    if (!err)
      err = db_.exec("SAVEPOINT enqueue");
    if (!err) {
      err = enqueue_rows(b);
      if (!err)
        err = journal_->append(b);
      if (err && !db_.autocommit())
        db_.exec("ROLLBACK TO enqueue");
      if (!db_.autocommit())
        db_.exec("RELEASE enqueue");
    }
  } else {
    if (auto e = commit_lazy())
      return e;
    err = enqueue_rows(b);
    // The batch is sent next: it and the rows it covers must be on disk.
    if (!err)
      err = commit_pending();
  }
  if (err) {
    last_error_ = render(err);
    return err;
  }
  ++batches_enqueued_;
  return b.sequence;
}

caf::expected<queued_batches> sqlite_store::pending(const std::string& stream,
                                                  int64_t max) {
  if (auto err = redo_if_lost())
    return err;
  queued_batches out;
  select_pending_.reset().bind(1, stream).bind(2, max);
  for (;;) {
    auto more = select_pending_.step();
    if (!more)
      return more.error();
    if (!*more)
      break;
    queued_batch b;
    b.stream = stream;
    b.sequence = select_pending_.column_int(0);
    b.last_id = select_pending_.column_int(1);
    b.points = select_pending_.column_int(2);
    b.created_ms = select_pending_.column_int(3);
    b.retry_count = select_pending_.column_int(4);
    b.body = select_pending_.column_blob(5);
    out.push_back(std::move(b));
  }
  select_pending_.reset();
  return out;
}

caf::error sqlite_store::ack_rows(const std::string& stream, int64_t sequence,
                                  int64_t base, const metric_samples& defs,
                                  const std::string& history,
                                  int64_t& deleted, int64_t& acked_upto) {
  return sqlite::transaction(db_, [&]() -> caf::error {
    auto upto = db_.prepare("SELECT max(last_id) FROM sync_queue "
                            "WHERE stream = ?1 AND sequence <= ?2");
    if (!upto)
      return upto.error();
    upto->bind(1, stream).bind(2, sequence);
    auto row = upto->step();
    if (!row)
      return row.error();
    int64_t last_id = *row && !upto->column_is_null(0) ? upto->column_int(0)
                                                         : 0;
    acked_upto = last_id;
    delete_acked_.reset().bind(1, stream).bind(2, sequence);
    if (auto err = delete_acked_.run())
      return err;
    deleted = db_.changes();
    update_acked_.reset().bind(1, stream).bind(2, sequence).bind(3, last_id);
    if (auto err = update_acked_.run())
      return err;
    // The series the acked batch defined are now known to the cloud.
    if (deleted == 0 || stream != metrics_stream)
      return caf::none;
    return replace_session(stream, base, defs, history);
  });
}

caf::expected<int64_t> sqlite_store::ack(const std::string& stream,
                                       int64_t sequence, int64_t base,
                                       const metric_samples& defs,
                                       const std::string& history) {
  int64_t deleted = 0;
  int64_t acked_upto = 0;
  auto err = journaling() ? open_lazy() : caf::error{};
  if (!err)
    err = ack_rows(stream, sequence, base, defs, history, deleted, acked_upto);
  // Its frame is synced with the next one: a lost ack is a resend.
  if (!err && lazy_ && deleted > 0)
    if (auto e = journal_->append(journal_ack{stream, sequence, base, defs,
                                              history}))
      log_warning("storage", "ack kept in memory only: ", render(e));
  // Not committed here: an ack lost with what is held only means the
  // batch is sent again and the cloud acks the duplicate.
  if (err) {
    last_error_ = render(err);
    return err;
  }
  batches_acked_ += deleted;
  // The cloud holds them: the rounds file lets them go (it keeps no copy of
  // synced records, unlike the tables).
  if (journal_ && deleted > 0
      && (stream == metrics_stream || stream == logs_stream))
    if (auto e = journal_->forget_upto(stream == logs_stream, acked_upto))
      log_warning("storage", "rounds file: ", render(e));
  return deleted;
}

caf::error sqlite_store::replace_session(const std::string& stream, int64_t base,
                                       const metric_samples& defs,
                                       const std::string& history) {
  auto del = db_.prepare("DELETE FROM wire_series WHERE stream = ?1 "
                         "AND idx >= ?2");
  if (!del)
    return del.error();
  del->bind(1, stream).bind(2, base);
  if (auto err = del->run())
    return err;
  auto ins = db_.prepare("INSERT INTO wire_series (stream, idx, name, labels) "
                         "VALUES (?1, ?2, ?3, ?4)");
  if (!ins)
    return ins.error();
  auto idx = base;
  for (auto& d : defs) {
    ins->reset().bind(1, stream).bind(2, idx++).bind(3, d.name)
      .bind_blob(4, encode_labels(d.labels));
    if (auto err = ins->run())
      return err;
  }
  auto hist = db_.prepare("INSERT OR REPLACE INTO wire_history (stream, "
                          "history) VALUES (?1, ?2)");
  if (!hist)
    return hist.error();
  hist->bind(1, stream).bind_blob(2, history);
  return hist->run();
}

caf::expected<wire_session> sqlite_store::session(const std::string& stream) {
  auto st = db_.prepare("SELECT name, labels FROM wire_series WHERE "
                        "stream = ?1 ORDER BY idx");
  if (!st)
    return st.error();
  st->bind(1, stream);
  wire_session out;
  if (auto err = sqlite::each_row(*st, [&](sqlite::statement& r) {
        metric_sample x;
        x.name = r.column_text(0);
        x.labels = decode_labels(r.column_blob(1));
        out.series.push_back(std::move(x));
      }))
    return err;
  auto hist = db_.prepare("SELECT history FROM wire_history WHERE stream = ?1");
  if (!hist)
    return hist.error();
  hist->bind(1, stream);
  auto row = hist->step();
  if (!row)
    return row.error();
  if (*row)
    out.history = hist->column_blob(0);
  return out;
}

caf::expected<int64_t> sqlite_store::discard(const std::string& stream,
                                           int64_t sequence) {
  int64_t points = 0;
  int64_t deleted = 0;
  auto err = sqlite::transaction(db_, [&]() -> caf::error {
    auto sel = db_.prepare("SELECT points FROM sync_queue WHERE stream = ?1 "
                           "AND sequence = ?2");
    if (!sel)
      return sel.error();
    sel->bind(1, stream).bind(2, sequence);
    auto row = sel->step();
    if (!row)
      return row.error();
    if (!*row)
      return caf::none;
    points = sel->column_int(0);
    auto del = db_.prepare("DELETE FROM sync_queue WHERE stream = ?1 AND "
                           "sequence = ?2");
    if (!del)
      return del.error();
    del->bind(1, stream).bind(2, sequence);
    if (auto err = del->run())
      return err;
    deleted = db_.changes();
    if (auto err = count_drop(drop_kind::batches_rejected, 1))
      return err;
    if (auto err = count_drop(drop_kind::lost_batches(stream).c_str(), 1))
      return err;
    return count_drop(drop_kind::unsynced_kind(stream), points);
  });
  if (err) {
    last_error_ = render(err);
    return err;
  }
  if (deleted > 0)
    record_event("batch_rejected",
                 "the cloud refused batch " + std::to_string(sequence) + " of "
                   + stream + " for good; " + std::to_string(points)
                   + " records dropped");
  return points;
}

namespace {

// The meta row save_settings writes; none (version 0) when absent or garbled.
caf::expected<cloud_settings> settings_of(sqlite::database& db) {
  cloud_settings out;
  auto st = db.prepare("SELECT value FROM meta WHERE key = 'cloud_settings'");
  if (!st)
    return st.error();
  auto row = st->step();
  if (!row)
    return row.error();
  if (!*row)
    return out;
  std::istringstream in(st->column_text(0));
  in >> out.version >> out.batch_size >> out.sync_interval_ms
    >> out.retention_ms >> out.zstd_level;
  if (!in)
    return cloud_settings{};
  return out;
}

} // namespace

caf::expected<cloud_settings> sqlite_store::load_settings() {
  return settings_of(db_);
}

caf::expected<cloud_settings> read_cloud_settings(const std::string& path) {
  auto db = sqlite::database::open_readonly(path);
  if (!db)
    return db.error();
  return settings_of(*db);
}

caf::error sqlite_store::save_settings(const cloud_settings& x) {
  auto st = db_.prepare("INSERT INTO meta (key, value) VALUES "
                        "('cloud_settings', ?1) ON CONFLICT (key) DO UPDATE "
                        "SET value = ?1");
  if (!st)
    return st.error();
  std::ostringstream out;
  out << x.version << ' ' << x.batch_size << ' ' << x.sync_interval_ms << ' '
      << x.retention_ms << ' ' << x.zstd_level;
  st->bind(1, out.str());
  if (auto err = st->run())
    return err;
  if (auto err = commit_lazy())
    return err;
  return commit_pending();
}

caf::error sqlite_store::note_retry(const std::string& stream,
                                  int64_t sequence, int64_t next_retry_ms) {
  // A retry count lost with a crash is harmless: no commit of its own.
  if (journaling())
    if (auto err = open_lazy())
      return err;
  auto st = db_.prepare("UPDATE sync_queue SET retry_count = retry_count + 1, "
                        "next_retry = ?3 WHERE stream = ?1 AND sequence = ?2");
  if (!st)
    return st.error();
  return st->bind(1, stream).bind(2, sequence).bind(3, next_retry_ms).run();
}

caf::error sqlite_store::checkpoint() {
  if (auto err = commit_pending())
    return err;
  if (auto err = commit_lazy())
    return err;
  return db_.exec("PRAGMA wal_checkpoint(TRUNCATE)");
}

actor_stats sqlite_store::stats() {
  actor_stats out;
  out.name = "storage";
  out.state = last_error_.empty() ? "ok" : "last error: " + last_error_;
  out.counters["points_stored"] = points_stored_;
  out.counters["store_failures"] = store_failures_;
  out.counters["batches_enqueued"] = batches_enqueued_;
  out.counters["batches_acked"] = batches_acked_;
  out.counters["series"] = static_cast<int64_t>(series_.size());
  out.counters["moved_aside"] = moved_aside_;
  out.counters["used_bytes"] = used_bytes();
  out.counters["max_bytes"] = cfg_.limits.max_bytes;
  out.counters["under_pressure"] = under_pressure_ ? 1 : 0;
  out.counters["commits"] = commits_;
  out.counters["commit_interval_ms"] = cfg_.limits.commit_interval_ms;
  out.counters["group_window_ms"] = cfg_.limits.group_window_ms;
  out.counters["groups"] = groups_;
  out.counters["uncommitted_points"] = held_points_;
  out.counters["uncommitted_logs"] = held_lines_;
  for (auto& kv : drops())
    out.counters["dropped_" + kv.first] = kv.second;
  auto count = [this](const char* sql) -> int64_t {
    auto st = db_.prepare(sql);
    if (!st)
      return -1;
    auto row = st->step();
    return row && *row ? st->column_int(0) : -1;
  };
  // Records of the rounds file are held too.
  int64_t jm = journal_ ? static_cast<int64_t>(journal_->metrics().size()) : 0;
  int64_t jl = journal_ ? static_cast<int64_t>(journal_->logs().size()) : 0;
  auto jm_unbatched = journal_unbatched(false);
  auto jl_unbatched = journal_unbatched(true);
  out.counters["rounds_file_bytes"] = journal_ ? journal_->bytes() : 0;
  out.counters["rounds_file_frames"] = journal_ ? journal_->frames() : 0;
  out.counters["rounds_file_points"] = jm;
  out.counters["rounds_file_logs"] = jl;
  out.counters["kept_rounds_files"] = static_cast<int64_t>(kept_.size());
  out.counters["kept_rounds_bytes"] = kept_rounds_bytes();
  out.counters["metrics_rows"] = count("SELECT count(*) FROM metrics") + jm;
  out.counters["queued_batches"] = count("SELECT count(*) FROM sync_queue");
  out.counters["unbatched_points"] = count(
    "SELECT count(*) FROM metrics WHERE id > coalesce((SELECT batched_upto "
    "FROM stream_state WHERE stream = 'metrics'), 0)") + jm_unbatched;
  out.counters["logs_stored"] = logs_stored_;
  out.counters["logs_rows"] = count("SELECT count(*) FROM logs") + jl;
  out.counters["unbatched_logs"] = count(
    "SELECT count(*) FROM logs WHERE id > coalesce((SELECT batched_upto "
    "FROM stream_state WHERE stream = 'logs'), 0)") + jl_unbatched;
  out.counters["unbatched_events"] = count(
    "SELECT count(*) FROM events WHERE id > coalesce((SELECT batched_upto "
    "FROM stream_state WHERE stream = 'events'), 0)");
  return out;
}

namespace {

int64_t scalar(sqlite::database& db, const std::string& sql) {
  return try_scalar(db, sql).value_or(-1);
}

std::string format_time(int64_t ms) {
  if (ms <= 0)
    return "-";
  time_t secs = static_cast<time_t>(ms / 1000);
  std::tm tm;
  gmtime_r(&secs, &tm);
  char buf[32];
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

} // namespace

caf::expected<debug_report> sqlite_store::debug(const std::string& what) {
  if (what == "storage")
    return storage_report();
  if (what == "queue")
    return queue_report();
  // The one subject that changes the store (maintenance, then its report).
  if (what == "clean")
    return clean();
  return make_error(ec::bad_config, "unknown debug subject '" + what
                                      + "' (storage, queue, clean)");
}

int64_t sqlite_store::on_disk_bytes(bool wal_only) {
  auto wal = std::max<int64_t>(0, file_size(cfg_.path + "-wal"));
  return wal_only ? wal : std::max<int64_t>(0, file_size(cfg_.path)) + wal;
}

caf::expected<debug_report> sqlite_store::clean() {
  if (auto err = commit_pending())
    return err;
  // Maintenance covers every record: those of the rounds file too.
  if (auto err = fold_journal())
    return err;
  // Sizes on disk count the WAL: it is part of what the store takes.
  auto before = used_bytes();
  auto disk_before = on_disk_bytes(false);
  auto wal_before = on_disk_bytes(true);
  auto drops_before = drops();
  auto retention = cfg_.limits.retention_ms;
  auto cutoff = retention > 0 ? cfg_.clock->now_ms() - retention : 0;
  int64_t dropped = 0;
  // The node's own age caps, on every table (metrics, logs, queued
  // batches, events), as it applies them each minute.
  if (retention > 0) {
    auto n = drop_older_than(cutoff);
    if (!n)
      return n.error();
    dropped = *n;
  }
  if (auto err = db_.exec("VACUUM"))
    return err;
  if (auto err = checkpoint())
    return err;
  json_object by_kind;
  std::string kinds;
  for (auto& [kind, n] : drops()) {
    auto delta = n - drops_before[kind];
    if (delta <= 0)
      continue;
    by_kind.add(kind, delta);
    kinds += " " + kind + "=" + std::to_string(delta);
  }
  std::ostringstream text;
  text << "retention " << (retention > 0 ? format_time(cutoff) : "off")
       << ": dropped " << dropped << " records older than it"
       << (kinds.empty() ? "" : " (" + kinds.substr(1) + ")")
       << "\nvacuumed and checkpointed: " << disk_before << " -> "
       << on_disk_bytes(false) << " bytes on disk (database + WAL; WAL "
       << wal_before << " -> " << on_disk_bytes(true) << "), " << before
       << " -> " << used_bytes() << " bytes in use\n";
  json_object json;
  json.add("dropped", dropped)
    .raw("dropped_by_kind", by_kind.str())
    .add("retention_cutoff_ms", cutoff)
    .add("disk_bytes_before", disk_before)
    .add("disk_bytes_after", on_disk_bytes(false))
    .add("wal_bytes_before", wal_before)
    .add("wal_bytes_after", on_disk_bytes(true))
    .add("used_bytes_before", before)
    .add("used_bytes_after", used_bytes());
  return debug_report{text.str(), json.str()};
}

std::string sqlite_store::commit_policy() const {
  auto ms = cfg_.limits.commit_interval_ms;
  if (ms <= 0 && journaling())
    return "every round: the samples and log lines of stores within "
           + std::to_string(cfg_.limits.group_window_ms)
           + " ms are one frame appended and synced to " + cfg_.path
           + "-rounds, each store answered after it (storage.rounds-file, "
             "storage.group-window): nothing answered as stored is lost on "
             "a power cut or SIGKILL";
  if (ms <= 0 && cfg_.limits.group_window_ms > 0)
    return "every round: stores within "
           + std::to_string(cfg_.limits.group_window_ms)
           + " ms share one commit, each answered after it "
             "(storage.commit-interval 0, storage.group-window): nothing "
             "answered as stored is lost on a power cut or SIGKILL";
  if (ms <= 0)
    return "every store (storage.commit-interval 0): nothing stored is lost "
           "on a power cut or SIGKILL";
  return "every " + std::to_string(ms) + " ms (storage.commit-interval): a "
         "power cut or SIGKILL loses what was stored within it; now held: "
         + std::to_string(held_points_) + " samples, "
         + std::to_string(held_lines_) + " log lines";
}

caf::expected<debug_report> sqlite_store::storage_report() {
  auto [acked, batched] = stream_cursors(db_, "metrics");
  auto integrity = db_.quick_check();
  // Records of the rounds file are held too.
  int64_t jm = journal_ ? static_cast<int64_t>(journal_->metrics().size()) : 0;
  int64_t jl = journal_ ? static_cast<int64_t>(journal_->logs().size()) : 0;
  auto rows_metrics = scalar(db_, "SELECT count(*) FROM metrics") + jm;
  auto unbatched = scalar(db_, "SELECT count(*) FROM metrics WHERE id > "
                                 + std::to_string(batched))
                   + journal_unbatched(false);
  auto queued = scalar(db_, "SELECT count(*) FROM sync_queue");
  auto queued_points = scalar(db_, "SELECT sum(points) FROM sync_queue");
  auto oldest = scalar(db_, "SELECT min(ts) FROM metrics");
  auto newest = scalar(db_, "SELECT max(ts) FROM metrics");
  if (jm > 0) {
    auto& ms = journal_->metrics();
    oldest = oldest > 0 ? std::min(oldest, ms.front().ts_ms) : ms.front().ts_ms;
    newest = std::max(newest, ms.back().ts_ms);
  }
  auto rounds_bytes = journal_ ? journal_->bytes() : 0;
  auto series = scalar(db_, "SELECT count(*) FROM series");
  auto events = scalar(db_, "SELECT count(*) FROM events");
  std::ostringstream text;
  text << "database   " << cfg_.path << " (" << file_size(cfg_.path)
       << " bytes, WAL " << on_disk_bytes(true) << " bytes)\nin use     "
       << used_bytes() << " of " << cfg_.limits.max_bytes
       << " bytes cap\nintegrity  " << integrity
       << "\nrows       metrics=" << rows_metrics << " series=" << series
       << " sync_queue=" << queued << " events=" << events
       << "\nmetrics    oldest " << format_time(oldest) << ", newest "
       << format_time(newest) << "\nbacklog    " << unbatched
       << " points not batched, " << queued << " batches (" << queued_points
       << " points) waiting for the cloud\nrounds     "
       << (journal_ ? cfg_.path + "-rounds: " + std::to_string(rounds_bytes)
                        + " bytes, " + std::to_string(jm) + " samples and "
                        + std::to_string(jl) + " log lines not acked yet"
                    : std::string{"off (storage.rounds-file)"})
       << "\nkept       " << kept_.size() << " folded rounds files, "
       << kept_rounds_bytes() << " bytes of synced records (until "
          "storage.retention)"
       << "\ndrops     ";
  json_object drops_json;
  for (auto& kv : drops()) {
    text << " " << kv.first << "=" << kv.second;
    drops_json.add(kv.first, kv.second);
  }
  text << "\npressure   " << (under_pressure_ ? "disk full" : "none")
       << "\ncommits    " << commit_policy() << "\n";
  json_object json;
  json.add("path", cfg_.path)
    .add("file_bytes", file_size(cfg_.path))
    .add("wal_bytes", on_disk_bytes(true))
    .add("used_bytes", used_bytes())
    .add("max_bytes", cfg_.limits.max_bytes)
    .add("integrity", integrity)
    .add("metrics_rows", rows_metrics)
    .add("series_rows", series)
    .add("sync_queue_rows", queued)
    .add("events_rows", events)
    .add("oldest_ms", oldest)
    .add("newest_ms", newest)
    .add("unbatched_points", unbatched)
    .add("rounds_file_bytes", rounds_bytes)
    .add("rounds_file_points", jm)
    .add("rounds_file_logs", jl)
    .add("kept_rounds_files", static_cast<int64_t>(kept_.size()))
    .add("kept_rounds_bytes", kept_rounds_bytes())
    .add("queued_points", queued_points)
    .raw("drops", drops_json.str())
    .add("under_pressure", under_pressure_)
    .add("commit_interval_ms", cfg_.limits.commit_interval_ms)
    .add("uncommitted_points", held_points_)
    .add("uncommitted_logs", held_lines_);
  return debug_report{text.str(), json.str()};
}

namespace {

// One queued batch: a line of the table and an object of the JSON list.
void add_queue_row(sqlite::statement& st, std::ostringstream& text,
                   std::string& items) {
  auto stream = st.column_text(0);
  char line[200];
  snprintf(line, sizeof(line), "%-8s %8lld %7lld %7lld  %-20s %7lld  %s\n",
           stream.c_str(), static_cast<long long>(st.column_int(1)),
           static_cast<long long>(st.column_int(2)),
           static_cast<long long>(st.column_int(3)),
           format_time(st.column_int(4)).c_str(),
           static_cast<long long>(st.column_int(5)),
           format_time(st.column_int(6)).c_str());
  text << line;
  json_object item;
  item.add("stream", stream)
    .add("sequence", st.column_int(1))
    .add("points", st.column_int(2))
    .add("bytes", st.column_int(3))
    .add("created_ms", st.column_int(4))
    .add("retry_count", st.column_int(5))
    .add("next_retry_ms", st.column_int(6));
  items += (items.empty() ? "" : ",") + item.str();
}

} // namespace

caf::expected<debug_report> sqlite_store::queue_report() {
  auto st = db_.prepare("SELECT stream, sequence, points, length(payload), "
                        "created_at, retry_count, next_retry FROM sync_queue "
                        "ORDER BY stream, sequence");
  if (!st)
    return st.error();
  std::ostringstream text;
  std::string items;
  int64_t count = 0;
  // Per stream: batches, first and last sequence.
  std::map<std::string, std::array<int64_t, 3>> ranges;
  text << "STREAM   SEQUENCE  POINTS   BYTES  CREATED               RETRIES"
          "  NEXT RETRY\n";
  for (;;) {
    auto row = st->step();
    if (!row)
      return row.error();
    if (!*row)
      break;
    auto& r = ranges[st->column_text(0)];
    auto seq = st->column_int(1);
    if (r[0]++ == 0)
      r[1] = seq;
    r[2] = seq;
    ++count;
    add_queue_row(*st, text, items);
  }
  text << count << " batches waiting\n";
  json_object streams_json;
  for (auto& [stream, r] : ranges) {
    text << "  " << stream << ": " << r[0] << " batches, sequences " << r[1]
         << ".." << r[2] << "\n";
    json_object one;
    one.add("batches", r[0]).add("first_sequence", r[1]).add("last_sequence",
                                                             r[2]);
    streams_json.raw(stream, one.str());
  }
  json_object json;
  json.add("batches", count)
    .raw("streams", streams_json.str())
    .raw("items", "[" + items + "]");
  return debug_report{text.str(), json.str()};
}

void declare(option_set& opts, storage_limits& x) {
  opts.add_size("storage.reserve-bytes", x.reserve_bytes, 512 * 1024,
                "Disk space held back and given up when the disk fills, so "
                "old data can still be dropped to make room");
  opts.add("storage.commit-interval", x.commit_interval_ms, 0, "ms",
           "Longest time stored records wait in memory before one commit; a "
           "power cut or SIGKILL loses at most what was stored within it; "
           "0 = commit every store", 0, 24 * 3600 * 1000LL);
  opts.add("storage.group-window", x.group_window_ms, 50, "ms",
           "Stores arriving this long after a first one share its commit "
           "(each answered after it, nothing held back): one commit per "
           "collection round; capped at a tenth of the shortest collector "
           "interval; 0 = every store commits on its own",
           0, 10'000);
}

caf::error validate(const sqlite_store_config& x) {
  if (x.path.empty())
    return bad_config("sqlite_store_config.path: must not be empty");
  if (!x.disk)
    return bad_config("sqlite_store_config.disk: must be set (real_disk())");
  for (auto [key, v] : {std::pair{"storage.max-bytes", x.limits.max_bytes},
                        std::pair{"storage.retention", x.limits.retention_ms},
                        std::pair{"storage.reserve-bytes",
                                  x.limits.reserve_bytes},
                        std::pair{"storage.commit-interval",
                                  x.limits.commit_interval_ms},
                        std::pair{"storage.group-window",
                                  x.limits.group_window_ms}})
    if (v < 0)
      return bad_config(std::string{key} + ": must not be negative");
  return caf::none;
}

} // namespace fleetd
