#include "cloud/embedded_store.hpp"

#include <caf/typed_event_based_actor.hpp>

#include "cloud/delivery_ledger.hpp"
#include "cloud/embedded_journal.hpp"
#include "messages/labels.hpp"
#include "messages/decode_budget.hpp"
#include "messages/error.hpp"
#include "messages/metrics_codec.hpp"
#include "runtime/logger.hpp"
#include "runtime/result.hpp"

namespace fleetd {

namespace {

// A device numbers batches one by one; a jump this large is corruption.
constexpr int64_t max_sequence_gap = 1'000'000;

constexpr const char* schema = R"(
CREATE TABLE IF NOT EXISTS streams (
  device_id TEXT NOT NULL,
  stream TEXT NOT NULL,
  epoch TEXT NOT NULL,
  last_sequence INTEGER NOT NULL,
  epochs INTEGER NOT NULL,
  points INTEGER NOT NULL,
  batches INTEGER NOT NULL,
  duplicates INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  PRIMARY KEY (device_id, stream)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
  device_id TEXT NOT NULL,
  stream TEXT NOT NULL,
  epoch TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  checksum BLOB NOT NULL,
  points INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  PRIMARY KEY (device_id, stream, epoch, sequence)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  labels BLOB NOT NULL,
  UNIQUE (name, labels));
CREATE TABLE IF NOT EXISTS points (
  device_id TEXT NOT NULL,
  epoch TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  series_id INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  value REAL,
  bits INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS points_by_batch ON points (device_id, epoch, sequence);
CREATE TABLE IF NOT EXISTS logs (
  device_id TEXT NOT NULL,
  epoch TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  labels BLOB NOT NULL,
  ts INTEGER NOT NULL,
  line TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_by_batch ON logs (device_id, epoch, sequence);
CREATE TABLE IF NOT EXISTS events (
  device_id TEXT NOT NULL,
  epoch TEXT NOT NULL,
  sequence INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  kind TEXT NOT NULL,
  message TEXT NOT NULL,
  attributes BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_batch ON events (device_id, epoch, sequence);
CREATE TABLE IF NOT EXISTS wire_series (
  device_id TEXT NOT NULL,
  epoch TEXT NOT NULL,
  idx INTEGER NOT NULL,
  series_id INTEGER NOT NULL,
  PRIMARY KEY (device_id, epoch, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wire_history (
  device_id TEXT NOT NULL,
  epoch TEXT NOT NULL,
  history BLOB NOT NULL,
  PRIMARY KEY (device_id, epoch)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS device_capability (
  device_id TEXT PRIMARY KEY,
  tier INTEGER NOT NULL,
  total_ram INTEGER NOT NULL,
  available_ram INTEGER NOT NULL,
  total_disk INTEGER NOT NULL,
  available_disk INTEGER NOT NULL,
  cpu_cores INTEGER NOT NULL,
  has_sqlite INTEGER NOT NULL,
  has_network INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS delivery (
  device_id TEXT NOT NULL,
  stream TEXT NOT NULL,
  hour_ms INTEGER NOT NULL,
  received INTEGER NOT NULL,
  duplicates INTEGER NOT NULL,
  missing INTEGER NOT NULL,
  declared_drops INTEGER NOT NULL,
  collected INTEGER NOT NULL DEFAULT 0,
  stored INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (device_id, stream, hour_ms)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS declared_drops (
  device_id TEXT NOT NULL,
  stream TEXT NOT NULL,
  origin TEXT NOT NULL,
  records INTEGER NOT NULL,
  batches INTEGER NOT NULL,
  collected INTEGER NOT NULL DEFAULT 0,
  stored INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (device_id, stream)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS device_config (
  device_id TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  batch_size INTEGER NOT NULL,
  sync_interval_ms INTEGER NOT NULL,
  retention_ms INTEGER NOT NULL,
  zstd_level INTEGER NOT NULL) WITHOUT ROWID;
)";

// One row per device (org and name split at the first '/'): capability,
// config version and sync health, as PostgreSQL's (0004_fleet.sql).
constexpr const char* registry_view = R"(
CREATE VIEW IF NOT EXISTS device_registry AS
WITH ids AS (SELECT device_id FROM streams
             UNION SELECT device_id FROM device_capability
             UNION SELECT device_id FROM device_config),
s AS (SELECT device_id, max(last_seen) AS last_seen_ms,
             max(last_batch_ms) AS last_batch_ms, sum(batches) AS batches,
             sum(duplicates) AS duplicates, sum(points) AS points,
             json_group_object(stream, last_sequence) AS last_sequences
        FROM streams GROUP BY device_id)
SELECT CASE WHEN instr(i.device_id, '/') > 0
            THEN substr(i.device_id, 1, instr(i.device_id, '/') - 1)
            ELSE '' END AS org,
       substr(i.device_id, instr(i.device_id, '/') + 1) AS device,
       coalesce(s.last_seen_ms, 0) AS last_seen_ms,
       coalesce(s.last_batch_ms, 0) AS last_batch_ms,
       coalesce(s.batches, 0) AS batches,
       coalesce(s.duplicates, 0) AS duplicates,
       coalesce(s.points, 0) AS points,
       coalesce(s.last_sequences, '{}') AS last_sequences,
       c.tier, c.total_ram, c.available_ram, c.total_disk, c.available_disk,
       c.cpu_cores, c.has_sqlite, c.has_network,
       c.updated_ms AS capability_ms,
       coalesce(g.version, 0) AS config_version
  FROM ids i
  LEFT JOIN s USING (device_id)
  LEFT JOIN device_capability c USING (device_id)
  LEFT JOIN device_config g USING (device_id);
)";

// Files made before the registry lack the stream's last accepted batch.
caf::error add_registry(sqlite::database& db) {
  auto has = db.has_column("streams", "last_batch_ms");
  if (!has)
    return has.error();
  if (!*has)
    if (auto err = db.exec("ALTER TABLE streams ADD COLUMN last_batch_ms "
                           "INTEGER NOT NULL DEFAULT 0"))
      return err;
  return db.exec(registry_view);
}

// Files made before the device declared what it collected and stored.
caf::error add_delivery_flow(sqlite::database& db) {
  // Each column on its own: a crash between two ALTERs leaves one added.
  for (auto table : {"delivery", "declared_drops"})
    for (auto column : {"collected", "stored"}) {
      auto has = db.has_column(table, column);
      if (!has)
        return has.error();
      if (!*has)
        if (auto err = db.exec(std::string("ALTER TABLE ") + table
                               + " ADD COLUMN " + column
                               + " INTEGER NOT NULL DEFAULT 0"))
          return err;
    }
  return caf::none;
}

// The epoch of a legacy row of `stream` (alias t) when the batches table
// names exactly one for its sequence, else '' (legacy_epochs, below).
std::string legacy_epoch(const char* stream) {
  return std::string("coalesce((SELECT e.epoch FROM legacy_epochs e WHERE "
                     "e.device_id = t.device_id AND e.stream = '")
         + stream + "' AND e.sequence = t.sequence), '')";
}

// Stores of the first schema kept points.value as REAL NOT NULL (no NaN,
// no -0.0) and no epoch beside the sequence of points, logs and events.
caf::error migrate_legacy(sqlite::database& db) {
  auto exact = db.has_column("points", "bits");
  auto legacy = db.has_column("points", "value");
  if (!exact || !legacy)
    return exact ? legacy.error() : exact.error();
  if (*exact || !*legacy)
    return caf::none;
  log_info("embedded_store", "migrating points, logs and events to exact "
           "values and epochs");
  return sqlite::transaction(db, [&] {
    return db.exec(
      // Indexed by sequence: one lookup per row, not a scan of the batches.
      "CREATE TEMP TABLE legacy_epochs (device_id TEXT, stream TEXT, "
      "sequence INTEGER, epoch TEXT, PRIMARY KEY (device_id, stream, "
      "sequence)) WITHOUT ROWID;"
      "INSERT INTO legacy_epochs SELECT device_id, stream, sequence, max(epoch) "
      "FROM batches GROUP BY device_id, stream, sequence "
      "HAVING count(*) = 1;"
      "CREATE TABLE points_exact (device_id TEXT NOT NULL, epoch TEXT NOT "
      "NULL, sequence INTEGER NOT NULL, series_id INTEGER NOT NULL, ts "
      "INTEGER NOT NULL, value REAL, bits INTEGER NOT NULL);"
      "INSERT INTO points_exact SELECT t.device_id, "
      + legacy_epoch("metrics")
      + ", t.sequence, t.series_id, t.ts, t.value, ieee_bits(t.value) "
        "FROM points t ORDER BY t.rowid;"
        "DROP TABLE points;"
        "ALTER TABLE points_exact RENAME TO points;"
        "ALTER TABLE logs ADD COLUMN epoch TEXT NOT NULL DEFAULT '';"
        "UPDATE logs AS t SET epoch = "
      + legacy_epoch("logs")
      + ";"
        "DROP INDEX IF EXISTS logs_by_device;"
        "ALTER TABLE events ADD COLUMN epoch TEXT NOT NULL DEFAULT '';"
        "UPDATE events AS t SET epoch = "
      + legacy_epoch("events")
      + ";"
        "DROP INDEX IF EXISTS events_by_device;"
        "DROP TABLE legacy_epochs;");
  });
}

} // namespace

caf::expected<embedded_store> embedded_store::open(const std::string& path,
                                                   clock_ptr clock,
                                                   journal_config journal) {
  auto db = sqlite::database::open(path, "FULL");
  if (!db)
    return db.error();
  auto check = db->quick_check();
  if (check != "ok")
    return make_error(ec::storage_failed, path + ": " + check);
  if (auto err = migrate_legacy(*db))
    return err;
  if (auto err = db->exec(schema))
    return err;
  if (auto err = add_registry(*db))
    return err;
  if (auto err = add_delivery_flow(*db))
    return err;
  if (auto err = create_journal_schema(*db))
    return err;
  embedded_store out;
  out.clock_ = std::move(clock);
  out.journal_ = std::move(journal);
  out.db_ = std::move(*db);
  if (auto err = out.load_series())
    return err;
  return out;
}

caf::error embedded_store::load_series() {
  series_.clear();
  auto all = db_.prepare("SELECT id, name, labels FROM series");
  if (!all)
    return all.error();
  for (;;) {
    auto row = all->step();
    if (!row)
      return row.error();
    if (!*row)
      return caf::none;
    series_.emplace(all->column_text(1) + '\0' + all->column_blob(2),
                    all->column_int(0));
  }
}

caf::expected<int64_t> embedded_store::series_id(const std::string& name,
                                                 const label_map& labels) {
  auto encoded = encode_labels(labels);
  auto key = name + '\0' + encoded;
  if (auto i = series_.find(key); i != series_.end())
    return i->second;
  auto ins = db_.cached("INSERT INTO series (name, labels) VALUES (?1, ?2)");
  if (!ins)
    return ins.error();
  ins->bind(1, name).bind_blob(2, encoded);
  if (auto err = ins->run())
    return err;
  auto id = db_.last_insert_rowid();
  series_.emplace(std::move(key), id);
  return id;
}

caf::error embedded_store::write_capability(const ingest_batch& b, int64_t now) {
  auto& c = b.capability;
  if (c.tier <= 0)
    return caf::none;
  auto st = db_.cached(
    "INSERT OR REPLACE INTO device_capability (device_id, tier, total_ram, "
    "available_ram, total_disk, available_disk, cpu_cores, has_sqlite, "
    "has_network, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
    "?10)");
  if (!st)
    return st.error();
  st->bind(1, b.device_id).bind(2, c.tier).bind(3, c.total_ram)
    .bind(4, c.available_ram).bind(5, c.total_disk).bind(6, c.available_disk)
    .bind(7, c.cpu_cores).bind(8, int64_t{c.has_sqlite})
    .bind(9, int64_t{c.has_network}).bind(10, now);
  return st->run();
}

caf::expected<ingest_outcome> embedded_store::write(const ingest_batch& b) {
  ingest_outcome out;
  auto now = clock_->now_ms();
  auto known_series = series_.size();
  auto err = sqlite::transaction(
    db_, [&]() -> caf::error { return write_batch(b, now, out); });
  if (!err)
    err = config_for(b.device_id, b.config_version, out.config);
  if (err) {
    // A session this transaction changed did not change.
    sessions_.erase(session_key{b.device_id, b.epoch});
    if (series_.size() != known_series) {
      // Series ids from a rolled-back transaction do not exist: reload.
      load_series();
    }
    counters_.count(err);
    return err;
  }
  counters_.count(out);
  return out;
}

caf::expected<int64_t> embedded_store::acked_sequence(const ingest_batch& b) {
  auto sel = db_.cached("SELECT last_sequence, epoch FROM streams "
                        "WHERE device_id = ?1 AND stream = ?2");
  if (!sel)
    return sel.error();
  sel->bind(1, b.device_id).bind(2, b.stream);
  auto row = sel->step();
  if (!row)
    return row.error();
  if (!*row)
    return int64_t{0};
  // A new epoch is a store numbering from 1 again: its own sequence space.
  if (sel->column_text(1) != b.epoch) {
    log_warning("embedded_store", b.device_id, "/", b.stream,
                ": device store started afresh (epoch ", b.epoch,
                "); numbering restarts");
    return int64_t{0};
  }
  return sel->column_int(0);
}

caf::expected<bool> embedded_store::held(const ingest_batch& b,
                                         int64_t last) {
  auto seen = db_.cached("SELECT checksum FROM batches WHERE device_id = ?1 "
                         "AND stream = ?2 AND epoch = ?4 AND sequence = ?3");
  if (!seen)
    return seen.error();
  seen->bind(1, b.device_id).bind(2, b.stream).bind(3, b.sequence).bind(
    4, b.epoch);
  auto had = seen->step();
  if (!had)
    return had.error();
  if (!*had)
    return held_verdict(b, last, nullptr);
  auto checksum = seen->column_blob(0);
  return held_verdict(b, last, &checksum);
}

caf::expected<bool> held_verdict(const ingest_batch& b, int64_t last,
                                 const std::string* held) {
  if (held && *held != b.checksum)
    return make_error(ec::bad_sequence,
                      "sequence " + std::to_string(b.sequence)
                        + " was already received with other content");
  // A never-seen sequence below the ack fills a recorded gap: keep it.
  if (b.sequence > last + max_sequence_gap)
    return make_error(ec::bad_sequence,
                      "sequence " + std::to_string(b.sequence)
                        + " is too far ahead of the acked "
                        + std::to_string(last));
  return held != nullptr;
}

caf::error embedded_store::write_batch(const ingest_batch& b, int64_t now,
                                       ingest_outcome& out) {
  if (auto err = write_capability(b, now))
    return err;
  auto last = acked_sequence(b);
  if (!last)
    return last.error();
  auto had = held(b, *last);
  if (!had)
    return had.error();
  // Held: ack at least this batch, also when it is of an older epoch.
  out.last_acked = std::max(*last, b.sequence);
  auto declared = declare_drops(b, out);
  if (!declared)
    return declared.error();
  if (*had) {
    out.duplicate = true;
    auto dup = db_.cached("UPDATE streams SET duplicates = duplicates + 1, "
                          "last_seen = ?3 WHERE device_id = ?1 AND "
                          "stream = ?2");
    if (!dup)
      return dup.error();
    dup->bind(1, b.device_id).bind(2, b.stream).bind(3, now);
    if (auto err = dup->run())
      return err;
    auto records = db_.cached("SELECT points FROM batches WHERE device_id = "
                              "?1 AND stream = ?2 AND epoch = ?3 AND "
                              "sequence = ?4");
    if (!records)
      return records.error();
    records->bind(1, b.device_id).bind(2, b.stream).bind(3, b.epoch)
      .bind(4, b.sequence);
    auto row = records->step();
    if (!row)
      return row.error();
    auto n = *row ? records->column_int(0) : 0;
    records->reset();
    return count_delivery(b, now, delivery_of_batch(0, n, 0, *declared));
  }
  int64_t n = 0;
  metric_samples decoded;
  if (auto err = insert_records(b, n, journal_.enabled ? &decoded : nullptr))
    return err;
  // The journal row commits with the ack or not at all (same transaction).
  if (journal_.enabled)
    if (auto err = write_journal(b, now, std::move(decoded)))
      return err;
  out.stored = n;
  auto rec = db_.cached("INSERT INTO batches (device_id, stream, epoch, "
                        "sequence, points, received_at, checksum) "
                        "VALUES (?1, ?2, ?6, ?3, ?4, ?5, ?7)");
  if (!rec)
    return rec.error();
  rec->bind(1, b.device_id).bind(2, b.stream).bind(3, b.sequence).bind(4, n)
    .bind(5, now).bind(6, b.epoch).bind_blob(7, b.checksum);
  if (auto err = rec->run())
    return err;
  auto up = db_.cached(
    "INSERT INTO streams (device_id, stream, epoch, last_sequence, epochs, "
    "points, batches, duplicates, last_seen, last_batch_ms) "
    "VALUES (?1, ?2, ?6, ?3, 1, ?4, 1, 0, ?5, ?5) "
    "ON CONFLICT (device_id, stream) DO UPDATE SET last_sequence = ?3, "
    "points = points + ?4, batches = batches + 1, last_seen = ?5, "
    "last_batch_ms = ?5, "
    "epochs = epochs + (epoch != ?6), epoch = ?6");
  if (!up)
    return up.error();
  up->bind(1, b.device_id).bind(2, b.stream).bind(3, out.last_acked)
    .bind(4, n).bind(5, now).bind(6, b.epoch);
  if (auto err = up->run())
    return err;
  return count_delivery(
    b, now,
    delivery_of_batch(n, 0, missing_growth(b.sequence, *last), *declared));
}

caf::expected<declared_sums>
embedded_store::declare_drops(const ingest_batch& b, ingest_outcome& out) {
  if (b.declared.origin.empty())
    return declared_sums{};
  auto sel = db_.cached("SELECT origin, records, batches, collected, stored "
                        "FROM declared_drops WHERE device_id = ?1 AND "
                        "stream = ?2");
  if (!sel)
    return sel.error();
  sel->bind(1, b.device_id).bind(2, b.stream);
  auto row = sel->step();
  if (!row)
    return row.error();
  std::string origin = *row ? sel->column_text(0) : std::string{};
  declared_sums last;
  if (*row)
    last = {sel->column_int(1), sel->column_int(2), sel->column_int(3),
            sel->column_int(4)};
  sel->reset();
  out.report_decreased = declared_decreased(b.declared, origin, last);
  auto grown = declared_growth(b.declared, origin, last);
  if (grown.empty() && origin == b.declared.origin)
    return grown;
  auto keep = kept_declared(b.declared, origin, last, grown);
  auto up = db_.cached("INSERT OR REPLACE INTO declared_drops (device_id, "
                       "stream, origin, records, batches, collected, stored) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  if (!up)
    return up.error();
  up->bind(1, b.device_id).bind(2, b.stream).bind(3, b.declared.origin)
    .bind(4, keep.records).bind(5, keep.batches).bind(6, keep.collected)
    .bind(7, keep.stored);
  if (auto err = up->run())
    return err;
  return grown;
}

caf::error embedded_store::count_delivery(const ingest_batch& b, int64_t now,
                                          const delivery_counts& x) {
  if (x.received == 0 && x.duplicates == 0 && x.missing == 0
      && x.declared_drops == 0 && x.collected == 0 && x.stored == 0)
    return caf::none;
  auto up = db_.cached(
    "INSERT INTO delivery (device_id, stream, hour_ms, received, duplicates, "
    "missing, declared_drops, collected, stored) VALUES (?1, ?2, ?3, ?4, ?5, "
    "?6, ?7, ?8, ?9) ON CONFLICT (device_id, stream, hour_ms) DO UPDATE SET "
    "received = received + ?4, duplicates = duplicates + ?5, "
    "missing = missing + ?6, declared_drops = declared_drops + ?7, "
    "collected = collected + ?8, stored = stored + ?9");
  if (!up)
    return up.error();
  up->bind(1, b.device_id).bind(2, b.stream).bind(3, delivery_hour(now))
    .bind(4, x.received).bind(5, x.duplicates).bind(6, x.missing)
    .bind(7, x.declared_drops).bind(8, x.collected).bind(9, x.stored);
  return up->run();
}

caf::expected<delivery_rows>
embedded_store::delivery(const std::string& device_id, int64_t since_ms) {
  // A device is named with or without its org ("org/name" in device_id);
  // "org/" names every device of the org.
  auto st = db_.prepare(
    "SELECT device_id, stream, hour_ms, received, duplicates, missing, "
    "declared_drops, collected, stored FROM delivery WHERE hour_ms >= ?2 "
    "AND (?1 = '' OR "
    "device_id = ?1 OR substr(device_id, instr(device_id, '/') + 1) = ?1 "
    "OR (substr(?1, -1) = '/' AND substr(device_id, 1, length(?1)) = ?1)) "
    "ORDER BY device_id, stream, hour_ms");
  if (!st)
    return st.error();
  st->bind(1, device_id).bind(2, delivery_hour(since_ms));
  delivery_rows out;
  if (auto err = sqlite::each_row(*st, [&](sqlite::statement& r) {
        out.push_back({r.column_text(0), r.column_text(1), r.column_int(2),
                       r.column_int(3), r.column_int(4), r.column_int(5),
                       r.column_int(6), r.column_int(7), r.column_int(8)});
      }))
    return err;
  return out;
}

caf::expected<embedded_store::wire_session*>
embedded_store::session(const std::string& device, const std::string& epoch) {
  auto key = session_key{device, epoch};
  if (auto i = sessions_.find(key); i != sessions_.end())
    return &i->second;
  auto st = db_.cached("SELECT s.name, s.labels, s.id FROM wire_series w JOIN "
                       "series s ON s.id = w.series_id WHERE w.device_id = ?1 "
                       "AND w.epoch = ?2 ORDER BY w.idx");
  if (!st)
    return st.error();
  st->bind(1, device).bind(2, epoch);
  wire_session ws;
  if (auto err = sqlite::each_row(*st, [&](sqlite::statement& r) {
        ws.codec.add(series_key{r.column_text(0),
                                decode_labels(r.column_blob(1))});
        ws.ids.push_back(r.column_int(2));
      }))
    return err;
  auto hs = db_.cached("SELECT history FROM wire_history WHERE device_id = ?1 "
                       "AND epoch = ?2");
  if (!hs)
    return hs.error();
  hs->bind(1, device).bind(2, epoch);
  auto row = hs->step();
  if (!row)
    return row.error();
  std::string history = *row ? hs->column_blob(0) : std::string{};
  if (auto err = ws.codec.load_history(history)) {
    // Without its histories the table is of no use: the device's next
    // batch is refused session_out_of_sync and starts a new session.
    log_warning("embedded_store", device, ": series session of epoch ", epoch,
                " has no matching history; starting afresh");
    ws.codec.clear();
    ws.ids.clear();
  }
  return &sessions_.emplace(key, std::move(ws)).first->second;
}

caf::expected<indexed_points>
embedded_store::decode_in_session(const ingest_batch& b, wire_session*& ws) {
  auto found = session(b.device_id, b.epoch);
  if (!found)
    return found.error();
  ws = *found;
  auto base = columnar_base(b.columnar);
  if (!base)
    return base.error();
  if (*base == 0) {
    // The device started a new series session (rows may remain of one
    // whose histories did not load).
    ws->codec.clear();
    ws->ids.clear();
    auto del = db_.cached("DELETE FROM wire_series WHERE device_id = ?1 "
                          "AND epoch = ?2");
    if (!del)
      return del.error();
    del->bind(1, b.device_id).bind(2, b.epoch);
    if (auto err = del->run())
      return err;
  }
  auto known = ws->codec.series.size();
  // What the request's decoding left of its budget bounds this batch.
  decode_budget budget{b.decode_budget > 0 ? b.decode_budget
                                           : ws->codec.max_decoded_bytes};
  // Refused session_out_of_sync unless encoded against this very state.
  auto xs = decode_columnar_indexed(b.columnar, ws->codec, budget);
  if (!xs)
    return xs.error();
  auto def = db_.cached("INSERT INTO wire_series (device_id, epoch, idx, "
                        "series_id) VALUES (?1, ?2, ?3, ?4)");
  if (!def)
    return def.error();
  def->bind(1, b.device_id).bind(2, b.epoch);
  for (auto i = known; i < ws->codec.series.size(); ++i) {
    auto& key = ws->codec.series[i];
    auto sid = series_id(key.first, key.second);
    if (!sid)
      return sid.error();
    ws->ids.push_back(*sid);
    def->rewind().bind(3, static_cast<int64_t>(i)).bind(4, *sid);
    if (auto err = def->run())
      return err;
  }
  auto hist = db_.cached("INSERT OR REPLACE INTO wire_history (device_id, "
                         "epoch, history) VALUES (?1, ?2, ?3)");
  if (!hist)
    return hist.error();
  hist->bind(1, b.device_id).bind(2, b.epoch)
    .bind_blob(3, ws->codec.save_history());
  if (auto err = hist->run())
    return err;
  return std::move(*xs);
}

caf::error embedded_store::write_journal(const ingest_batch& b, int64_t now,
                                         metric_samples decoded) {
  auto [org, device] = split_device_id(b.device_id);
  return append_journal(db_, journal_,
                        journal_entry_of(b, std::move(org), std::move(device),
                                         now, std::move(decoded)),
                        now);
}

caf::error embedded_store::insert_records(const ingest_batch& b, int64_t& n,
                                          metric_samples* decoded) {
  if (!b.logs.empty()) {
    auto ins = db_.cached("INSERT INTO logs (device_id, sequence, labels, ts, "
                          "line, epoch) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    if (!ins)
      return ins.error();
    for (auto& x : b.logs) {
      ins->reset().bind(1, b.device_id).bind(2, b.sequence)
        .bind_blob(3, encode_labels(x.labels)).bind(4, x.timestamp_ns)
        .bind(5, x.line).bind(6, b.epoch);
      if (auto err = ins->run())
        return err;
    }
    n = static_cast<int64_t>(b.logs.size());
    return caf::none;
  }
  if (!b.events.empty()) {
    auto ins = db_.cached("INSERT INTO events (device_id, sequence, ts, kind, "
                          "message, attributes, epoch) VALUES (?1, ?2, ?3, "
                          "?4, ?5, ?6, ?7)");
    if (!ins)
      return ins.error();
    for (auto& x : b.events) {
      ins->reset().bind(1, b.device_id).bind(2, b.sequence)
        .bind(3, x.timestamp_ms).bind(4, x.kind).bind(5, x.message)
        .bind_blob(6, encode_labels(x.attributes)).bind(7, b.epoch);
      if (auto err = ins->run())
        return err;
    }
    n = static_cast<int64_t>(b.events.size());
    return caf::none;
  }
  return insert_points(b, n, decoded);
}

caf::error embedded_store::insert_points(const ingest_batch& b, int64_t& n,
                                         metric_samples* decoded) {
  // value is for people (NULL for NaN, -0.0 reads 0.0); bits is exact.
  // The batch's own columns are bound once; a row rebinds the rest.
  auto ins = db_.cached("INSERT INTO points (device_id, sequence, "
                        "series_id, ts, value, bits, epoch) VALUES (?1, ?2, "
                        "?3, ?4, ?5, ?6, ?7)");
  if (!ins)
    return ins.error();
  ins->bind(1, b.device_id).bind(2, b.sequence).bind(7, b.epoch);
  auto row = [&](int64_t sid, int64_t ts, double value) {
    return ins->rewind().bind(3, sid).bind(4, ts).bind(5, value)
      .bind_exact(6, value).run();
  };
  if (b.columnar.empty()) {
    for (auto& x : b.samples) {
      auto sid = series_id(x.name, x.labels);
      if (!sid)
        return sid.error();
      if (auto err = row(*sid, x.timestamp_ms, x.value))
        return err;
    }
    n = static_cast<int64_t>(b.samples.size());
    return caf::none;
  }
  // Session batches need no name lookup: the session maps index to id.
  wire_session* ws = nullptr;
  auto xs = decode_in_session(b, ws);
  if (!xs)
    return xs.error();
  for (auto& x : *xs)
    if (auto err = row(ws->ids[x.series], x.timestamp_ms, x.value))
      return err;
  n = static_cast<int64_t>(xs->size());
  if (decoded)
    for (auto& x : *xs) {
      auto& key = ws->codec.series[x.series];
      decoded->push_back(
        metric_sample{key.first, key.second, x.timestamp_ms, x.value});
    }
  return caf::none;
}

caf::error embedded_store::config_for(const std::string& device, int64_t have,
                                   cloud_settings& out) {
  auto st = db_.cached("SELECT version, batch_size, sync_interval_ms, "
                       "retention_ms, zstd_level FROM device_config WHERE "
                       "device_id = ?1 AND version > ?2");
  if (!st)
    return st.error();
  st->bind(1, device).bind(2, have);
  auto row = st->step();
  if (!row)
    return row.error();
  if (*row) {
    out.version = st->column_int(0);
    out.batch_size = st->column_int(1);
    out.sync_interval_ms = st->column_int(2);
    out.retention_ms = st->column_int(3);
    out.zstd_level = st->column_int(4);
  }
  return caf::none;
}

void store_counters::count(const caf::expected<ingest_outcome>& out) {
  if (!out) {
    ++failures;
    last_error = render(out.error());
  } else if (out->duplicate) {
    ++duplicates;
  } else {
    ++batches_stored;
    points_stored += out->stored;
  }
}

actor_stats store_counters::report() const {
  actor_stats out;
  out.name = "cloud_store";
  out.state = last_error.empty() ? "ok" : "last error: " + last_error;
  out.counters["batches_stored"] = batches_stored;
  out.counters["points_stored"] = points_stored;
  out.counters["duplicates"] = duplicates;
  out.counters["failures"] = failures;
  return out;
}

void apply_settings_change(cloud_settings& x, const settings_change& c) {
  auto& v = c.values;
  if (c.fields & field_batch_size)
    x.batch_size = v.batch_size;
  if (c.fields & field_sync_interval)
    x.sync_interval_ms = v.sync_interval_ms;
  if (c.fields & field_retention)
    x.retention_ms = v.retention_ms;
  if (c.fields & field_zstd_level)
    x.zstd_level = v.zstd_level;
  ++x.version;
}

caf::error check_settings_change(const settings_change& c) {
  auto& x = c.values;
  auto in = [](int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi; };
  auto bad = [](const char* name, int64_t v, int64_t lo, int64_t hi) {
    return make_error(ec::bad_config,
                      std::string{name} + ": " + std::to_string(v)
                        + " is out of range [" + std::to_string(lo) + ", "
                        + std::to_string(hi) + "]");
  };
  if ((c.fields & field_batch_size)
      && !in(x.batch_size, 0, max_setting_batch_size))
    return bad("batch_size", x.batch_size, 0, max_setting_batch_size);
  if ((c.fields & field_sync_interval)
      && !in(x.sync_interval_ms, 0, max_setting_ms))
    return bad("sync_interval_ms", x.sync_interval_ms, 0, max_setting_ms);
  if ((c.fields & field_retention) && !in(x.retention_ms, 0, max_setting_ms))
    return bad("retention_ms", x.retention_ms, 0, max_setting_ms);
  if ((c.fields & field_zstd_level)
      && !in(x.zstd_level, -1, max_setting_zstd_level))
    return bad("zstd_level", x.zstd_level, -1, max_setting_zstd_level);
  if ((c.fields & all_settings_fields) == 0 || (c.fields & ~all_settings_fields))
    return make_error(ec::bad_config, "config: nothing to set");
  return caf::none;
}

caf::expected<cloud_settings>
embedded_store::set_config(const std::string& device, const settings_change& c) {
  if (auto err = check_settings_change(c))
    return err;
  cloud_settings x;
  auto err = sqlite::transaction(db_, [&]() -> caf::error {
    // The current version: the fields the change does not name keep it.
    if (auto err = config_for(device, 0, x))
      return err;
    if (x.version == 0 && !c.create) {
      auto seen = db_.prepare("SELECT 1 FROM streams WHERE device_id = ?1");
      if (!seen)
        return seen.error();
      seen->bind(1, device);
      auto row = seen->step();
      if (!row)
        return row.error();
      if (!*row)
        return make_error(ec::unknown_device,
                          "the cloud has never heard from device '" + device
                            + "' (--create sets its settings before it "
                              "first syncs)");
    }
    apply_settings_change(x, c);
    auto up = db_.prepare(
      "INSERT INTO device_config (device_id, version, batch_size, "
      "sync_interval_ms, retention_ms, zstd_level) VALUES (?1, ?2, ?3, ?4, "
      "?5, ?6) ON CONFLICT (device_id) DO UPDATE SET version = ?2, "
      "batch_size = ?3, sync_interval_ms = ?4, retention_ms = ?5, "
      "zstd_level = ?6");
    if (!up)
      return up.error();
    up->bind(1, device).bind(2, x.version).bind(3, x.batch_size)
      .bind(4, x.sync_interval_ms).bind(5, x.retention_ms)
      .bind(6, x.zstd_level);
    return up->run();
  });
  if (err)
    return err;
  return x;
}

caf::expected<cloud_settings>
embedded_store::get_config(const std::string& device) {
  cloud_settings x;
  if (auto err = config_for(device, 0, x))
    return err;
  return x;
}

caf::expected<log_lines> embedded_store::logs(const std::string& device) {
  auto st = db_.prepare("SELECT labels, ts, line FROM logs WHERE device_id = "
                        "?1 ORDER BY rowid");
  if (!st)
    return st.error();
  st->bind(1, device);
  log_lines out;
  if (auto err = sqlite::each_row(*st, [&](sqlite::statement& r) {
        out.push_back(log_line{decode_labels(r.column_blob(0)),
                               r.column_int(1), r.column_text(2)});
      }))
    return err;
  return out;
}

caf::expected<event_records> embedded_store::events(const std::string& device) {
  auto st = db_.prepare("SELECT ts, kind, message, attributes FROM events "
                        "WHERE device_id = ?1 ORDER BY rowid");
  if (!st)
    return st.error();
  st->bind(1, device);
  event_records out;
  if (auto err = sqlite::each_row(*st, [&](sqlite::statement& r) {
        event_record e;
        e.timestamp_ms = r.column_int(0);
        e.kind = r.column_text(1);
        e.message = r.column_text(2);
        e.attributes = decode_labels(r.column_blob(3));
        out.push_back(std::move(e));
      }))
    return err;
  return out;
}

caf::expected<device_infos> embedded_store::devices() {
  auto st = db_.prepare(
    "SELECT s.device_id, s.stream, s.points, s.batches, s.duplicates, "
    "s.last_sequence, s.last_sequence - (SELECT count(*) FROM batches b "
    "WHERE b.device_id = s.device_id AND b.stream = s.stream "
    "AND b.epoch = s.epoch), s.last_seen, coalesce(c.tier, 0), "
    "coalesce(c.total_ram, 0), coalesce(c.available_ram, 0), "
    "coalesce(c.total_disk, 0), coalesce(c.available_disk, 0), "
    "coalesce(c.cpu_cores, 0), coalesce(c.has_sqlite, 0), "
    "coalesce(c.has_network, 0) FROM streams s LEFT JOIN device_capability c "
    "ON c.device_id = s.device_id ORDER BY s.device_id, s.stream");
  if (!st)
    return st.error();
  device_infos out;
  for (;;) {
    auto row = st->step();
    if (!row)
      return row.error();
    if (!*row)
      break;
    device_info d;
    d.device_id = st->column_text(0);
    d.stream = st->column_text(1);
    d.points_received = st->column_int(2);
    d.batches_received = st->column_int(3);
    d.duplicates = st->column_int(4);
    d.last_acked_sequence = st->column_int(5);
    d.gaps = st->column_int(6);
    d.last_seen_ms = st->column_int(7);
    auto& c = d.capability;
    c.tier = st->column_int(8);
    c.total_ram = st->column_int(9);
    c.available_ram = st->column_int(10);
    c.total_disk = st->column_int(11);
    c.available_disk = st->column_int(12);
    c.cpu_cores = st->column_int(13);
    c.has_sqlite = st->column_int(14) != 0;
    c.has_network = st->column_int(15) != 0;
    out.push_back(std::move(d));
  }
  return out;
}

caf::expected<metric_samples> embedded_store::points(const std::string& device) {
  auto st = db_.prepare(
    "SELECT s.name, s.labels, p.ts, p.bits FROM points p JOIN series s ON "
    "s.id = p.series_id WHERE p.device_id = ?1 ORDER BY p.rowid");
  if (!st)
    return st.error();
  st->bind(1, device);
  metric_samples out;
  for (;;) {
    auto row = st->step();
    if (!row)
      return row.error();
    if (!*row)
      break;
    metric_sample x;
    x.name = st->column_text(0);
    x.labels = decode_labels(st->column_blob(1));
    x.timestamp_ms = st->column_int(2);
    x.value = st->column_exact(3);
    out.push_back(std::move(x));
  }
  return out;
}

actor_stats embedded_store::stats() {
  auto out = counters_.report();
  out.counters["series"] = static_cast<int64_t>(series_.size());
  return out;
}

} // namespace fleetd
