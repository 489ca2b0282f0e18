#include "edge/storage.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "runtime/logger.hpp"

namespace fleetd {

namespace {

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
  value REAL NOT NULL);
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
CREATE TABLE IF NOT EXISTS stream_state (
  stream TEXT PRIMARY KEY,
  next_sequence INTEGER NOT NULL,
  batched_upto INTEGER NOT NULL,
  acked_sequence INTEGER NOT NULL,
  acked_upto INTEGER NOT NULL) WITHOUT ROWID;
)";

std::string series_key(const std::string& name, const std::string& labels) {
  std::string key = name;
  key += '\0';
  key += labels;
  return key;
}

// A file we cannot use is renamed, never deleted: an operator may want it.
bool move_aside(const std::string& path, int64_t now_ms) {
  auto target = path + ".corrupt-" + std::to_string(now_ms);
  bool ok = rename(path.c_str(), target.c_str()) == 0;
  for (auto suffix : {"-wal", "-shm"}) {
    auto side = path + suffix;
    rename(side.c_str(), (target + suffix).c_str());
  }
  if (ok)
    log_error("storage", "database ", path, " is unusable; moved aside to ",
              target, " and starting a fresh one");
  else
    log_error("storage", "cannot move ", path, " aside: ", strerror(errno));
  return ok;
}

} // namespace

caf::expected<edge_store> edge_store::open(const storage_config& cfg) {
  edge_store out;
  out.cfg_ = cfg;
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto db = sqlite::database::open(cfg.path, "FULL");
    caf::error err;
    if (db) {
      auto check = db->quick_check();
      if (check == "ok") {
        out.db_ = std::move(*db);
        err = out.db_.exec(schema);
        if (!err)
          err = out.prepare();
        if (!err)
          return out;
      } else {
        err = make_error(ec::storage_failed, "quick_check: " + check);
      }
    } else {
      err = db.error();
    }
    auto code = static_cast<ec>(err.code());
    if (code == ec::disk_full || code == ec::io_error || attempt > 0)
      return err;
    log_error("storage", "cannot use ", cfg.path, ": ", render(err));
    out.db_.close();
    if (!move_aside(cfg.path, cfg.clock->now_ms()))
      return err;
    ++out.moved_aside_;
  }
  return make_error(ec::storage_failed, "cannot open " + cfg.path);
}

caf::error edge_store::prepare() {
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
  step(insert_metric_,
       "INSERT INTO metrics (series_id, ts, value) VALUES (?1, ?2, ?3)");
  step(insert_series_, "INSERT INTO series (name, labels) VALUES (?1, ?2)");
  step(select_unbatched_,
       "SELECT id, series_id, ts, value FROM metrics WHERE id > ?1 "
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

caf::expected<int64_t> edge_store::series_id(const metric_sample& x) {
  auto labels = encode_labels(x.labels);
  auto key = series_key(x.name, labels);
  if (auto i = series_.find(key); i != series_.end())
    return i->second;
  insert_series_.reset().bind(1, x.name).bind_blob(2, labels);
  if (auto err = insert_series_.run())
    return err;
  auto id = db_.last_insert_rowid();
  series_.emplace(std::move(key), id);
  series_by_id_.emplace(id, std::make_pair(x.name, x.labels));
  return id;
}

caf::expected<int64_t> edge_store::store(const metric_samples& xs) {
  // New series ids live only if the transaction commits: remember to forget.
  auto known_before = series_.size();
  auto err = sqlite::transaction(db_, [&]() -> caf::error {
    for (auto& x : xs) {
      auto sid = series_id(x);
      if (!sid)
        return sid.error();
      insert_metric_.reset().bind(1, *sid).bind(2, x.timestamp_ms).bind(3,
                                                                        x.value);
      if (auto err = insert_metric_.run())
        return err;
    }
    return caf::none;
  });
  if (err) {
    if (series_.size() != known_before) {
      series_.clear();
      series_by_id_.clear();
      prepare();
    }
    ++store_failures_;
    last_error_ = render(err);
    return err;
  }
  points_stored_ += static_cast<int64_t>(xs.size());
  return static_cast<int64_t>(xs.size());
}

caf::expected<unbatched_points> edge_store::fetch(const std::string& stream,
                                                  int64_t max) {
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
  select_unbatched_.reset().bind(1, batched_upto).bind(2, max);
  for (;;) {
    auto more = select_unbatched_.step();
    if (!more)
      return more.error();
    if (!*more)
      break;
    metric_sample s;
    out.last_id = select_unbatched_.column_int(0);
    auto sid = select_unbatched_.column_int(1);
    if (auto i = series_by_id_.find(sid); i != series_by_id_.end()) {
      s.name = i->second.first;
      s.labels = i->second.second;
    }
    s.timestamp_ms = select_unbatched_.column_int(2);
    s.value = select_unbatched_.column_double(3);
    out.samples.push_back(std::move(s));
  }
  select_unbatched_.reset();
  return out;
}

caf::expected<int64_t> edge_store::enqueue(const queued_batch& b) {
  auto err = sqlite::transaction(db_, [&]() -> caf::error {
    select_state_.reset().bind(1, b.stream);
    auto row = select_state_.step();
    if (!row)
      return row.error();
    int64_t expected_seq = *row ? select_state_.column_int(0) : 1;
    select_state_.reset();
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
  if (err) {
    last_error_ = render(err);
    return err;
  }
  ++batches_enqueued_;
  return b.sequence;
}

caf::expected<queued_batches> edge_store::pending(const std::string& stream,
                                                  int64_t max) {
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

caf::expected<int64_t> edge_store::ack(const std::string& stream,
                                       int64_t sequence) {
  int64_t deleted = 0;
  auto err = sqlite::transaction(db_, [&]() -> caf::error {
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
    delete_acked_.reset().bind(1, stream).bind(2, sequence);
    if (auto err = delete_acked_.run())
      return err;
    deleted = db_.changes();
    update_acked_.reset().bind(1, stream).bind(2, sequence).bind(3, last_id);
    return update_acked_.run();
  });
  if (err) {
    last_error_ = render(err);
    return err;
  }
  batches_acked_ += deleted;
  return deleted;
}

caf::error edge_store::checkpoint() {
  return db_.exec("PRAGMA wal_checkpoint(TRUNCATE)");
}

actor_stats edge_store::stats() {
  actor_stats out;
  out.name = "storage";
  out.state = last_error_.empty() ? "ok" : "last error: " + last_error_;
  out.counters["points_stored"] = points_stored_;
  out.counters["store_failures"] = store_failures_;
  out.counters["batches_enqueued"] = batches_enqueued_;
  out.counters["batches_acked"] = batches_acked_;
  out.counters["series"] = static_cast<int64_t>(series_.size());
  out.counters["moved_aside"] = moved_aside_;
  auto count = [this](const char* sql) -> int64_t {
    auto st = db_.prepare(sql);
    if (!st)
      return -1;
    auto row = st->step();
    return row && *row ? st->column_int(0) : -1;
  };
  out.counters["metrics_rows"] = count("SELECT count(*) FROM metrics");
  out.counters["queued_batches"] = count("SELECT count(*) FROM sync_queue");
  out.counters["unbatched_points"] = count(
    "SELECT count(*) FROM metrics WHERE id > coalesce((SELECT batched_upto "
    "FROM stream_state WHERE stream = 'metrics'), 0)");
  return out;
}

storage_actor::behavior_type
storage(storage_actor::stateful_pointer<storage_state> self,
        std::shared_ptr<edge_store> store) {
  self->state.store = std::move(store);
  auto& st = *self->state.store;
  return {
    [&st](store_atom, const metric_samples& xs) -> caf::result<int64_t> {
      auto n = st.store(xs);
      if (!n) {
        log_warning("storage", "store of ", xs.size(), " samples failed: ",
                    render(n.error()));
        return n.error();
      }
      return *n;
    },
    [&st](fetch_atom, const std::string& stream,
          int64_t max) -> caf::result<unbatched_points> {
      auto r = st.fetch(stream, max);
      if (!r)
        return r.error();
      return std::move(*r);
    },
    [&st](enqueue_atom, const queued_batch& b) -> caf::result<int64_t> {
      auto r = st.enqueue(b);
      if (!r)
        return r.error();
      return *r;
    },
    [&st](pending_atom, const std::string& stream,
          int64_t max) -> caf::result<queued_batches> {
      auto r = st.pending(stream, max);
      if (!r)
        return r.error();
      return std::move(*r);
    },
    [&st](ack_atom, const std::string& stream,
          int64_t sequence) -> caf::result<int64_t> {
      auto r = st.ack(stream, sequence);
      if (!r)
        return r.error();
      return *r;
    },
    [&st](flush_atom) -> caf::result<bool> {
      if (auto err = st.checkpoint())
        return err;
      return true;
    },
    [&st](stats_atom) { return st.stats(); },
  };
}

} // namespace fleetd
