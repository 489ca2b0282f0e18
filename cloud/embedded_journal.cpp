#include "cloud/embedded_journal.hpp"

#include <algorithm>

#include "messages/error.hpp"
#include "messages/journal_codec.hpp"

namespace fleetd {

namespace {

// journal_size is kept by triggers, so the bound check reads one row
// whatever the journal holds, and deletes by any connection count.
constexpr const char* journal_schema = R"(
CREATE TABLE IF NOT EXISTS journal (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  received_ms INTEGER NOT NULL,
  org TEXT NOT NULL,
  device TEXT NOT NULL,
  entry BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS journal_size (
  one INTEGER PRIMARY KEY CHECK (one = 1),
  bytes INTEGER NOT NULL);
INSERT OR IGNORE INTO journal_size VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS journal_added AFTER INSERT ON journal BEGIN
  UPDATE journal_size SET bytes = bytes + length(NEW.entry); END;
CREATE TRIGGER IF NOT EXISTS journal_removed AFTER DELETE ON journal BEGIN
  UPDATE journal_size SET bytes = bytes - length(OLD.entry); END;
CREATE TABLE IF NOT EXISTS sink_cursors (
  sink TEXT PRIMARY KEY,
  id INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL) WITHOUT ROWID;
)";

} // namespace

caf::error create_journal_schema(sqlite::database& db) {
  return db.exec(journal_schema);
}

caf::error append_journal(sqlite::database& db, const journal_config& cfg,
                          const journal_entry& x, int64_t now_ms) {
  auto size = db.cached("SELECT bytes, coalesce((SELECT received_ms FROM "
                        "journal ORDER BY id LIMIT 1), 0) FROM journal_size");
  if (!size)
    return size.error();
  auto row = size->step();
  if (!row)
    return row.error();
  auto bytes = *row ? size->column_int(0) : 0;
  auto oldest = *row ? size->column_int(1) : 0;
  size->reset();
  if (auto err = check_journal_bound(cfg, bytes, oldest, now_ms))
    return err;
  auto ins = db.cached("INSERT INTO journal (received_ms, org, device, entry) "
                       "VALUES (?1, ?2, ?3, ?4)");
  if (!ins)
    return ins.error();
  ins->bind(1, x.received_ms).bind(2, x.org).bind(3, x.device)
    .bind_blob(4, encode_journal_entry(x));
  return ins->run();
}

caf::expected<embedded_journal>
embedded_journal::open(const std::string& path, clock_ptr clock,
                       journal_config cfg) {
  auto db = sqlite::database::open(path, "FULL");
  if (!db)
    return db.error();
  if (auto err = create_journal_schema(*db))
    return err;
  embedded_journal out;
  out.clock_ = std::move(clock);
  out.cfg_ = std::move(cfg);
  out.db_ = std::move(*db);
  return out;
}

caf::expected<journal_cursor>
embedded_journal::cursor(const std::string& sink) {
  auto st = db_.cached("SELECT id FROM sink_cursors WHERE sink = ?1");
  if (!st)
    return st.error();
  st->bind(1, sink);
  auto row = st->step();
  if (!row)
    return row.error();
  journal_cursor out;
  if (*row)
    out.id = st->column_int(0);
  st->reset();
  return out;
}

caf::expected<journal_chunk> embedded_journal::read(journal_cursor after,
                                                    journal_read_bounds max) {
  auto st = db_.cached("SELECT id, entry FROM journal WHERE id > ?1 "
                       "ORDER BY id LIMIT ?2");
  if (!st)
    return st.error();
  st->bind(1, after.id).bind(2, max.entries);
  journal_chunk out;
  out.end = after;
  auto max_bytes = static_cast<uint64_t>(cfg_.max_entry_bytes);
  for (;;) {
    auto more = st->step();
    if (!more)
      return more.error();
    if (!*more || !add_row(out, journal_cursor{0, st->column_int(0)},
                           st->column_blob(1), max_bytes, max.points))
      return out;
  }
}

caf::error embedded_journal::advance(const std::string& sink,
                                     journal_cursor to) {
  auto st = db_.cached("INSERT INTO sink_cursors (sink, id, updated_ms) "
                       "VALUES (?1, ?2, ?3) ON CONFLICT (sink) DO UPDATE "
                       "SET id = max(id, ?2), updated_ms = ?3");
  if (!st)
    return st.error();
  st->bind(1, sink).bind(2, to.id).bind(3, clock_->now_ms());
  return st->run();
}

caf::expected<int64_t>
embedded_journal::prune(const std::vector<std::string>& sinks) {
  if (sinks.empty())
    return int64_t{0};
  int64_t passed = INT64_MAX;
  for (auto& s : sinks) {
    auto c = cursor(s);
    if (!c)
      return c.error();
    passed = std::min(passed, c->id);
  }
  auto del = db_.cached("DELETE FROM journal WHERE id <= ?1");
  if (!del)
    return del.error();
  del->bind(1, passed);
  if (auto err = del->run())
    return err;
  return db_.changes();
}

caf::expected<journal_lag> embedded_journal::lag(journal_cursor after) {
  // One writer, ids never reused, rows deleted only from the front: the
  // rows after the cursor are the ids from the first one to the last.
  auto st = db_.cached("SELECT (SELECT max(id) FROM journal), id, "
                       "received_ms FROM journal WHERE id > ?1 ORDER BY id "
                       "LIMIT 1");
  if (!st)
    return st.error();
  st->bind(1, after.id);
  journal_lag out;
  if (auto err = sqlite::each_row(*st, [&](sqlite::statement& r) {
        out.entries = r.column_int(0) - r.column_int(1) + 1;
        out.oldest_ms = r.column_int(2);
      }))
    return err;
  return out;
}

caf::expected<bool> embedded_journal::lease(const std::string&,
                                            const std::string&,
                                            std::chrono::milliseconds) {
  return true;
}

} // namespace fleetd
