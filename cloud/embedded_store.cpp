#include "cloud/embedded_store.hpp"

#include <caf/typed_event_based_actor.hpp>

#include "messages/labels.hpp"
#include "messages/error.hpp"
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
  sequence INTEGER NOT NULL,
  series_id INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  value REAL NOT NULL);
CREATE INDEX IF NOT EXISTS points_by_device ON points (device_id, sequence);
)";

} // namespace

caf::expected<cloud_store> cloud_store::open(const std::string& path,
                                             clock_ptr clock) {
  auto db = sqlite::database::open(path, "FULL");
  if (!db)
    return db.error();
  auto check = db->quick_check();
  if (check != "ok")
    return make_error(ec::storage_failed, path + ": " + check);
  if (auto err = db->exec(schema))
    return err;
  cloud_store out;
  out.clock_ = std::move(clock);
  out.db_ = std::move(*db);
  if (auto err = out.load_series())
    return err;
  return out;
}

caf::error cloud_store::load_series() {
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

caf::expected<int64_t> cloud_store::series_id(const metric_sample& x) {
  auto labels = encode_labels(x.labels);
  auto key = x.name + '\0' + labels;
  if (auto i = series_.find(key); i != series_.end())
    return i->second;
  auto ins = db_.prepare("INSERT INTO series (name, labels) VALUES (?1, ?2)");
  if (!ins)
    return ins.error();
  ins->bind(1, x.name).bind_blob(2, labels);
  if (auto err = ins->run())
    return err;
  auto id = db_.last_insert_rowid();
  series_.emplace(std::move(key), id);
  return id;
}

caf::expected<ingest_outcome> cloud_store::write(const ingest_batch& b) {
  ingest_outcome out;
  auto now = clock_->now_ms();
  auto known_series = series_.size();
  auto err = sqlite::transaction(db_, [&]() -> caf::error {
    auto sel = db_.prepare("SELECT last_sequence, epoch FROM streams "
                           "WHERE device_id = ?1 AND stream = ?2");
    if (!sel)
      return sel.error();
    sel->bind(1, b.device_id).bind(2, b.stream);
    auto row = sel->step();
    if (!row)
      return row.error();
    int64_t last = *row ? sel->column_int(0) : 0;
    // A new epoch is a store numbering from 1 again: its own sequence space.
    bool new_epoch = *row && sel->column_text(1) != b.epoch;
    if (new_epoch) {
      log_warning("embedded_store", b.device_id, "/", b.stream,
                  ": device store started afresh (epoch ", b.epoch,
                  "); numbering restarts");
      last = 0;
    }
    auto seen = db_.prepare("SELECT checksum FROM batches WHERE device_id = ?1 "
                            "AND stream = ?2 AND epoch = ?4 AND sequence = ?3");
    if (!seen)
      return seen.error();
    seen->bind(1, b.device_id).bind(2, b.stream).bind(3, b.sequence).bind(
      4, b.epoch);
    auto had = seen->step();
    if (!had)
      return had.error();
    if (*had && seen->column_blob(0) != b.checksum)
      return make_error(ec::bad_sequence,
                        "sequence " + std::to_string(b.sequence)
                          + " was already received with other content");
    // A never-seen sequence below the ack fills a recorded gap: keep it.
    if (b.sequence > last + max_sequence_gap)
      return make_error(ec::bad_sequence,
                        "sequence " + std::to_string(b.sequence)
                          + " is too far ahead of the acked "
                          + std::to_string(last));
    if (*had) {
      out.duplicate = true;
      out.last_acked = last;
      auto dup = db_.prepare("UPDATE streams SET duplicates = duplicates + 1, "
                             "last_seen = ?3 WHERE device_id = ?1 AND "
                             "stream = ?2");
      if (!dup)
        return dup.error();
      dup->bind(1, b.device_id).bind(2, b.stream).bind(3, now);
      return dup->run();
    }
    auto ins = db_.prepare("INSERT INTO points (device_id, sequence, "
                           "series_id, ts, value) VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!ins)
      return ins.error();
    for (auto& x : b.samples) {
      auto sid = series_id(x);
      if (!sid)
        return sid.error();
      ins->reset().bind(1, b.device_id).bind(2, b.sequence).bind(3, *sid)
        .bind(4, x.timestamp_ms).bind(5, x.value);
      if (auto err = ins->run())
        return err;
    }
    auto n = static_cast<int64_t>(b.samples.size());
    auto rec = db_.prepare("INSERT INTO batches (device_id, stream, epoch, "
                           "sequence, points, received_at, checksum) "
                           "VALUES (?1, ?2, ?6, ?3, ?4, ?5, ?7)");
    if (!rec)
      return rec.error();
    rec->bind(1, b.device_id).bind(2, b.stream).bind(3, b.sequence).bind(4, n)
      .bind(5, now).bind(6, b.epoch).bind_blob(7, b.checksum);
    if (auto err = rec->run())
      return err;
    out.last_acked = std::max(last, b.sequence);
    out.stored = n;
    auto up = db_.prepare(
      "INSERT INTO streams (device_id, stream, epoch, last_sequence, epochs, "
      "points, batches, duplicates, last_seen) "
      "VALUES (?1, ?2, ?6, ?3, 1, ?4, 1, 0, ?5) "
      "ON CONFLICT (device_id, stream) DO UPDATE SET last_sequence = ?3, "
      "points = points + ?4, batches = batches + 1, last_seen = ?5, "
      "epochs = epochs + (epoch != ?6), epoch = ?6");
    if (!up)
      return up.error();
    up->bind(1, b.device_id).bind(2, b.stream).bind(3, out.last_acked)
      .bind(4, n).bind(5, now).bind(6, b.epoch);
    return up->run();
  });
  if (err) {
    if (series_.size() != known_series) {
      // Series ids from a rolled-back transaction do not exist: reload.
      load_series();
    }
    ++failures_;
    last_error_ = render(err);
    return err;
  }
  if (out.duplicate) {
    ++duplicates_;
  } else {
    ++batches_stored_;
    points_stored_ += out.stored;
  }
  return out;
}

caf::expected<device_infos> cloud_store::devices() {
  auto st = db_.prepare(
    "SELECT s.device_id, s.stream, s.points, s.batches, s.duplicates, "
    "s.last_sequence, s.last_sequence - (SELECT count(*) FROM batches b "
    "WHERE b.device_id = s.device_id AND b.stream = s.stream "
    "AND b.epoch = s.epoch), s.last_seen "
    "FROM streams s ORDER BY s.device_id, s.stream");
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
    out.push_back(std::move(d));
  }
  return out;
}

caf::expected<metric_samples> cloud_store::points(const std::string& device) {
  auto st = db_.prepare(
    "SELECT s.name, s.labels, p.ts, p.value FROM points p JOIN series s ON "
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
    x.value = st->column_double(3);
    out.push_back(std::move(x));
  }
  return out;
}

actor_stats cloud_store::stats() {
  actor_stats out;
  out.name = "embedded_store";
  out.state = last_error_.empty() ? "ok" : "last error: " + last_error_;
  out.counters["batches_stored"] = batches_stored_;
  out.counters["points_stored"] = points_stored_;
  out.counters["duplicates"] = duplicates_;
  out.counters["failures"] = failures_;
  out.counters["series"] = static_cast<int64_t>(series_.size());
  return out;
}

cloud_store_actor::behavior_type
embedded_store(cloud_store_actor::stateful_pointer<embedded_store_state> self,
               std::shared_ptr<cloud_store> store) {
  self->state.store = std::move(store);
  auto& st = *self->state.store;
  return {
    [&st](write_atom, const ingest_batch& b) -> caf::result<ingest_outcome> {
      auto r = st.write(b);
      if (!r) {
        log_warning("embedded_store", "cannot store batch ", b.sequence,
                    " of ", b.device_id, "/", b.stream, ": ",
                    render(r.error()));
        return r.error();
      }
      return *r;
    },
    [&st](devices_atom) -> caf::result<device_infos> {
      return to_result(st.devices());
    },
    [&st](points_atom, const std::string& device) -> caf::result<metric_samples> {
      return to_result(st.points(device));
    },
    [&st](stats_atom) { return st.stats(); },
  };
}

} // namespace fleetd
