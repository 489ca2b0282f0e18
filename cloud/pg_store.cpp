#include "cloud/pg_store.hpp"

#include <ctime>

#include "cloud/pg_migrate.hpp"
#include "messages/decode_budget.hpp"
#include "messages/error.hpp"
#include "messages/journal_codec.hpp"
#include "messages/labels.hpp"
#include "runtime/config_check.hpp"
#include "runtime/logger.hpp"

namespace fleetd {

namespace {

constexpr int64_t day_ms = 86'400'000;

// The UTC day of `ms` as PostgreSQL reads a date.
std::string utc_day(int64_t ms) {
  auto secs = static_cast<time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

// A write to a day without its partition (check_violation).
constexpr const char* missing_partition = "23514";

} // namespace

void declare(option_set& opts, store_config& x) {
  opts.add("store.backend", x.backend, "embedded",
           "Where the cloud keeps its state: embedded (SQLite files in the "
           "data directory, one node) or postgresql (shared by all nodes)");
  opts.add("store.postgresql-url", x.postgresql_url, "",
           "postgresql://user:password@host:port/db of the node's role (a "
           "member of fleetd_app, never the schema's owner); with "
           "store.backend = postgresql",
           false, true);
  opts.add("store.postgresql-owner-url", x.postgresql_owner_url, "",
           "URL of the schema's owner: the node applies missing migrations "
           "at start (\"\": a DBA applies them)",
           false, true);
  opts.add("store.postgresql-writers", x.postgresql_writers, 2, "connections",
           "Connections writing batches at once, with store.backend = "
           "postgresql (each device's batches always on the same one); "
           "PgBouncer's pool must allow as many per node",
           1, 32);
  opts.add("store.postgresql-statement-timeout",
           x.postgresql_statement_timeout_ms, 30000, "ms",
           "A statement of the node running longer is cancelled by the "
           "server (set per transaction, safe behind PgBouncer; 0: the "
           "server's own statement_timeout)",
           0, 3600000);
}

caf::error validate(const store_config& x) {
  if (x.backend == "embedded") {
    if (!x.postgresql_url.empty() || !x.postgresql_owner_url.empty())
      return bad_config("store.postgresql-url: only with store.backend = "
                        "postgresql");
    return caf::none;
  }
  if (x.backend != "postgresql")
    return bad_config("store.backend: '" + x.backend
                      + "' is neither embedded nor postgresql");
  if (x.postgresql_url.empty())
    return bad_config("store.postgresql-url: required with store.backend = "
                      "postgresql");
  return caf::none;
}

caf::expected<pg_store> pg_store::open(const std::string& url,
                                       clock_ptr clock,
                                       pg::connect_options opts,
                                       int64_t writers,
                                       journal_config journal) {
  auto conn = open_node_connection(url, opts);
  if (!conn)
    return conn.error();
  pg_store out;
  out.clock_ = std::move(clock);
  out.url_ = url;
  out.opts_ = opts;
  out.writers_ = writers;
  out.journal_ = std::move(journal);
  out.conn_ = std::move(*conn);
  return out;
}

caf::expected<std::vector<std::shared_ptr<cloud_store_backend>>>
pg_store::more_writers() {
  std::vector<std::shared_ptr<cloud_store_backend>> out;
  for (int64_t i = 1; i < writers_; ++i) {
    auto st = open(url_, clock_, opts_, 1, journal_);
    if (!st)
      return st.error();
    out.push_back(std::make_shared<pg_store>(std::move(*st)));
  }
  return out;
}

caf::expected<pg_store::device_ref>
pg_store::split(const std::string& device_id) {
  auto slash = device_id.find('/');
  if (slash == std::string::npos || slash == 0
      || slash + 1 == device_id.size())
    return make_error(ec::unknown_device,
                      "device id '" + device_id + "' names no org/device");
  return device_ref{device_id.substr(0, slash), device_id.substr(slash + 1)};
}

caf::error pg_store::reconnect() {
  if (conn_.ok())
    return caf::none;
  log_warning("pg_store", "connection lost; connecting again");
  // Temp stage tables, if any, went with the old server connection.
  return conn_.reset();
}

caf::error pg_store::ensure_days(int64_t now) {
  auto today = now / day_ms;
  day_ = utc_day(now);
  if (today == ensured_day_)
    return caf::none;
  if (auto err = conn_.begin())
    return err;
  auto made = ensure_partitions(conn_, now, 2);
  if (!made) {
    conn_.rollback();
    return made.error();
  }
  if (auto err = conn_.commit())
    return err;
  ensured_day_ = today;
  return caf::none;
}

caf::error pg_store::check_journal(int64_t now) {
  if (!journal_.enabled)
    return caf::none;
  auto hour = now / 3'600'000;
  if (hour != ensured_hour_) {
    auto r = conn_.exec("SELECT fleetd_ensure_journal_partitions($1, 2)",
                        {hour});
    if (!r)
      return r.error();
    ensured_hour_ = hour;
  }
  if (bound_checked_ms_ >= 0 && now - bound_checked_ms_ < 1000)
    return bound_;
  auto r = conn_.exec("SELECT bytes, oldest_ms FROM fleetd_journal_bound()");
  if (!r)
    return r.error();
  bound_checked_ms_ = now;
  bound_ = check_journal_bound(journal_, r->int64(0, 0), r->int64(0, 1), now);
  return bound_;
}

void pg_store::journal_call(const ingest_batch& b, const device_ref& d,
                            int64_t now, std::vector<pg::call>& tail) {
  auto x = journal_entry_of(b, d.org, d.device, now, std::move(decoded_));
  tail.push_back({"INSERT INTO journal (received_ms, org, device, entry) "
                  "VALUES ($1, $2, $3, $4)",
                  {now, d.org, d.device,
                   pg::param::bytea(encode_journal_entry(x))}});
}

caf::error pg_store::ensure_org(const std::string& org, int64_t now) {
  if (orgs_.count(org))
    return caf::none;
  // Operators list devices org by org: the org must be in the registry.
  auto r = conn_.exec("INSERT INTO orgs (name, created_ms) VALUES ($1, $2) "
                      "ON CONFLICT DO NOTHING",
                      {org, now});
  if (!r)
    return r.error();
  orgs_.insert(org);
  return caf::none;
}

caf::expected<ingest_outcome> pg_store::write(const ingest_batch& b) {
  auto d = split(b.device_id);
  if (!d)
    return d.error();
  auto out = write_once(b, *d);
  // A missing partition is the store's own failure, never the batch's;
  // a lost race on the batches key is answered like a duplicate (the
  // second try finds the batch held); a lost connection is made again (a
  // commit whose answer was lost is found held).
  if (!out && (conn_.last_sqlstate() == missing_partition
               || conn_.last_sqlstate() == pg::unique_violation
               || is_error(out.error(), ec::unreachable))) {
    if (conn_.last_sqlstate() == missing_partition)
      ensured_day_ = -1;
    else if (conn_.last_sqlstate() == pg::unique_violation)
      ++lost_races_;
    else
      ++reconnects_;
    out = write_once(b, *d);
  }
  counters_.count(out);
  return out;
}

caf::expected<ingest_outcome> pg_store::write_once(const ingest_batch& b,
                                                   const device_ref& d) {
  ingest_outcome out;
  auto now = clock_->now_ms();
  if (auto err = reconnect())
    return err;
  if (auto err = ensure_days(now))
    return err;
  if (auto err = ensure_org(d.org, now))
    return err;
  if (auto err = check_journal(now))
    return err;
  auto known_series = series_;
  if (auto err = write_batch(b, d, now, out)) {
    conn_.rollback();
    // Neither the session nor series ids of a rolled-back transaction exist.
    sessions_.erase(session_key{b.device_id, b.epoch});
    series_ = std::move(known_series);
    return err;
  }
  return out;
}

// The statements opening a batch's transaction, sent in one round trip:
// BEGIN, the org, the capability, the stream's ack (its row locked) and
// the batch if held. The last two results are the stream's and the batch's.
std::vector<pg::call> pg_store::opening(const ingest_batch& b,
                                        const device_ref& d, int64_t now) {
  std::vector<pg::call> out{{"BEGIN", {}}, conn_.scope(d.org)};
  // Third when asked: the last drop counters the stream declared.
  if (!b.declared.origin.empty())
    out.push_back({"SELECT origin, records, batches, collected, stored FROM "
                   "declared_drops WHERE org = $1 AND device = $2 AND "
                   "stream = $3",
                   {d.org, d.device, b.stream}});
  if (auto& c = b.capability; c.tier > 0)
    out.push_back(
      {"INSERT INTO device_capability (org, device, tier, total_ram, "
       "available_ram, total_disk, available_disk, cpu_cores, has_sqlite, "
       "has_network, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
       "$10, $11) ON CONFLICT (org, device) DO UPDATE SET tier = $3, "
       "total_ram = $4, available_ram = $5, total_disk = $6, "
       "available_disk = $7, cpu_cores = $8, has_sqlite = $9, "
       "has_network = $10, updated_ms = $11",
       {d.org, d.device, c.tier, c.total_ram, c.available_ram, c.total_disk,
        c.available_disk, c.cpu_cores, c.has_sqlite ? "t" : "f",
        c.has_network ? "t" : "f", now}});
  // FOR UPDATE: nodes writing one stream take turns on its row.
  out.push_back({"SELECT last_sequence, epoch FROM streams WHERE org = $1 "
                 "AND device = $2 AND stream = $3 FOR UPDATE",
                 {d.org, d.device, b.stream}});
  out.push_back({"SELECT checksum, points FROM batches WHERE org = $1 AND "
                 "device = "
                 "$2 AND stream = $3 AND epoch = $4 AND sequence = $5",
                 {d.org, d.device, b.stream, b.epoch, b.sequence}});
  return out;
}

int64_t pg_store::acked_sequence(const ingest_batch& b,
                                 const pg::result& stream) {
  if (stream.rows() == 0)
    return 0;
  // A new epoch is a store numbering from 1 again: its own sequence space.
  if (stream.text(0, 1) != b.epoch) {
    log_warning("pg_store", b.device_id, "/", b.stream,
                ": device store started afresh (epoch ", b.epoch,
                "); numbering restarts");
    return 0;
  }
  return stream.int64(0, 0);
}

caf::error pg_store::write_batch(const ingest_batch& b, const device_ref& d,
                                 int64_t now, ingest_outcome& out) {
  auto opened = conn_.pipeline(opening(b, d, now));
  if (!opened)
    return opened.error();
  auto& rs = *opened;
  auto last = acked_sequence(b, rs[rs.size() - 2]);
  auto checksum = rs.back().rows() > 0 ? rs.back().bytea(0, 0) : std::string{};
  auto had = held_verdict(b, last, rs.back().rows() > 0 ? &checksum : nullptr);
  if (!had)
    return had.error();
  // Held: ack at least this batch, also when it is of an older epoch.
  out.last_acked = std::max(last, b.sequence);
  std::vector<pg::call> tail;
  auto declared = declare_drops(b, d, b.declared.origin.empty() ? nullptr
                                                                : &rs[2],
                                tail, out);
  if (*had) {
    out.duplicate = true;
    tail.push_back({"UPDATE streams SET duplicates = duplicates + 1, "
                    "last_seen = $4 WHERE org = $1 AND device = $2 AND "
                    "stream = $3",
                    {d.org, d.device, b.stream, now}});
    count_delivery(b, d, now,
                   delivery_of_batch(0, rs.back().int64(0, 1), 0, declared),
                   tail);
  } else if (auto err = accept(b, d, now, out, tail)) {
    return err;
  } else {
    count_delivery(b, d, now,
                   delivery_of_batch(out.stored, 0,
                                     missing_growth(b.sequence, last),
                                     declared),
                   tail);
  }
  return finish(b, d, std::move(tail), out);
}

declared_sums pg_store::declare_drops(const ingest_batch& b,
                                     const device_ref& d,
                                     const pg::result* prev,
                                     std::vector<pg::call>& tail,
                                     ingest_outcome& out) {
  if (prev == nullptr)
    return {};
  std::string origin = prev->rows() > 0 ? std::string{prev->text(0, 0)}
                                        : std::string{};
  declared_sums last;
  if (prev->rows() > 0)
    last = {prev->int64(0, 1), prev->int64(0, 2), prev->int64(0, 3),
            prev->int64(0, 4)};
  out.report_decreased = declared_decreased(b.declared, origin, last);
  auto grown = declared_growth(b.declared, origin, last);
  if (grown.empty() && origin == b.declared.origin)
    return grown;
  auto keep = kept_declared(b.declared, origin, last, grown);
  tail.push_back({"INSERT INTO declared_drops (org, device, stream, origin, "
                  "records, batches, collected, stored) VALUES ($1, $2, $3, "
                  "$4, $5, $6, $7, $8) ON CONFLICT (org, device, stream) DO "
                  "UPDATE SET origin = $4, records = $5, batches = $6, "
                  "collected = $7, stored = $8",
                  {d.org, d.device, b.stream, b.declared.origin, keep.records,
                   keep.batches, keep.collected, keep.stored}});
  return grown;
}

void pg_store::count_delivery(const ingest_batch& b, const device_ref& d,
                              int64_t now, const delivery_counts& x,
                              std::vector<pg::call>& tail) {
  if (x.received == 0 && x.duplicates == 0 && x.missing == 0
      && x.declared_drops == 0 && x.collected == 0 && x.stored == 0)
    return;
  tail.push_back(
    {"INSERT INTO delivery (org, device, stream, hour_ms, received, "
     "duplicates, missing, declared_drops, collected, stored) VALUES ($1, "
     "$2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (org, device, stream, "
     "hour_ms) DO UPDATE SET received = delivery.received + $5, duplicates = "
     "delivery.duplicates + $6, missing = delivery.missing + $7, "
     "declared_drops = delivery.declared_drops + $8, collected = "
     "delivery.collected + $9, stored = delivery.stored + $10",
     {d.org, d.device, b.stream, delivery_hour(now), x.received, x.duplicates,
      x.missing, x.declared_drops, x.collected, x.stored}});
}

caf::expected<delivery_rows>
pg_store::delivery(const std::string& device_id, int64_t since_ms) {
  if (auto err = reconnect())
    return err;
  // A device is named "org/name" or by its name alone (every org's); "org/"
  // names every device of the org.
  std::string only_org;
  std::string name = device_id;
  if (auto slash = device_id.find('/'); slash != std::string::npos) {
    only_org = device_id.substr(0, slash);
    name = device_id.substr(slash + 1);
  }
  // Row security shows one org per transaction: read them org by org.
  auto orgs = conn_.exec("SELECT name FROM orgs ORDER BY name");
  if (!orgs)
    return orgs.error();
  delivery_rows out;
  for (int i = 0; i < orgs->rows(); ++i) {
    std::string org{orgs->text(i, 0)};
    if (!only_org.empty() && org != only_org)
      continue;
    auto err = pg::transaction(conn_, org, [&]() -> caf::error {
      auto r = conn_.exec(
        "SELECT device, stream, hour_ms, received, duplicates, missing, "
        "declared_drops, collected, stored FROM delivery WHERE hour_ms >= $1 "
        "AND ($2 = '' OR "
        "device = $2) ORDER BY device, stream, hour_ms",
        {delivery_hour(since_ms), name});
      if (!r)
        return r.error();
      for (int j = 0; j < r->rows(); ++j)
        out.push_back({org + "/" + std::string{r->text(j, 0)},
                       std::string{r->text(j, 1)}, r->int64(j, 2),
                       r->int64(j, 3), r->int64(j, 4), r->int64(j, 5),
                       r->int64(j, 6), r->int64(j, 7), r->int64(j, 8)});
      return caf::none;
    });
    if (err)
      return err;
  }
  return out;
}

// The accepted batch's rows, its batches row and its stream's ack.
caf::error pg_store::accept(const ingest_batch& b, const device_ref& d,
                            int64_t now, ingest_outcome& out,
                            std::vector<pg::call>& tail) {
  int64_t n = 0;
  decoded_.clear();
  if (auto err = insert_records(b, d, n, tail))
    return err;
  out.stored = n;
  // The journal row commits with the ack or not at all (same transaction).
  if (journal_.enabled)
    journal_call(b, d, now, tail);
  // The key guards double accept: a node losing the race fails here.
  tail.push_back({"INSERT INTO batches (org, device, stream, epoch, "
                  "sequence, checksum, points, received_at) VALUES "
                  "($1, $2, $3, $4, $5, $6, $7, $8)",
                  {d.org, d.device, b.stream, b.epoch, b.sequence,
                   pg::param::bytea(b.checksum), n, now}});
  tail.push_back(
    {"INSERT INTO streams (org, device, stream, epoch, last_sequence, "
     "epochs, points, batches, duplicates, last_seen, last_batch_ms) "
     "VALUES ($1, $2, $3, $4, $5, 1, $6, 1, 0, $7, $7) ON CONFLICT (org, "
     "device, stream) DO UPDATE SET last_sequence = $5, "
     "points = streams.points + $6, batches = streams.batches + 1, "
     "last_seen = $7, last_batch_ms = $7, "
     "epochs = streams.epochs + (streams.epoch <> $4)::int, epoch = $4",
     {d.org, d.device, b.stream, b.epoch, out.last_acked, n, now}});
  return caf::none;
}

// `tail`, the device's newer config and COMMIT, in one round trip.
caf::error pg_store::finish(const ingest_batch& b, const device_ref& d,
                            std::vector<pg::call> tail, ingest_outcome& out) {
  tail.push_back(config_call(d, b.config_version));
  tail.push_back({"COMMIT", {}});
  auto done = conn_.pipeline(tail);
  if (!done)
    return done.error();
  // COMMIT of a failed transaction rolls it back and says so, without error.
  if (done->back().command() != "COMMIT")
    return make_error(ec::database_error, "the transaction was rolled back");
  read_config((*done)[done->size() - 2], out.config);
  return caf::none;
}

// COPY refuses tables with row security (0A000): rows are copied into a
// temp table of the server connection (no RLS; kept empty by ON COMMIT,
// made again on whichever connection PgBouncer lends), then inserted
// through the policy in one statement.
struct staged_table {
  const char* table;
  const char* columns;
  const char* types;
};

const staged_table stage_points{
  "points", "org, day, device, epoch, sequence, series_id, ts, value, bits",
  "org text, day date, device text, epoch text, sequence bigint, "
  "series_id bigint, ts bigint, value float8, bits bigint"};
const staged_table stage_logs{
  "logs", "org, day, device, epoch, sequence, labels, ts, line",
  "org text, day date, device text, epoch text, sequence bigint, "
  "labels bytea, ts bigint, line text"};
const staged_table stage_events{
  "events", "org, day, device, epoch, sequence, ts, kind, message, attributes",
  "org text, day date, device text, epoch text, sequence bigint, ts bigint, "
  "kind text, message text, attributes bytea"};

caf::error pg_store::copy(const staged_table& t, const pg::copy_rows& rows,
                          std::vector<pg::call>& tail) {
  if (rows.rows() == 0)
    return caf::none;
  auto stage = std::string{"fleetd_stage_"} + t.table;
  auto made = conn_.exec_script("CREATE TEMP TABLE IF NOT EXISTS " + stage
                                + " (" + t.types + ") ON COMMIT DELETE ROWS");
  if (!made)
    return made.error();
  auto n = conn_.copy_in("COPY " + stage + " (" + t.columns
                           + ") FROM STDIN",
                         rows);
  if (!n)
    return n.error();
  // ORDER BY ctid: the rows' arrival order becomes their id order.
  tail.push_back({std::string{"INSERT INTO "} + t.table + " (" + t.columns
                    + ") SELECT " + t.columns + " FROM " + stage
                    + " ORDER BY ctid",
                  {}});
  return caf::none;
}

caf::error pg_store::insert_records(const ingest_batch& b,
                                    const device_ref& d, int64_t& n,
                                    std::vector<pg::call>& tail) {
  pg::copy_rows rows;
  auto head = [&] {
    rows.field(d.org).field(day_).field(d.device).field(b.epoch)
      .field(b.sequence);
  };
  if (!b.logs.empty()) {
    for (auto& x : b.logs) {
      head();
      rows.bytea(encode_labels(x.labels)).field(x.timestamp_ns)
        .field(x.line).end_row();
    }
    n = static_cast<int64_t>(b.logs.size());
    return copy(stage_logs, rows, tail);
  }
  if (!b.events.empty()) {
    for (auto& x : b.events) {
      head();
      rows.field(x.timestamp_ms).field(x.kind).field(x.message)
        .bytea(encode_labels(x.attributes)).end_row();
    }
    n = static_cast<int64_t>(b.events.size());
    return copy(stage_events, rows, tail);
  }
  return insert_points(b, d, n, tail);
}

caf::error pg_store::insert_points(const ingest_batch& b, const device_ref& d,
                                   int64_t& n, std::vector<pg::call>& tail) {
  // A batch's columns as four array parameters, the rest once: one
  // statement, no per-row text to parse twice (COPY + INSERT ... SELECT).
  pg::number_array sids, tss, values, bits;
  // value is for people (NULL for NaN); bits is exact.
  auto row = [&](int64_t sid, int64_t ts, double value) {
    sids.add(sid);
    tss.add(ts);
    if (value != value)
      values.null();
    else
      values.add(value);
    bits.add(static_cast<int64_t>(bits_of(value)));
  };
  if (b.columnar.empty()) {
    for (auto& x : b.samples) {
      auto sid = series_id(d.org, x.name, x.labels);
      if (!sid)
        return sid.error();
      row(*sid, x.timestamp_ms, x.value);
    }
  } else {
    indexed_points xs;
    auto ids = decode_in_session(b, d, xs, tail);
    if (!ids)
      return ids.error();
    for (auto& x : xs)
      row((*ids)[x.series], x.timestamp_ms, x.value);
    if (journal_.enabled)
      if (auto ws = session(b, d))
        for (auto& x : xs) {
          auto& key = (*ws)->codec.series[x.series];
          decoded_.push_back(
            metric_sample{key.first, key.second, x.timestamp_ms, x.value});
        }
  }
  n = static_cast<int64_t>(sids.size());
  if (n == 0)
    return caf::none;
  // WITH ORDINALITY ... ORDER BY: the batch's order becomes the id order.
  tail.push_back(
    {"INSERT INTO points (org, day, device, epoch, sequence, series_id, ts, "
     "value, bits) SELECT $1, $2::date, $3, $4, $5, u.s, u.t, u.v, u.b FROM "
     "unnest($6::bigint[], $7::bigint[], $8::float8[], $9::bigint[]) WITH "
     "ORDINALITY AS u(s, t, v, b, i) ORDER BY u.i",
     {d.org, day_, d.device, b.epoch, b.sequence, sids.done(), tss.done(),
      values.done(), bits.done()}});
  return caf::none;
}

caf::expected<int64_t> pg_store::series_id(const std::string& org,
                                           const std::string& name,
                                           const label_map& labels) {
  auto encoded = encode_labels(labels);
  auto key = org + '\0' + name + '\0' + encoded;
  if (auto i = series_.find(key); i != series_.end())
    return i->second;
  // Another node may have made it: insert unless there, then read it.
  auto ins = conn_.exec("INSERT INTO series (org, name, labels) VALUES ($1, "
                        "$2, $3) ON CONFLICT (org, key) DO NOTHING",
                        {org, name, pg::param::bytea(encoded)});
  if (!ins)
    return ins.error();
  auto r = conn_.exec("SELECT id FROM series WHERE org = $1 AND key = "
                      "decode(md5($2), 'hex') || sha256($3)",
                      {org, name, pg::param::bytea(encoded)});
  if (!r)
    return r.error();
  if (r->rows() != 1)
    return make_error(ec::database_error, "series of '" + name + "' vanished");
  auto id = r->int64(0, 0);
  series_.emplace(std::move(key), id);
  return id;
}

caf::expected<pg_store::wire_session*>
pg_store::session(const ingest_batch& b, const device_ref& d) {
  auto key = session_key{b.device_id, b.epoch};
  if (auto i = sessions_.find(key); i != sessions_.end())
    return &i->second;
  auto r = conn_.exec("SELECT s.name, s.labels, s.id FROM wire_series w JOIN "
                      "series s ON s.id = w.series_id WHERE w.org = $1 AND "
                      "w.device = $2 AND w.epoch = $3 ORDER BY w.idx",
                      {d.org, d.device, b.epoch});
  if (!r)
    return r.error();
  wire_session ws;
  for (int i = 0; i < r->rows(); ++i) {
    ws.codec.add(series_key{std::string{r->text(i, 0)},
                            decode_labels(r->bytea(i, 1))});
    ws.ids.push_back(r->int64(i, 2));
  }
  auto h = conn_.exec("SELECT history FROM wire_history WHERE org = $1 AND "
                      "device = $2 AND epoch = $3",
                      {d.org, d.device, b.epoch});
  if (!h)
    return h.error();
  auto history = h->rows() > 0 ? h->bytea(0, 0) : std::string{};
  if (auto err = ws.codec.load_history(history)) {
    // Without its histories the table is of no use: the device's next
    // batch is refused session_out_of_sync and starts a new session.
    log_warning("pg_store", b.device_id, ": series session of epoch ",
                b.epoch, " has no matching history; starting afresh");
    ws.codec.clear();
    ws.ids.clear();
  }
  return &sessions_.emplace(key, std::move(ws)).first->second;
}

caf::expected<std::vector<int64_t>>
pg_store::decode_in_session(const ingest_batch& b, const device_ref& d,
                            indexed_points& out,
                            std::vector<pg::call>& tail) {
  auto base = columnar_base(b.columnar);
  if (!base)
    return base.error();
  auto found = session(b, d);
  if (!found)
    return found.error();
  auto ws = *found;
  if (*base == 0) {
    // The device started a new series session.
    ws->codec.clear();
    ws->ids.clear();
    auto del = conn_.exec("DELETE FROM wire_series WHERE org = $1 AND "
                          "device = $2 AND epoch = $3",
                          {d.org, d.device, b.epoch});
    if (!del)
      return del.error();
  }
  auto known = ws->codec.series.size();
  decode_budget budget{b.decode_budget > 0 ? b.decode_budget
                                           : ws->codec.max_decoded_bytes};
  auto xs = decode_columnar_indexed(b.columnar, ws->codec, budget);
  if (!xs && is_error(xs.error(), ec::session_out_of_sync) && *base != 0) {
    // Another node may have advanced the session: reload it from the rows
    // (under the stream's row lock) and decode once more.
    sessions_.erase(session_key{b.device_id, b.epoch});
    found = session(b, d);
    if (!found)
      return found.error();
    ws = *found;
    known = ws->codec.series.size();
    decode_budget again{b.decode_budget > 0 ? b.decode_budget
                                            : ws->codec.max_decoded_bytes};
    xs = decode_columnar_indexed(b.columnar, ws->codec, again);
  }
  if (!xs)
    return xs.error();
  if (auto err = save_session(b, d, *ws, known, tail))
    return err;
  out = std::move(*xs);
  return ws->ids;
}

caf::error pg_store::save_session(const ingest_batch& b, const device_ref& d,
                                  wire_session& ws, size_t known,
                                  std::vector<pg::call>& tail) {
  for (auto i = known; i < ws.codec.series.size(); ++i) {
    auto& key = ws.codec.series[i];
    auto sid = series_id(d.org, key.first, key.second);
    if (!sid)
      return sid.error();
    ws.ids.push_back(*sid);
    tail.push_back({"INSERT INTO wire_series (org, device, epoch, idx, "
                    "series_id) VALUES ($1, $2, $3, $4, $5)",
                    {d.org, d.device, b.epoch, static_cast<int64_t>(i),
                     *sid}});
  }
  tail.push_back({"INSERT INTO wire_history (org, device, epoch, history) "
                  "VALUES ($1, $2, $3, $4) ON CONFLICT (org, device, "
                  "epoch) DO UPDATE SET history = $4",
                  {d.org, d.device, b.epoch,
                   pg::param::bytea(ws.codec.save_history())}});
  return caf::none;
}

pg::call pg_store::config_call(const device_ref& d, int64_t have) {
  return {"SELECT version, batch_size, sync_interval_ms, retention_ms, "
          "zstd_level FROM device_config WHERE org = $1 AND device = $2 AND "
          "version > $3",
          {d.org, d.device, have}};
}

void pg_store::read_config(const pg::result& r, cloud_settings& out) {
  if (r.rows() == 0)
    return;
  out.version = r.int64(0, 0);
  out.batch_size = r.int64(0, 1);
  out.sync_interval_ms = r.int64(0, 2);
  out.retention_ms = r.int64(0, 3);
  out.zstd_level = r.int64(0, 4);
}

caf::error pg_store::config_for(const device_ref& d, int64_t have,
                                cloud_settings& out) {
  auto c = config_call(d, have);
  auto r = conn_.exec(c.sql, c.ps);
  if (!r)
    return r.error();
  read_config(*r, out);
  return caf::none;
}

caf::expected<cloud_settings>
pg_store::get_config(const std::string& device_id) {
  auto d = split(device_id);
  if (!d)
    return d.error();
  cloud_settings x;
  auto err = pg::transaction(conn_, d->org, [&]() -> caf::error {
    return config_for(*d, 0, x);
  });
  if (err)
    return err;
  return x;
}

caf::expected<cloud_settings>
pg_store::set_config(const std::string& device_id, const settings_change& c) {
  if (auto err = check_settings_change(c))
    return err;
  auto d = split(device_id);
  if (!d)
    return d.error();
  if (auto err = ensure_org(d->org, clock_->now_ms()))
    return err;
  cloud_settings x;
  auto err = pg::transaction(conn_, d->org, [&]() -> caf::error {
    // The current version: the fields the change does not name keep it.
    if (auto err = config_for(*d, 0, x))
      return err;
    if (x.version == 0 && !c.create) {
      auto seen = conn_.exec("SELECT 1 FROM streams WHERE org = $1 AND "
                             "device = $2 LIMIT 1",
                             {d->org, d->device});
      if (!seen)
        return seen.error();
      if (seen->rows() == 0)
        return make_error(ec::unknown_device,
                          "the cloud has never heard from device '"
                            + device_id
                            + "' (--create sets its settings before it "
                              "first syncs)");
    }
    apply_settings_change(x, c);
    auto up = conn_.exec(
      "INSERT INTO device_config (org, device, version, batch_size, "
      "sync_interval_ms, retention_ms, zstd_level) VALUES ($1, $2, $3, $4, "
      "$5, $6, $7) ON CONFLICT (org, device) DO UPDATE SET version = $3, "
      "batch_size = $4, sync_interval_ms = $5, retention_ms = $6, "
      "zstd_level = $7",
      {d->org, d->device, x.version, x.batch_size, x.sync_interval_ms,
       x.retention_ms, x.zstd_level});
    return up ? caf::none : up.error();
  });
  if (err)
    return err;
  return x;
}

caf::expected<log_lines> pg_store::logs(const std::string& device_id) {
  auto d = split(device_id);
  if (!d)
    return d.error();
  log_lines out;
  auto err = pg::transaction(conn_, d->org, [&]() -> caf::error {
    auto r = conn_.exec("SELECT labels, ts, line FROM logs WHERE org = $1 "
                        "AND device = $2 ORDER BY id",
                        {d->org, d->device});
    if (!r)
      return r.error();
    for (int i = 0; i < r->rows(); ++i)
      out.push_back(log_line{decode_labels(r->bytea(i, 0)), r->int64(i, 1),
                             std::string{r->text(i, 2)}});
    return caf::none;
  });
  if (err)
    return err;
  return out;
}

caf::expected<event_records> pg_store::events(const std::string& device_id) {
  auto d = split(device_id);
  if (!d)
    return d.error();
  event_records out;
  auto err = pg::transaction(conn_, d->org, [&]() -> caf::error {
    auto r = conn_.exec("SELECT ts, kind, message, attributes FROM events "
                        "WHERE org = $1 AND device = $2 ORDER BY id",
                        {d->org, d->device});
    if (!r)
      return r.error();
    for (int i = 0; i < r->rows(); ++i) {
      event_record e;
      e.timestamp_ms = r->int64(i, 0);
      e.kind = std::string{r->text(i, 1)};
      e.message = std::string{r->text(i, 2)};
      e.attributes = decode_labels(r->bytea(i, 3));
      out.push_back(std::move(e));
    }
    return caf::none;
  });
  if (err)
    return err;
  return out;
}

caf::expected<metric_samples> pg_store::points(const std::string& device_id) {
  auto d = split(device_id);
  if (!d)
    return d.error();
  metric_samples out;
  auto err = pg::transaction(conn_, d->org, [&]() -> caf::error {
    auto r = conn_.exec("SELECT s.name, s.labels, p.ts, p.bits FROM points p "
                        "JOIN series s ON s.id = p.series_id WHERE p.org = $1 "
                        "AND p.device = $2 ORDER BY p.id",
                        {d->org, d->device});
    if (!r)
      return r.error();
    for (int i = 0; i < r->rows(); ++i) {
      metric_sample x;
      x.name = std::string{r->text(i, 0)};
      x.labels = decode_labels(r->bytea(i, 1));
      x.timestamp_ms = r->int64(i, 2);
      x.value = double_of(static_cast<uint64_t>(r->int64(i, 3)));
      out.push_back(std::move(x));
    }
    return caf::none;
  });
  if (err)
    return err;
  return out;
}

caf::expected<device_infos> pg_store::devices_of(const std::string& org) {
  device_infos out;
  auto err = pg::transaction(conn_, org, [&]() -> caf::error {
    auto r = conn_.exec(
      "SELECT s.device, s.stream, s.points, s.batches, s.duplicates, "
      "s.last_sequence, s.last_sequence - (SELECT count(*) FROM batches b "
      "WHERE b.org = s.org AND b.device = s.device AND b.stream = s.stream "
      "AND b.epoch = s.epoch), s.last_seen, coalesce(c.tier, 0), "
      "coalesce(c.total_ram, 0), coalesce(c.available_ram, 0), "
      "coalesce(c.total_disk, 0), coalesce(c.available_disk, 0), "
      "coalesce(c.cpu_cores, 0), coalesce(c.has_sqlite, false), "
      "coalesce(c.has_network, false) FROM streams s LEFT JOIN "
      "device_capability c ON c.org = s.org AND c.device = s.device "
      "ORDER BY s.device, s.stream");
    if (!r)
      return r.error();
    for (int i = 0; i < r->rows(); ++i) {
      device_info x;
      x.device_id = org + "/" + std::string{r->text(i, 0)};
      x.stream = std::string{r->text(i, 1)};
      x.points_received = r->int64(i, 2);
      x.batches_received = r->int64(i, 3);
      x.duplicates = r->int64(i, 4);
      x.last_acked_sequence = r->int64(i, 5);
      x.gaps = r->int64(i, 6);
      x.last_seen_ms = r->int64(i, 7);
      auto& c = x.capability;
      c.tier = r->int64(i, 8);
      c.total_ram = r->int64(i, 9);
      c.available_ram = r->int64(i, 10);
      c.total_disk = r->int64(i, 11);
      c.available_disk = r->int64(i, 12);
      c.cpu_cores = r->int64(i, 13);
      c.has_sqlite = r->boolean(i, 14);
      c.has_network = r->boolean(i, 15);
      out.push_back(std::move(x));
    }
    return caf::none;
  });
  if (err)
    return err;
  return out;
}

caf::expected<device_infos> pg_store::devices() {
  if (auto err = reconnect())
    return err;
  // Row security shows one org per transaction: list them org by org.
  auto orgs = conn_.exec("SELECT name FROM orgs ORDER BY name");
  if (!orgs)
    return orgs.error();
  device_infos out;
  for (int i = 0; i < orgs->rows(); ++i) {
    auto xs = devices_of(std::string{orgs->text(i, 0)});
    if (!xs)
      return xs.error();
    out.insert(out.end(), xs->begin(), xs->end());
  }
  return out;
}

actor_stats pg_store::stats() {
  auto out = counters_.report();
  out.counters["lost_races"] = lost_races_;
  out.counters["reconnects"] = reconnects_;
  out.counters["series"] = static_cast<int64_t>(series_.size());
  return out;
}

} // namespace fleetd
