#include "cloud/fleet_sink.hpp"

#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <tuple>

#include "cloud/clickhouse_text.hpp"
#include "cloud/pg_migrate.hpp"
#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "runtime/options.hpp"
#include "runtime/pg.hpp"
#include "runtime/sqlite.hpp"

namespace fleetd {

void declare(option_set& opts, fleet_sink_config& x) {
  opts.add("sinks.fleet.enabled", x.enabled, true,
           "Write the fleet view (per device and series the latest value "
           "and hourly sum, count, min, max) into the node's store; turns "
           "the ingest journal on");
}

namespace {

constexpr int64_t hour_ms = 3'600'000;

// The hour's start in seconds: floor division, so no product overflows.
int64_t hour_of(int64_t ts_ms) {
  auto q = ts_ms / hour_ms;
  if (ts_ms % hour_ms < 0)
    --q;
  return q * 3600;
}

// device, metric, canonical labels.
using series_key = std::tuple<std::string, std::string, std::string>;
using batch_key = std::tuple<std::string, std::string, std::string, int64_t>;

struct aggregate {
  double sum = 0;
  int64_t count = 0;
  double min = 0;
  double max = 0;
};

// What the newly marked entries of one org add.
struct fleet_delta {
  std::map<std::pair<series_key, int64_t>, aggregate> hours;
  std::map<series_key, std::pair<int64_t, double>> latest;
};

batch_key key_of(const journal_entry& x) {
  return {x.device, x.stream, x.epoch, x.sequence};
}

// invalid_record unless every text of `x` is text both stores hold (a NUL
// would cut a libpq parameter short): the runner then skips that entry.
caf::error check_entry(const journal_entry& x) {
  for (auto* s : {&x.org, &x.device, &x.stream, &x.epoch})
    if (auto err = check_text(*s, "fleet entry field"))
      return err;
  for (auto& s : x.samples) {
    if (auto err = check_text(s.name, "metric name"))
      return err;
    if (auto err = check_labels(s.labels, "metric label"))
      return err;
  }
  return caf::none;
}

void add(fleet_delta& d, const journal_entry& x) {
  for (auto& s : x.samples) {
    series_key k{x.device, s.name, canonical_labels(s.labels)};
    auto [at, fresh] = d.latest.try_emplace(k, s.timestamp_ms, s.value);
    // The later arrival wins a tie, as the stores' upserts do.
    if (!fresh && s.timestamp_ms >= at->second.first)
      at->second = {s.timestamp_ms, s.value};
    // NaN and infinities would poison every aggregate: left out of all.
    if (!std::isfinite(s.value))
      continue;
    auto& a = d.hours[{std::move(k), hour_of(s.timestamp_ms)}];
    a.min = a.count == 0 ? s.value : std::min(a.min, s.value);
    a.max = a.count == 0 ? s.value : std::max(a.max, s.value);
    a.sum += s.value;
    ++a.count;
  }
}

// Entries by org, in journal order.
std::map<std::string, std::vector<const journal_entry*>>
by_org(const journal_entries& xs) {
  std::map<std::string, std::vector<const journal_entry*>> out;
  for (auto& x : xs)
    out[x.org].push_back(&x);
  return out;
}

// The newest received_ms of `xs` less `keep`: markers before it can go.
int64_t prune_before(const std::vector<const journal_entry*>& xs,
                     std::chrono::milliseconds keep) {
  int64_t newest = 0;
  for (auto* x : xs)
    newest = std::max(newest, x->received_ms);
  return newest - keep.count();
}

// A text[] parameter ({"a","b"}): checked text only (check_entry).
class text_array {
public:
  text_array& add(const std::string& x) {
    out_ += out_.size() > 1 ? ",\"" : "\"";
    for (auto c : x) {
      if (c == '"' || c == '\\')
        out_ += '\\';
      out_ += c;
    }
    out_ += '"';
    return *this;
  }
  pg::param done() const {
    return out_ + "}";
  }

private:
  std::string out_ = "{";
};

using org_entries = std::vector<const journal_entry*>;

// The write both stores share: checked, connected, then every org's
// entries in one transaction.
class fleet_store : public fleet_sink {
public:
  caf::error write(const journal_entries& xs) final {
    for (auto& x : xs)
      if (auto err = check_entry(x))
        return err;
    if (auto err = connect())
      return err;
    auto groups = by_org(xs);
    return transact([&]() -> caf::error {
      for (auto& [org, es] : groups)
        if (auto e = write_org(org, es))
          return e;
      return caf::none;
    });
  }

protected:
  virtual caf::error connect() = 0;
  virtual caf::error transact(const std::function<caf::error()>& fn) = 0;
  virtual caf::error write_org(const std::string& org,
                               const org_entries& es) = 0;
};

// ---- PostgreSQL -----------------------------------------------------------

class pg_fleet final : public fleet_store {
public:
  explicit pg_fleet(fleet_sink_config cfg) : cfg_(std::move(cfg)) {
  }

  caf::expected<std::vector<fleet_hour>>
  hours(const std::string& org) override {
    auto r = read(org, "SELECT device, metric, labels, hour_s, sum, count, "
                       "min, max FROM fleet_hourly ORDER BY device, metric, "
                       "labels, hour_s");
    if (!r)
      return r.error();
    std::vector<fleet_hour> out;
    for (int i = 0; i < r->rows(); ++i)
      out.push_back({std::string{r->text(i, 0)}, std::string{r->text(i, 1)},
                     std::string{r->text(i, 2)}, r->int64(i, 3),
                     r->float8(i, 4), r->int64(i, 5), r->float8(i, 6),
                     r->float8(i, 7)});
    return out;
  }

  caf::expected<std::vector<fleet_latest>>
  latest(const std::string& org) override {
    auto r = read(org, "SELECT device, metric, labels, ts, bits FROM "
                       "fleet_latest ORDER BY device, metric, labels");
    if (!r)
      return r.error();
    std::vector<fleet_latest> out;
    for (int i = 0; i < r->rows(); ++i)
      out.push_back({std::string{r->text(i, 0)}, std::string{r->text(i, 1)},
                     std::string{r->text(i, 2)}, r->int64(i, 3),
                     double_of(static_cast<uint64_t>(r->int64(i, 4)))});
    return out;
  }

private:
  caf::error transact(const std::function<caf::error()>& fn) override {
    return settle(pg::transaction(conn_, {}, fn));
  }

  caf::error connect() override {
    if (open_ && conn_.ok())
      return caf::none;
    pg::connect_options opts;
    opts.statement_timeout_ms = cfg_.statement_timeout_ms;
    auto c = open_node_connection(cfg_.postgresql_url, opts);
    if (!c)
      return c.error();
    conn_ = std::move(*c);
    open_ = true;
    return caf::none;
  }

  // A lost connection is made again on the next write.
  caf::error settle(caf::error err) {
    if (err && !conn_.ok())
      open_ = false;
    return err;
  }

  caf::expected<pg::result> read(const std::string& org, const char* sql) {
    if (auto err = connect())
      return err;
    caf::expected<pg::result> out{pg::result{}};
    auto err = pg::transaction(conn_, org, [&]() -> caf::error {
      out = conn_.exec(sql);
      return out ? caf::error{} : out.error();
    });
    if (auto e = settle(std::move(err)))
      return e;
    return out;
  }

  // Marks the org's entries; the keys newly marked.
  caf::expected<std::set<batch_key>>
  mark(const std::string& org, const org_entries& es) {
    text_array devices, streams, epochs;
    pg::number_array seqs, received;
    for (auto* x : es) {
      devices.add(x->device);
      streams.add(x->stream);
      epochs.add(x->epoch);
      seqs.add(x->sequence);
      received.add(x->received_ms);
    }
    auto r = conn_.exec(
      "INSERT INTO fleet_applied (org, device, stream, epoch, sequence, "
      "applied_ms) SELECT $1, u.d, u.s, u.e, u.q, u.r FROM unnest($2::text[], "
      "$3::text[], $4::text[], $5::bigint[], $6::bigint[]) AS u(d, s, e, q, "
      "r) ON CONFLICT DO NOTHING RETURNING device, stream, epoch, sequence",
      {org, devices.done(), streams.done(), epochs.done(), seqs.done(),
       received.done()});
    if (!r)
      return r.error();
    std::set<batch_key> out;
    for (int i = 0; i < r->rows(); ++i)
      out.emplace(std::string{r->text(i, 0)}, std::string{r->text(i, 1)},
                  std::string{r->text(i, 2)}, r->int64(i, 3));
    return out;
  }

  caf::error write_org(const std::string& org,
                       const org_entries& es) override {
    if (auto err = conn_.set_org(org))
      return err;
    auto fresh = mark(org, es);
    if (!fresh)
      return fresh.error();
    fleet_delta d;
    // erase: an entry twice in one write counts once.
    for (auto* x : es)
      if (fresh->erase(key_of(*x)) > 0)
        add(d, *x);
    std::vector<pg::call> calls;
    hour_call(org, d, calls);
    latest_call(org, d, calls);
    // Markers older than the journal keeps can never meet a replay.
    calls.push_back({"DELETE FROM fleet_applied WHERE org = $1 AND "
                     "applied_ms < $2",
                     {org, prune_before(es, cfg_.marker_retention)}});
    auto r = conn_.pipeline(calls);
    return r ? caf::error{} : r.error();
  }

  static void hour_call(const std::string& org, const fleet_delta& d,
                        std::vector<pg::call>& calls) {
    if (d.hours.empty())
      return;
    text_array devices, metrics, labels;
    pg::number_array hours, sums, counts, mins, maxs;
    for (auto& [k, a] : d.hours) {
      devices.add(std::get<0>(k.first));
      metrics.add(std::get<1>(k.first));
      labels.add(std::get<2>(k.first));
      hours.add(k.second);
      sums.add(a.sum);
      counts.add(a.count);
      mins.add(a.min);
      maxs.add(a.max);
    }
    calls.push_back(
      {"INSERT INTO fleet_hourly (org, device, metric, labels, hour_s, sum, "
       "count, min, max) SELECT $1, u.* FROM unnest($2::text[], $3::text[], "
       "$4::text[], $5::bigint[], $6::float8[], $7::bigint[], $8::float8[], "
       "$9::float8[]) AS u ON CONFLICT (org, device, key, hour_s) DO UPDATE "
       "SET sum = fleet_hourly.sum + EXCLUDED.sum, count = fleet_hourly.count "
       "+ EXCLUDED.count, min = least(fleet_hourly.min, EXCLUDED.min), "
       "max = greatest(fleet_hourly.max, EXCLUDED.max)",
       {org, devices.done(), metrics.done(), labels.done(), hours.done(),
        sums.done(), counts.done(), mins.done(), maxs.done()}});
  }

  static void latest_call(const std::string& org, const fleet_delta& d,
                          std::vector<pg::call>& calls) {
    if (d.latest.empty())
      return;
    text_array devices, metrics, labels;
    pg::number_array tss, values, bits;
    for (auto& [k, v] : d.latest) {
      devices.add(std::get<0>(k));
      metrics.add(std::get<1>(k));
      labels.add(std::get<2>(k));
      tss.add(v.first);
      values.add(v.second);
      bits.add(static_cast<int64_t>(bits_of(v.second)));
    }
    calls.push_back(
      {"INSERT INTO fleet_latest (org, device, metric, labels, ts, value, "
       "bits) SELECT $1, u.* FROM unnest($2::text[], $3::text[], $4::text[], "
       "$5::bigint[], $6::float8[], $7::bigint[]) AS u ON CONFLICT (org, "
       "device, key) DO UPDATE SET ts = EXCLUDED.ts, value = EXCLUDED.value, "
       "bits = EXCLUDED.bits WHERE fleet_latest.ts <= EXCLUDED.ts",
       {org, devices.done(), metrics.done(), labels.done(), tss.done(),
        values.done(), bits.done()}});
  }

  fleet_sink_config cfg_;
  pg::connection conn_;
  bool open_ = false;
};

// ---- embedded (SQLite) ----------------------------------------------------

// The embedded store's fleet tables (as 0004_fleet.sql's, keyed by text:
// SQLite has no index entry limit to hash around).
constexpr const char* embedded_schema = R"(
CREATE TABLE IF NOT EXISTS fleet_applied (
  org TEXT NOT NULL, device TEXT NOT NULL, stream TEXT NOT NULL,
  epoch TEXT NOT NULL, sequence INTEGER NOT NULL,
  applied_ms INTEGER NOT NULL,
  PRIMARY KEY (org, device, stream, epoch, sequence)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fleet_applied_by_age
  ON fleet_applied (org, applied_ms);
CREATE TABLE IF NOT EXISTS fleet_latest (
  org TEXT NOT NULL, device TEXT NOT NULL, metric TEXT NOT NULL,
  labels TEXT NOT NULL, ts INTEGER NOT NULL, bits INTEGER NOT NULL,
  PRIMARY KEY (org, device, metric, labels)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fleet_hourly (
  org TEXT NOT NULL, device TEXT NOT NULL, metric TEXT NOT NULL,
  labels TEXT NOT NULL, hour_s INTEGER NOT NULL, sum REAL NOT NULL,
  count INTEGER NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
  PRIMARY KEY (org, device, metric, labels, hour_s)) WITHOUT ROWID;
)";

class embedded_fleet final : public fleet_store {
public:
  explicit embedded_fleet(fleet_sink_config cfg) : cfg_(std::move(cfg)) {
  }

  caf::expected<std::vector<fleet_hour>>
  hours(const std::string& org) override {
    return select<fleet_hour>(
      org,
      "SELECT device, metric, labels, hour_s, sum, count, min, max FROM "
      "fleet_hourly WHERE org = ?1 ORDER BY device, metric, labels, hour_s",
      [](sqlite::statement& r) {
        return fleet_hour{r.column_text(0),   r.column_text(1),
                          r.column_text(2),   r.column_int(3),
                          r.column_double(4), r.column_int(5),
                          r.column_double(6), r.column_double(7)};
      });
  }

  caf::expected<std::vector<fleet_latest>>
  latest(const std::string& org) override {
    return select<fleet_latest>(
      org,
      "SELECT device, metric, labels, ts, bits FROM fleet_latest WHERE "
      "org = ?1 ORDER BY device, metric, labels",
      [](sqlite::statement& r) {
        return fleet_latest{r.column_text(0), r.column_text(1),
                            r.column_text(2), r.column_int(3),
                            r.column_exact(4)};
      });
  }

private:
  caf::error transact(const std::function<caf::error()>& fn) override {
    return sqlite::transaction(db_, fn);
  }

  caf::error connect() override {
    if (db_.is_open())
      return caf::none;
    // Its own connection: WAL, and the store's writer waited for.
    auto db = sqlite::database::open(cfg_.db_path, "FULL", 5000);
    if (!db)
      return db.error();
    if (auto err = db->exec(embedded_schema))
      return err;
    db_ = std::move(*db);
    return caf::none;
  }

  // Each row of `sql` (?1: the org) as `row` makes it.
  template <class T, class Row>
  caf::expected<std::vector<T>> select(const std::string& org,
                                       const char* sql, Row row) {
    if (auto err = connect())
      return err;
    auto st = db_.prepare(sql);
    if (!st)
      return st.error();
    st->bind(1, org);
    std::vector<T> out;
    auto err = sqlite::each_row(
      *st, [&](sqlite::statement& r) { out.push_back(row(r)); });
    if (err)
      return err;
    return out;
  }

  // True when the entry's key was newly marked.
  caf::expected<bool> mark(const journal_entry& x) {
    auto st = db_.cached("INSERT INTO fleet_applied (org, device, stream, "
                         "epoch, sequence, applied_ms) VALUES (?1, ?2, ?3, "
                         "?4, ?5, ?6) ON CONFLICT DO NOTHING");
    if (!st)
      return st.error();
    st->bind(1, x.org).bind(2, x.device).bind(3, x.stream).bind(4, x.epoch)
      .bind(5, x.sequence).bind(6, x.received_ms);
    if (auto err = st->run())
      return err;
    return db_.changes() > 0;
  }

  caf::error write_org(const std::string& org,
                       const org_entries& es) override {
    fleet_delta d;
    for (auto* x : es) {
      auto fresh = mark(*x);
      if (!fresh)
        return fresh.error();
      if (*fresh)
        add(d, *x);
    }
    if (auto err = write_hours(org, d))
      return err;
    if (auto err = write_latest(org, d))
      return err;
    // Markers older than the journal keeps can never meet a replay.
    auto st = db_.cached("DELETE FROM fleet_applied WHERE org = ?1 AND "
                         "applied_ms < ?2");
    if (!st)
      return st.error();
    st->bind(1, org).bind(2, prune_before(es, cfg_.marker_retention));
    return st->run();
  }

  caf::error write_hours(const std::string& org, const fleet_delta& d) {
    auto st = db_.cached(
      "INSERT INTO fleet_hourly (org, device, metric, labels, hour_s, sum, "
      "count, min, max) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
      "ON CONFLICT (org, device, metric, labels, hour_s) DO UPDATE SET "
      "sum = fleet_hourly.sum + excluded.sum, "
      "count = fleet_hourly.count + excluded.count, "
      "min = min(fleet_hourly.min, excluded.min), "
      "max = max(fleet_hourly.max, excluded.max)");
    if (!st)
      return st.error();
    for (auto& [k, a] : d.hours) {
      st->reset().bind(1, org).bind(2, std::get<0>(k.first))
        .bind(3, std::get<1>(k.first)).bind(4, std::get<2>(k.first))
        .bind(5, k.second).bind(6, a.sum).bind(7, a.count).bind(8, a.min)
        .bind(9, a.max);
      if (auto err = st->run())
        return err;
    }
    return caf::none;
  }

  caf::error write_latest(const std::string& org, const fleet_delta& d) {
    auto st = db_.cached(
      "INSERT INTO fleet_latest (org, device, metric, labels, ts, bits) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (org, device, metric, "
      "labels) DO UPDATE SET ts = excluded.ts, bits = excluded.bits "
      "WHERE fleet_latest.ts <= excluded.ts");
    if (!st)
      return st.error();
    for (auto& [k, v] : d.latest) {
      st->reset().bind(1, org).bind(2, std::get<0>(k)).bind(3, std::get<1>(k))
        .bind(4, std::get<2>(k)).bind(5, v.first).bind_exact(6, v.second);
      if (auto err = st->run())
        return err;
    }
    return caf::none;
  }

  fleet_sink_config cfg_;
  sqlite::database db_;
};

} // namespace

caf::expected<std::unique_ptr<fleet_sink>>
make_fleet_sink(const fleet_sink_config& cfg) {
  if (!cfg.enabled)
    return std::unique_ptr<fleet_sink>{};
  if (cfg.backend == "postgresql") {
    if (cfg.postgresql_url.empty())
      return make_error(ec::bad_config, "sinks.fleet: no store.postgresql-url");
    return std::unique_ptr<fleet_sink>{std::make_unique<pg_fleet>(cfg)};
  }
  if (cfg.db_path.empty())
    return make_error(ec::bad_config, "sinks.fleet: no embedded store path");
  return std::unique_ptr<fleet_sink>{std::make_unique<embedded_fleet>(cfg)};
}

} // namespace fleetd
