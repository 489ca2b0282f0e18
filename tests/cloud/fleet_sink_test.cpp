// The fleet sink on both stores: hourly sum, count, min and max per series
// with NaN and infinities left out, the latest value only when newer,
// exactly once under replay, orgs apart (Row Level Security on PostgreSQL),
// hostile text refused; and the device registry view over either store.
#include "cloud/fleet_sink.hpp"

#include <cmath>
#include <limits>
#include <memory>
#include <string>

#include <doctest/doctest.h>

#include "cloud/embedded_store.hpp"
#include "cloud/pg_store.hpp"
#include "messages/error.hpp"
#include "messages/wire.hpp"
#include "pg_fixture.hpp"
#include "pg_schema.hpp"
#include "runtime/clock.hpp"
#include "runtime/sqlite.hpp"
#include "scratch_dir.hpp"
#include "skip.hpp"
#include "store_batches.hpp"

using namespace fleetd;

namespace {

constexpr int64_t h0 = 1'700'000'000'000 / 3'600'000 * 3'600'000;
constexpr double nan = std::numeric_limits<double>::quiet_NaN();
constexpr double inf = std::numeric_limits<double>::infinity();

metric_sample sample(const std::string& name, int64_t ts, double v) {
  return {name, {{"core", "0"}}, ts, v};
}

journal_entry entry(const std::string& org, int64_t seq,
                    metric_samples xs) {
  journal_entry x;
  x.org = org;
  x.device = "d1";
  x.stream = metrics_stream;
  x.epoch = "e1";
  x.sequence = seq;
  x.received_ms = h0 + seq;
  x.samples = std::move(xs);
  return x;
}

// Two hours of "cpu", NaN and -Inf among them, for org `org`.
journal_entries two_hours(const std::string& org) {
  return {entry(org, 1, {sample("cpu", h0 + 10, 4), sample("cpu", h0 + 20, nan),
                         sample("cpu", h0 + 30, -1.5)}),
          entry(org, 2, {sample("cpu", h0 + 3'600'000, -inf),
                         sample("cpu", h0 + 3'600'005, 7),
                         sample("cpu", h0 + 40, 10)})};
}

void check_two_hours(fleet_sink& s, const std::string& org) {
  auto hs = s.hours(org);
  REQUIRE_MESSAGE(hs, render(hs.error()));
  REQUIRE(hs->size() == 2);
  auto& a = (*hs)[0];
  CHECK(a.device == "d1");
  CHECK(a.metric == "cpu");
  CHECK(a.labels == "core=0");
  CHECK(a.hour_s == h0 / 1000);
  CHECK(a.count == 3);
  CHECK(a.sum == 12.5);
  CHECK(a.min == -1.5);
  CHECK(a.max == 10);
  auto& b = (*hs)[1];
  CHECK(b.hour_s == h0 / 1000 + 3600);
  CHECK(b.count == 1);
  CHECK(b.sum == 7);
  CHECK(b.min == 7);
  CHECK(b.max == 7);
  auto ls = s.latest(org);
  REQUIRE(ls);
  REQUIRE(ls->size() == 1);
  CHECK((*ls)[0].ts_ms == h0 + 3'600'005);
  CHECK((*ls)[0].value == 7);
}

// The sink's contract on either store.
void exercise(fleet_sink& s) {
  auto xs = two_hours("acme");
  REQUIRE(!s.write(xs));
  check_two_hours(s, "acme");
  // A replay, whole and in part, and one entry twice in a write: nothing.
  REQUIRE(!s.write(xs));
  REQUIRE(!s.write({xs[1], xs[1]}));
  check_two_hours(s, "acme");
  // A new batch with an older sample leaves the latest value alone; a NaN
  // newer than it is the latest value, exactly.
  REQUIRE(!s.write({entry("acme", 3, {sample("cpu", h0 + 50, 1)})}));
  auto ls = s.latest("acme");
  REQUIRE(ls);
  CHECK((*ls)[0].value == 7);
  REQUIRE(!s.write({entry("acme", 4, {sample("cpu", h0 + 3'600'009, nan)})}));
  ls = s.latest("acme");
  REQUIRE(ls);
  CHECK(std::isnan((*ls)[0].value));
  auto hs = s.hours("acme");
  REQUIRE(hs);
  CHECK((*hs)[0].count == 4);
  CHECK((*hs)[0].sum == 13.5);
  CHECK((*hs)[1].count == 1);
}

// Another org's same keys are its own batches; neither sees the other's.
void exercise_orgs(fleet_sink& s) {
  REQUIRE(!s.write(two_hours("acme")));
  REQUIRE(!s.write(two_hours("umbrella")));
  check_two_hours(s, "acme");
  check_two_hours(s, "umbrella");
  auto none = s.hours("nobody");
  REQUIRE(none);
  CHECK(none->empty());
}

// Text no store holds (a NUL cuts a libpq parameter short) is refused, so
// the runner skips the entry; nothing of the write is kept.
void exercise_hostile(fleet_sink& s) {
  std::string bad{"cp\0u", 4};
  auto err = s.write({entry("acme", 1, {sample("ok", h0, 1)}),
                      entry("acme", 2, {sample(bad, h0, 1)})});
  CHECK(is_error(err, ec::invalid_record));
  auto hs = s.hours("acme");
  REQUIRE(hs);
  CHECK(hs->empty());
  // Long names and extreme timestamps are stored as they came.
  std::string longname(64 * 1024, 'm');
  REQUIRE(!s.write({entry("acme", 3, {sample(longname, INT64_MIN, 1),
                                      sample("cpu", INT64_MAX, 2)})}));
  hs = s.hours("acme");
  REQUIRE(hs);
  CHECK(hs->size() == 2);
}

std::unique_ptr<fleet_sink> embedded_sink(const std::string& dir) {
  fleet_sink_config cfg;
  cfg.db_path = dir + "/cloud.db";
  auto s = make_fleet_sink(cfg);
  REQUIRE(s);
  return std::move(*s);
}

struct pg_fleet_fixture {
  std::optional<pg_database> db;

  bool start(const std::string& name) {
    std::string why;
    db = test::migrated_pg_database(name, why);
    if (!db)
      test::skip(why);
    return db.has_value();
  }

  std::unique_ptr<fleet_sink> sink() {
    fleet_sink_config cfg;
    cfg.backend = "postgresql";
    cfg.postgresql_url = db->pooled_url;
    auto s = make_fleet_sink(cfg);
    REQUIRE(s);
    return std::move(*s);
  }
};

} // namespace

TEST_CASE("embedded: hourly aggregates and latest values, exactly once") {
  test::scratch_dir dir;
  auto s = embedded_sink(dir.path());
  exercise(*s);
}

TEST_CASE("embedded: orgs apart; hostile text refused") {
  test::scratch_dir dir;
  exercise_orgs(*embedded_sink(dir.path()));
  test::scratch_dir dir2;
  exercise_hostile(*embedded_sink(dir2.path()));
}

TEST_CASE("disabled: no sink") {
  fleet_sink_config cfg;
  cfg.enabled = false;
  auto s = make_fleet_sink(cfg);
  REQUIRE(s);
  CHECK(*s == nullptr);
}

TEST_CASE("postgresql: hourly aggregates and latest values, exactly once") {
  pg_fleet_fixture f;
  if (!f.start("fleet_once"))
    return;
  exercise(*f.sink());
}

TEST_CASE("postgresql: orgs apart by Row Level Security; hostile text "
          "refused") {
  pg_fleet_fixture f;
  if (!f.start("fleet_orgs"))
    return;
  exercise_orgs(*f.sink());
  // The node's role sees no row without its org, none of another org's.
  auto app = test::pg_connect(f.db->app_url);
  REQUIRE(!app.begin());
  CHECK(test::pg_must(app, "SELECT count(*) FROM fleet_hourly").int64(0, 0)
        == 0);
  app.rollback();
  REQUIRE(!app.begin("acme"));
  CHECK(test::pg_must(app, "SELECT count(*) FROM fleet_hourly WHERE org <> "
                           "'acme'")
          .int64(0, 0)
        == 0);
  CHECK(test::pg_must(app, "SELECT count(*) FROM fleet_latest").int64(0, 0)
        == 1);
  app.rollback();
  pg_fleet_fixture g;
  REQUIRE(g.start("fleet_hostile"));
  exercise_hostile(*g.sink());
}

namespace {

// Batch `seq` of acme/d1 with a capability and the config version 3.
ingest_batch registry_batch(int64_t seq) {
  auto b = test::journal_batch("acme/d1", seq);
  b.capability.tier = 2;
  b.capability.cpu_cores = 4;
  b.config_version = 3;
  return b;
}

} // namespace

TEST_CASE("embedded: the device registry sums the streams' sync health") {
  test::scratch_dir dir;
  auto clock = std::make_shared<manual_clock>(test::store_clock_start_ms);
  auto st = embedded_store::open(dir.path() + "/cloud.db", clock);
  REQUIRE(st);
  REQUIRE(st->write(registry_batch(1)));
  clock->advance(10);
  REQUIRE(st->write(registry_batch(2)));
  clock->advance(10);
  auto dup = st->write(registry_batch(2));
  REQUIRE(dup);
  CHECK(dup->duplicate);
  auto db = sqlite::database::open(dir.path() + "/cloud.db");
  REQUIRE(db);
  auto q = db->prepare("SELECT org, device, last_seen_ms, last_batch_ms, "
                       "batches, duplicates, last_sequences, tier, cpu_cores "
                       "FROM device_registry");
  REQUIRE(q);
  auto row = q->step();
  REQUIRE((row && *row));
  CHECK(q->column_text(0) == "acme");
  CHECK(q->column_text(1) == "d1");
  CHECK(q->column_int(2) == test::store_clock_start_ms + 20);
  CHECK(q->column_int(3) == test::store_clock_start_ms + 10);
  CHECK(q->column_int(4) == 2);
  CHECK(q->column_int(5) == 1);
  CHECK(q->column_text(6) == "{\"metrics\":2}");
  CHECK(q->column_int(7) == 2);
  CHECK(q->column_int(8) == 4);
  row = q->step();
  REQUIRE(row);
  CHECK_FALSE(*row);
}

TEST_CASE("postgresql: the device registry, one org's devices only") {
  pg_fleet_fixture f;
  if (!f.start("fleet_registry"))
    return;
  auto clock = std::make_shared<manual_clock>(test::store_clock_start_ms);
  auto st = pg_store::open(f.db->app_url, clock);
  REQUIRE(st);
  REQUIRE(st->write(registry_batch(1)));
  clock->advance(10);
  REQUIRE(st->write(registry_batch(2)));
  auto other = test::journal_batch("zenith/z1", 1);
  REQUIRE(st->write(other));
  auto app = test::pg_connect(f.db->app_url);
  for (auto [org, dev] : {std::pair{"acme", "d1"}, std::pair{"zenith", "z1"}})
    REQUIRE_FALSE(pg::transaction(app, org, [&]() -> caf::error {
      test::pg_must(app, "INSERT INTO devices (org, device, created_ms) "
                         "VALUES ($1, $2, 1)", {org, dev});
      return caf::none;
    }));
  REQUIRE_FALSE(app.begin("acme"));
  auto r = test::pg_must(app, "SELECT device, last_seen_ms, last_batch_ms, "
                              "batches, duplicates, last_sequences->>'metrics', "
                              "tier, config_version FROM device_registry");
  app.rollback();
  REQUIRE(r.rows() == 1);
  CHECK(r.text(0, 0) == "d1");
  CHECK(r.int64(0, 1) == test::store_clock_start_ms + 10);
  CHECK(r.int64(0, 2) == test::store_clock_start_ms + 10);
  CHECK(r.int64(0, 3) == 2);
  CHECK(r.int64(0, 4) == 0);
  CHECK(r.text(0, 5) == "2");
  CHECK(r.int64(0, 6) == 2);
  REQUIRE_FALSE(app.begin());
  CHECK(test::pg_must(app, "SELECT count(*) FROM device_registry").int64(0, 0)
        == 0);
  app.rollback();
}
