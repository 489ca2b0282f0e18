// The cloud's embedded store: each (device, stream, sequence) stored once,
// duplicates and gaps counted, everything kept across a reopen.
#include "cloud/cloud_store.hpp"
#include "cloud/embedded_store.hpp"

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "scratch_dir.hpp"

#include "messages/error.hpp"
#include "messages/register.hpp"
#include "messages/wire.hpp"
#include "runtime/sqlite.hpp"
#include "check_samples.hpp"
#include "store_batches.hpp"

using namespace fleetd;
using test::check_same_samples;
using test::concat;
using namespace std::chrono_literals;

namespace fs = std::filesystem;

namespace {

constexpr int64_t clock_start_ms = test::store_clock_start_ms;
using test::columnar_batch;
using test::of_series;
using test::samples;

// Each suite names its own temp directories, so leftovers say whose they are.
constexpr const char* dir_prefix = "fleetd-cloudstore";

ingest_batch batch(std::string device, int64_t seq, metric_samples xs,
                   std::string stream = metrics_stream) {
  ingest_batch b;
  b.device_id = std::move(device);
  b.stream = std::move(stream);
  b.sequence = seq;
  b.samples = std::move(xs);
  return b;
}

struct store_fixture {
  test::scratch_dir dir{dir_prefix};
  std::shared_ptr<manual_clock> clock
    = std::make_shared<manual_clock>(clock_start_ms);
  std::string path = dir.file("cloud.db");

  embedded_store open() {
    REQUIRE(dir.ok());
    auto st = embedded_store::open(path, clock);
    REQUIRE_MESSAGE(st, "cannot open " << path << ": "
                                       << (st ? "" : render(st.error())));
    return std::move(*st);
  }
};

ingest_outcome write_ok(embedded_store& st, const ingest_batch& b) {
  auto r = st.write(b);
  REQUIRE_MESSAGE(r, render(r.error()));
  return *r;
}

metric_samples points_of(embedded_store& st, const std::string& device) {
  auto r = st.points(device);
  REQUIRE_MESSAGE(r, render(r.error()));
  return std::move(*r);
}

device_infos devices_of(embedded_store& st) {
  auto r = st.devices();
  REQUIRE_MESSAGE(r, render(r.error()));
  return std::move(*r);
}

/// Every row of `sql` on a second connection, its `columns` columns joined
/// by '|'.
std::vector<std::string> rows_beside(const std::string& path,
                                     const std::string& sql, int columns) {
  auto db = sqlite::database::open(path);
  REQUIRE_MESSAGE(db, render(db.error()));
  auto st = db->prepare(sql);
  REQUIRE_MESSAGE(st, render(st.error()));
  std::vector<std::string> out;
  auto err = sqlite::each_row(*st, [&](sqlite::statement& r) {
    std::string row;
    for (int i = 0; i < columns; ++i)
      row += (i ? "|" : "") + r.column_text(i);
    out.push_back(row);
  });
  REQUIRE_MESSAGE(!err, render(err));
  return out;
}

} // namespace

TEST_CASE("a write stores the points and returns the last acked sequence") {
  store_fixture f;
  auto st = f.open();
  auto xs = samples(5, 1);
  auto out = write_ok(st, batch("dev-a", 1, xs));
  CHECK(out.last_acked == 1);
  CHECK_FALSE(out.duplicate);
  CHECK(out.stored == 5);
  check_same_samples(points_of(st, "dev-a"), xs);
  auto ys = samples(3, 2);
  f.clock->advance(1000);
  out = write_ok(st, batch("dev-a", 2, ys));
  CHECK(out.last_acked == 2);
  CHECK(out.stored == 3);
  check_same_samples(points_of(st, "dev-a"), concat({xs, ys}));
  auto ds = devices_of(st);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].device_id == "dev-a");
  CHECK(ds[0].stream == metrics_stream);
  CHECK(ds[0].points_received == 8);
  CHECK(ds[0].batches_received == 2);
  CHECK(ds[0].duplicates == 0);
  CHECK(ds[0].last_acked_sequence == 2);
  CHECK(ds[0].gaps == 0);
  CHECK(ds[0].last_seen_ms == clock_start_ms + 1000);
  auto stats = st.stats();
  CHECK(stats.name == "cloud_store");
  CHECK(stats.state == "ok");
  CHECK(stats.counters["batches_stored"] == 2);
  CHECK(stats.counters["points_stored"] == 8);
  CHECK(stats.counters["duplicates"] == 0);
  CHECK(stats.counters["series"] == 2);
  CHECK(points_of(st, "nobody").empty());
}

TEST_CASE("an empty batch is recorded as a batch with no points") {
  store_fixture f;
  auto st = f.open();
  auto out = write_ok(st, batch("dev-a", 1, {}));
  CHECK(out.last_acked == 1);
  CHECK(out.stored == 0);
  CHECK_FALSE(out.duplicate);
  auto ds = devices_of(st);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].batches_received == 1);
  CHECK(ds[0].points_received == 0);
}

TEST_CASE("the same sequence again is a duplicate: not stored, counted, "
          "last acked unchanged") {
  store_fixture f;
  auto st = f.open();
  auto xs = samples(4, 1);
  write_ok(st, batch("dev-a", 1, xs));
  write_ok(st, batch("dev-a", 2, samples(2, 2)));
  f.clock->advance(5000);
  SUBCASE("the latest sequence, same points") {
    auto out = write_ok(st, batch("dev-a", 2, samples(2, 2)));
    CHECK(out.duplicate);
    CHECK(out.stored == 0);
    CHECK(out.last_acked == 2);
  }
  SUBCASE("an older sequence with other points") {
    // Only the sequence decides: the first copy is the one kept.
    auto out = write_ok(st, batch("dev-a", 1, samples(7, 9)));
    CHECK(out.duplicate);
    CHECK(out.stored == 0);
    CHECK(out.last_acked == 2);
  }
  check_same_samples(points_of(st, "dev-a"), concat({xs, samples(2, 2)}));
  auto ds = devices_of(st);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].duplicates == 1);
  CHECK(ds[0].batches_received == 2);
  CHECK(ds[0].points_received == 6);
  CHECK(ds[0].last_acked_sequence == 2);
  CHECK(ds[0].gaps == 0);
  // A duplicate still shows the device is alive.
  CHECK(ds[0].last_seen_ms == clock_start_ms + 5000);
  auto stats = st.stats();
  CHECK(stats.counters["duplicates"] == 1);
  CHECK(stats.counters["batches_stored"] == 2);
  CHECK(stats.counters["points_stored"] == 6);
}

TEST_CASE("a gap is accepted and counted until the missing batch arrives") {
  store_fixture f;
  auto st = f.open();
  write_ok(st, batch("dev-a", 1, samples(2, 1)));
  auto out = write_ok(st, batch("dev-a", 3, samples(2, 3)));
  CHECK(out.last_acked == 3);
  CHECK_FALSE(out.duplicate);
  CHECK(out.stored == 2);
  auto ds = devices_of(st);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].gaps == 1);
  CHECK(ds[0].last_acked_sequence == 3);
  CHECK(ds[0].batches_received == 2);
  SUBCASE("the late batch fills the gap and does not lower the ack") {
    out = write_ok(st, batch("dev-a", 2, samples(2, 2)));
    CHECK(out.last_acked == 3);
    CHECK_FALSE(out.duplicate);
    CHECK(out.stored == 2);
    ds = devices_of(st);
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].gaps == 0);
    CHECK(ds[0].last_acked_sequence == 3);
    CHECK(ds[0].batches_received == 3);
    CHECK(points_of(st, "dev-a").size() == 6);
  }
  SUBCASE("a first batch above 1 counts the ones before it as gaps") {
    write_ok(st, batch("dev-b", 4, samples(1, 4)));
    ds = devices_of(st);
    REQUIRE(ds.size() == 2);
    CHECK(ds[1].device_id == "dev-b");
    CHECK(ds[1].gaps == 3);
  }
}

TEST_CASE("sequences are per device and stream: neither interferes with "
          "another") {
  store_fixture f;
  auto st = f.open();
  auto a1 = samples(3, 1);
  auto b1 = samples(2, 11);
  auto a2 = samples(1, 2);
  auto out = write_ok(st, batch("dev-a", 1, a1));
  CHECK_FALSE(out.duplicate);
  // The same sequence from another device is news, not a duplicate.
  out = write_ok(st, batch("dev-b", 1, b1));
  CHECK_FALSE(out.duplicate);
  CHECK(out.last_acked == 1);
  CHECK(out.stored == 2);
  out = write_ok(st, batch("dev-a", 2, a2));
  CHECK(out.last_acked == 2);
  // Device b's ack is its own.
  out = write_ok(st, batch("dev-b", 1, b1));
  CHECK(out.duplicate);
  CHECK(out.last_acked == 1);
  // The same device on another stream has sequences of its own too.
  out = write_ok(st, batch("dev-a", 1, samples(1, 5), events_stream));
  CHECK_FALSE(out.duplicate);
  CHECK(out.last_acked == 1);
  auto ds = devices_of(st);
  REQUIRE(ds.size() == 3);
  // Ordered by device, then stream.
  CHECK(ds[0].device_id == "dev-a");
  CHECK(ds[0].stream == events_stream);
  CHECK(ds[0].last_acked_sequence == 1);
  CHECK(ds[0].points_received == 1);
  CHECK(ds[1].device_id == "dev-a");
  CHECK(ds[1].stream == metrics_stream);
  CHECK(ds[1].last_acked_sequence == 2);
  CHECK(ds[1].points_received == 4);
  CHECK(ds[1].duplicates == 0);
  CHECK(ds[2].device_id == "dev-b");
  CHECK(ds[2].stream == metrics_stream);
  CHECK(ds[2].last_acked_sequence == 1);
  CHECK(ds[2].points_received == 2);
  CHECK(ds[2].duplicates == 1);
  for (auto& d : ds)
    CHECK(d.gaps == 0);
  check_same_samples(points_of(st, "dev-b"), b1);
  auto a_points = points_of(st, "dev-a");
  CHECK(a_points.size() == 5);
}

TEST_CASE("reopening the file keeps points, counters and duplicate "
          "detection") {
  store_fixture f;
  auto xs = samples(4, 1);
  auto ys = samples(3, 3);
  {
    auto st = f.open();
    write_ok(st, batch("dev-a", 1, xs));
    write_ok(st, batch("dev-a", 3, ys));
    write_ok(st, batch("dev-a", 1, xs));
  }
  auto st = f.open();
  check_same_samples(points_of(st, "dev-a"), concat({xs, ys}));
  auto ds = devices_of(st);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].points_received == 7);
  CHECK(ds[0].batches_received == 2);
  CHECK(ds[0].duplicates == 1);
  CHECK(ds[0].last_acked_sequence == 3);
  CHECK(ds[0].gaps == 1);
  // Known series are loaded again, not inserted twice.
  CHECK(st.stats().counters["series"] == 2);
  auto out = write_ok(st, batch("dev-a", 3, ys));
  CHECK(out.duplicate);
  CHECK(out.last_acked == 3);
  out = write_ok(st, batch("dev-a", 4, samples(2, 4)));
  CHECK_FALSE(out.duplicate);
  CHECK(out.last_acked == 4);
  CHECK(st.stats().counters["series"] == 2);
  check_same_samples(points_of(st, "dev-a"), concat({xs, ys, samples(2, 4)}));
}

TEST_CASE("a write that fails is not half-stored and forgets its new "
          "series") {
  store_fixture f;
  auto st = f.open();
  write_ok(st, batch("dev-a", 1, samples(2, 1)));
  {
    // A second connection adds a trigger that fails the batch record after
    // the points (and a new series) went in within the same transaction.
    auto db = sqlite::database::open(f.path);
    REQUIRE(db);
    auto err = db->exec("CREATE TRIGGER refuse BEFORE INSERT ON batches "
                        "WHEN NEW.sequence = 2 BEGIN "
                        "SELECT RAISE(ABORT, 'refused by test'); END;");
    REQUIRE_MESSAGE(!err, render(err));
  }
  metric_sample ghost;
  ghost.name = "ghost";
  ghost.labels = {{"k", "v"}};
  ghost.timestamp_ms = clock_start_ms;
  ghost.value = 1;
  auto failed = st.write(batch("dev-a", 2, {ghost}));
  REQUIRE_FALSE(failed);
  // A constraint is not cured by retrying: ingest refuses it, not 503.
  CHECK(failed.error().code() == static_cast<uint8_t>(ec::invalid_record));
  auto stats = st.stats();
  CHECK(stats.counters["failures"] == 1);
  CHECK(stats.counters["series"] == 2);
  CHECK(points_of(st, "dev-a").size() == 2);
  auto ds = devices_of(st);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].last_acked_sequence == 1);
  CHECK(ds[0].batches_received == 1);
  {
    auto db = sqlite::database::open(f.path);
    REQUIRE(db);
    REQUIRE_FALSE(db->exec("DROP TRIGGER refuse"));
  }
  // A new series takes the freed id; the ghost must not share it.
  metric_sample other = ghost;
  other.name = "other";
  write_ok(st, batch("dev-b", 1, {other}));
  auto out = write_ok(st, batch("dev-a", 2, {ghost}));
  CHECK(out.last_acked == 2);
  auto got = points_of(st, "dev-a");
  REQUIRE(got.size() == 3);
  CHECK(got[2].name == "ghost");
  CHECK(points_of(st, "dev-b").at(0).name == "other");
}

TEST_CASE("NaN with its payload, infinities and -0.0 are stored bit for bit; "
          "the readable value column is NULL for NaN") {
  store_fixture f;
  auto xs = test::special_samples(clock_start_ms);
  {
    auto st = f.open();
    auto out = write_ok(st, batch("dev-a", 1, xs));
    CHECK(out.stored == static_cast<int64_t>(xs.size()));
    check_same_samples(points_of(st, "dev-a"), xs, true);
  }
  auto st = f.open();
  check_same_samples(points_of(st, "dev-a"), xs, true);
  CHECK(rows_beside(f.path,
                    "SELECT quote(value), printf('%x', bits) FROM points "
                    "ORDER BY rowid LIMIT 1",
                    2)
        == std::vector<std::string>{"NULL|7ff800005ca1ab1e"});
}

TEST_CASE("points, logs and events of two epochs of one device keep their "
          "epoch beside the sequence") {
  store_fixture f;
  auto st = f.open();
  for (auto epoch : {"e1", "e2"}) {
    auto b = batch("dev-a", 1, samples(2, 1));
    b.epoch = epoch;
    write_ok(st, b);
    b.stream = logs_stream;
    b.samples.clear();
    b.logs = {log_line{{}, 1, epoch}};
    write_ok(st, b);
    b.stream = events_stream;
    b.logs.clear();
    b.events = {event_record{clock_start_ms, "k", epoch, {}}};
    write_ok(st, b);
  }
  for (auto table : {"points", "logs", "events"}) {
    CAPTURE(table);
    CHECK(rows_beside(f.path,
                      std::string("SELECT epoch, sequence, count(*) FROM ")
                        + table + " GROUP BY epoch, sequence",
                      3)
          == std::vector<std::string>{
            table == std::string("points") ? "e1|1|2" : "e1|1|1",
            table == std::string("points") ? "e2|1|2" : "e2|1|1"});
    // The index that finds a batch's rows leads with (device, epoch).
    CHECK(rows_beside(f.path,
                      std::string("SELECT group_concat(name) FROM "
                                  "pragma_index_info((SELECT name FROM "
                                  "sqlite_master WHERE type = 'index' AND "
                                  "tbl_name = '")
                        + table + "'))",
                      1)
          == std::vector<std::string>{"device_id,epoch,sequence"});
  }
}

TEST_CASE("a store of the first schema migrates: rows kept, values exact, "
          "epochs from the batches") {
  store_fixture f;
  REQUIRE(f.dir.ok());
  {
    auto db = sqlite::database::open(f.path);
    REQUIRE(db);
    // The first schema's data tables; dev-a sent metrics batch 1 in epoch
    // e1, its logs batch 1 in e1 and e2 (ambiguous), its events in e2.
    auto err = db->exec(
      "CREATE TABLE batches (device_id TEXT NOT NULL, stream TEXT NOT NULL, "
      "epoch TEXT NOT NULL, sequence INTEGER NOT NULL, checksum BLOB NOT "
      "NULL, points INTEGER NOT NULL, received_at INTEGER NOT NULL, PRIMARY "
      "KEY (device_id, stream, epoch, sequence)) WITHOUT ROWID;"
      "CREATE TABLE series (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
      "labels BLOB NOT NULL, UNIQUE (name, labels));"
      "CREATE TABLE points (device_id TEXT NOT NULL, sequence INTEGER NOT "
      "NULL, series_id INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT "
      "NULL);"
      "CREATE INDEX points_by_device ON points (device_id, sequence);"
      "CREATE TABLE logs (device_id TEXT NOT NULL, sequence INTEGER NOT "
      "NULL, labels BLOB NOT NULL, ts INTEGER NOT NULL, line TEXT NOT NULL);"
      "CREATE INDEX logs_by_device ON logs (device_id, sequence);"
      "CREATE TABLE events (device_id TEXT NOT NULL, sequence INTEGER NOT "
      "NULL, ts INTEGER NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL, "
      "attributes BLOB NOT NULL);"
      "CREATE INDEX events_by_device ON events (device_id, sequence);"
      "INSERT INTO batches VALUES ('dev-a', 'metrics', 'e1', 1, x'', 3, 0),"
      " ('dev-a', 'logs', 'e1', 1, x'', 1, 0),"
      " ('dev-a', 'logs', 'e2', 1, x'', 1, 0),"
      " ('dev-a', 'events', 'e2', 1, x'', 1, 0);"
      "INSERT INTO series VALUES (1, 'old', x'');"
      "INSERT INTO points VALUES ('dev-a', 1, 1, 1, 0.5),"
      " ('dev-a', 1, 1, 2, -1e300), ('dev-a', 1, 1, 3, 9e999);"
      "INSERT INTO logs VALUES ('dev-a', 1, x'', 7, 'old line');"
      "INSERT INTO events VALUES ('dev-a', 1, 8, 'k', 'old event', x'');");
    REQUIRE_MESSAGE(!err, render(err));
  }
  auto st = f.open();
  auto pts = points_of(st, "dev-a");
  REQUIRE(pts.size() == 3);
  CHECK(pts[0].value == 0.5);
  CHECK(pts[1].value == -1e300);
  CHECK(pts[2].value == std::numeric_limits<double>::infinity());
  CHECK(pts[2].name == "old");
  auto logs = st.logs("dev-a");
  REQUIRE(logs);
  REQUIRE(logs->size() == 1);
  CHECK(logs->at(0).line == "old line");
  auto events = st.events("dev-a");
  REQUIRE(events);
  REQUIRE(events->size() == 1);
  CHECK(events->at(0).message == "old event");
  CHECK(rows_beside(f.path,
                    "SELECT 'p', epoch FROM points UNION ALL SELECT 'l', "
                    "epoch FROM logs UNION ALL SELECT 'e', epoch FROM events",
                    2)
        == std::vector<std::string>{"p|e1", "p|e1", "p|e1", "l|", "e|e2"});
  CHECK(rows_beside(f.path,
                    "SELECT count(*) FROM sqlite_master WHERE name LIKE "
                    "'%_by_device'",
                    1)
        == std::vector<std::string>{"0"});
  // New rows go in beside the migrated ones, NaN included.
  auto xs = test::special_samples(clock_start_ms);
  auto b = batch("dev-a", 2, xs);
  b.epoch = "e1";
  write_ok(st, b);
  check_same_samples(points_of(st, "dev-a"), concat({pts, xs}), true);
}

TEST_CASE("the embedded store actor answers write, devices, points and "
          "stats") {
  store_fixture f;
  auto store = std::make_shared<embedded_store>(f.open());
  caf::actor_system_config cfg;
  register_messages(cfg);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto st = sys.spawn<caf::detached>(cloud_store, store);
  auto xs = samples(3, 1);
  ingest_outcome out;
  self->request(st, 5s, write_atom::value, batch("dev-a", 1, xs))
    .receive([&](ingest_outcome& x) { out = x; },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  CHECK(out.last_acked == 1);
  CHECK(out.stored == 3);
  self->request(st, 5s, write_atom::value, batch("dev-a", 1, xs))
    .receive([&](ingest_outcome& x) { out = x; },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  CHECK(out.duplicate);
  device_infos ds;
  self->request(st, 5s, devices_atom::value)
    .receive([&](device_infos& x) { ds = std::move(x); },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].duplicates == 1);
  metric_samples got;
  self->request(st, 5s, points_atom::value, std::string{"dev-a"})
    .receive([&](metric_samples& x) { got = std::move(x); },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  check_same_samples(got, xs);
  actor_stats stats;
  self->request(st, 5s, stats_atom::value)
    .receive([&](actor_stats& x) { stats = std::move(x); },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  CHECK(stats.name == "cloud_store");
  CHECK(stats.counters["batches_stored"] == 1);
  CHECK(stats.counters["duplicates"] == 1);
  self->send_exit(st, caf::exit_reason::user_shutdown);
  self->wait_for(st);
}

TEST_CASE("a sequence reused with other content or far ahead is refused") {
  test::scratch_dir dir{dir_prefix};
  REQUIRE(dir.ok());
  auto clk = std::make_shared<manual_clock>(clock_start_ms);
  auto st = embedded_store::open(dir.file("cloud.db"), clk);
  REQUIRE(st);
  auto b = batch("d", 1, samples(3, 1));
  b.epoch = "e1";
  b.checksum = "aaaaaaaa";
  REQUIRE(st->write(b));
  auto again = b;
  again.checksum = "bbbbbbbb";
  auto r = st->write(again);
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == static_cast<uint8_t>(ec::bad_sequence));
  auto far = b;
  far.sequence = 5'000'000;
  r = st->write(far);
  REQUIRE_FALSE(r);
  CHECK(r.error().code() == static_cast<uint8_t>(ec::bad_sequence));
  r = st->write(b);
  REQUIRE(r);
  CHECK(r->duplicate);
  auto pts = st->points("d");
  REQUIRE(pts);
  CHECK(pts->size() == 3);
}

namespace {

/// Rows of wire_series for (device, epoch), read through a second
/// connection: what the store would load after a restart.
int64_t wire_rows(const std::string& path, const std::string& device,
                  const std::string& epoch) {
  auto db = sqlite::database::open(path);
  REQUIRE(db);
  auto st = db->prepare("SELECT count(*) FROM wire_series WHERE device_id = "
                        "?1 AND epoch = ?2");
  REQUIRE(st);
  st->bind(1, device).bind(2, epoch);
  auto row = st->step();
  REQUIRE(row);
  REQUIRE(*row);
  return st->column_int(0);
}

bool is(const caf::error& err, ec code) {
  return err.category() == caf::atom("fleetd")
         && err.code() == static_cast<uint8_t>(code);
}

/// Stores dev-a's batch `seq` of epoch e1 with `xs` encoded against the
/// device's session `dev`, then commits `xs` to `dev` as the device does
/// once it is acked; returns what the commit returned.
caf::error write_committed(embedded_store& st, codec_context& dev, int64_t seq,
                           const metric_samples& xs) {
  write_ok(st, columnar_batch("dev-a", "e1", seq, encode_columnar(xs, dev)));
  return commit_columnar(dev, xs);
}

} // namespace

TEST_CASE("set_config numbers versions per device; write returns the config "
          "only while the batch's config_version is older") {
  store_fixture f;
  auto st = f.open();
  CHECK(write_ok(st, batch("dev-a", 1, samples(1, 1))).config.version == 0);
  cloud_settings x;
  x.version = 42; // ignored: the store numbers
  x.batch_size = 100;
  x.sync_interval_ms = 10'000;
  x.retention_ms = 3'600'000;
  x.zstd_level = 3;
  auto all = [&x] { return settings_change{x, all_settings_fields, false}; };
  auto v = st.set_config("dev-a", all());
  REQUIRE_MESSAGE(v, render(v.error()));
  CHECK(v->version == 1);
  CHECK(v->batch_size == 100);
  v = st.set_config("dev-b", settings_change{x, all_settings_fields, true});
  REQUIRE(v);
  CHECK(v->version == 1);
  x.batch_size = 200;
  v = st.set_config("dev-a", all());
  REQUIRE(v);
  CHECK(v->version == 2);
  int64_t seq = 2;
  for (auto [have, want] : std::vector<std::pair<int64_t, int64_t>>{
         {0, 2}, {1, 2}, {2, 0}, {3, 0}}) {
    CAPTURE(have);
    auto b = batch("dev-a", seq++, samples(1, 2));
    b.config_version = have;
    auto out = write_ok(st, b);
    CHECK(out.config.version == want);
    if (want != 0) {
      CHECK(out.config.batch_size == 200);
      CHECK(out.config.sync_interval_ms == 10'000);
      CHECK(out.config.retention_ms == 3'600'000);
      CHECK(out.config.zstd_level == 3);
    }
  }
  // A duplicate answers with the config too.
  auto dup = batch("dev-a", 2, samples(1, 2));
  dup.config_version = 1;
  auto out = write_ok(st, dup);
  CHECK(out.duplicate);
  CHECK(out.config.version == 2);
  // Device b has its own version 1.
  auto b = batch("dev-b", 1, samples(1, 3));
  b.config_version = 1;
  CHECK(write_ok(st, b).config.version == 0);
  // Versions survive a reopen and go on counting.
  st = f.open();
  v = st.set_config("dev-a", all());
  REQUIRE(v);
  CHECK(v->version == 3);
}

TEST_CASE("set_config changes only the fields named, clears one back to "
          "the device's own, and refuses what it cannot store exactly") {
  store_fixture f;
  auto st = f.open();
  write_ok(st, batch("dev-a", 1, samples(1, 1)));
  auto change = [](uint32_t fields, cloud_settings values = {}) {
    return settings_change{values, fields, false};
  };
  auto ok = [&](const std::string& device, const settings_change& c) {
    auto v = st.set_config(device, c);
    REQUIRE_MESSAGE(v, render(v.error()));
    return *v;
  };
  auto refused = [&](const std::string& device, const settings_change& c) {
    auto v = st.set_config(device, c);
    REQUIRE_FALSE(v);
    return static_cast<ec>(v.error().code());
  };
  cloud_settings x;
  x.batch_size = 100;
  x.sync_interval_ms = 1'500;
  x.retention_ms = 90 * 60'000;
  x.zstd_level = 0;
  auto v = ok("dev-a", change(all_settings_fields, x));
  CHECK(v.version == 1);
  // One field: the others keep version 1's values, to the millisecond.
  cloud_settings y;
  y.batch_size = 7;
  v = ok("dev-a", change(field_batch_size, y));
  CHECK(v.version == 2);
  CHECK(v.batch_size == 7);
  CHECK(v.sync_interval_ms == 1'500);
  CHECK(v.retention_ms == 5'400'000);
  CHECK(v.zstd_level == 0);
  // Cleared: back to the own values (0, -1) a default cloud_settings holds.
  v = ok("dev-a", change(field_sync_interval | field_zstd_level));
  CHECK(v.version == 3);
  CHECK(v.batch_size == 7);
  CHECK(v.sync_interval_ms == 0);
  CHECK(v.retention_ms == 5'400'000);
  CHECK(v.zstd_level == -1);
  // What a device's next batch gets is that merged version.
  auto b = batch("dev-a", 2, samples(1, 2));
  b.config_version = 2;
  auto out = write_ok(st, b);
  CHECK(out.config.version == 3);
  CHECK(out.config.batch_size == 7);
  CHECK(out.config.sync_interval_ms == 0);
  CHECK(out.config.retention_ms == 5'400'000);
  CHECK(out.config.zstd_level == -1);
  // Refused, and nothing stored: a device never seen (unless create),
  // nothing to set, values the SyncConfig cannot carry.
  CHECK(refused("dev-never", change(field_batch_size, y))
        == ec::unknown_device);
  CHECK(refused("dev-a", change(0)) == ec::bad_config);
  CHECK(refused("dev-a", change(64, y)) == ec::bad_config);
  cloud_settings big;
  big.batch_size = max_setting_batch_size + 1;
  big.sync_interval_ms = max_setting_ms + 1;
  big.retention_ms = -1;
  big.zstd_level = max_setting_zstd_level + 1;
  for (auto field : {field_batch_size, field_sync_interval, field_retention,
                     field_zstd_level}) {
    CAPTURE(field);
    CHECK(refused("dev-a", change(field, big)) == ec::bad_config);
  }
  // A refused change did not use up a version.
  CHECK(ok("dev-a", change(field_retention)).version == 4);
  // Created ahead of the device, then known: no create needed any more.
  auto c = change(field_batch_size, y);
  c.create = true;
  CHECK(ok("dev-new", c).version == 1);
  v = ok("dev-new", change(field_zstd_level, x));
  CHECK(v.version == 2);
  CHECK(v.batch_size == 7);
  CHECK(v.zstd_level == 0);
}

TEST_CASE("logs and events are stored and read back, in the store and "
          "through the actor") {
  store_fixture f;
  auto store = std::make_shared<embedded_store>(f.open());
  log_lines lines{
    {{{"unit", "sshd"}}, 1'700'000'000'000'000'001, "accepted key"},
    {{{"unit", "kernel"}, {"prio", "4"}}, 1'700'000'000'000'000'002, "oom"},
    {{}, 3, std::string("nul \0 and \xff", 11)},
  };
  event_records events{
    {clock_start_ms, "lifecycle", "started", {{"version", "1.2.3"}}},
    {clock_start_ms + 1, "link", "offline", {}},
  };
  ingest_batch lb;
  lb.device_id = "dev-a";
  lb.stream = logs_stream;
  lb.sequence = 1;
  lb.logs = lines;
  auto out = write_ok(*store, lb);
  CHECK(out.stored == 3);
  ingest_batch eb;
  eb.device_id = "dev-a";
  eb.stream = events_stream;
  eb.sequence = 1;
  eb.events = events;
  out = write_ok(*store, eb);
  CHECK(out.stored == 2);
  // Duplicates store nothing more.
  CHECK(write_ok(*store, lb).duplicate);
  CHECK(write_ok(*store, eb).duplicate);
  auto check_logs = [&](const log_lines& got) {
    REQUIRE(got.size() == lines.size());
    for (size_t i = 0; i < got.size(); ++i) {
      CAPTURE(i);
      CHECK(got[i].labels == lines[i].labels);
      CHECK(got[i].timestamp_ns == lines[i].timestamp_ns);
      CHECK(got[i].line == lines[i].line);
    }
  };
  auto check_events = [&](const event_records& got) {
    REQUIRE(got.size() == events.size());
    for (size_t i = 0; i < got.size(); ++i) {
      CAPTURE(i);
      CHECK(got[i].timestamp_ms == events[i].timestamp_ms);
      CHECK(got[i].kind == events[i].kind);
      CHECK(got[i].message == events[i].message);
      CHECK(got[i].attributes == events[i].attributes);
    }
  };
  auto ls = store->logs("dev-a");
  REQUIRE(ls);
  check_logs(*ls);
  auto es = store->events("dev-a");
  REQUIRE(es);
  check_events(*es);
  CHECK(points_of(*store, "dev-a").empty());
  CHECK(store->logs("dev-b")->empty());
  CHECK(store->events("dev-b")->empty());
  caf::actor_system_config cfg;
  register_messages(cfg);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto act = sys.spawn<caf::detached>(cloud_store, store);
  self->request(act, 5s, logs_atom::value, std::string{"dev-a"})
    .receive([&](log_lines& got) { check_logs(got); },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  self
    ->request(act, 5s, events_atom::value, std::string{"dev-a"})
    .receive([&](event_records& got) { check_events(got); },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  self->send_exit(act, caf::exit_reason::user_shutdown);
  self->wait_for(act);
}

TEST_CASE("the sequence window: up to 10^6 ahead of the ack is accepted, "
          "one more is refused") {
  store_fixture f;
  auto st = f.open();
  auto r = st.write(batch("dev-a", 1'000'001, samples(1, 1)));
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), ec::bad_sequence));
  CHECK(write_ok(st, batch("dev-a", 1'000'000, samples(1, 1))).last_acked
        == 1'000'000);
  r = st.write(batch("dev-a", 2'000'001, samples(1, 2)));
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), ec::bad_sequence));
  CHECK(write_ok(st, batch("dev-a", 2'000'000, samples(1, 2))).last_acked
        == 2'000'000);
  // From the past, never seen: a gap filled; the ack does not go back.
  auto out = write_ok(st, batch("dev-a", 5, samples(1, 3)));
  CHECK_FALSE(out.duplicate);
  CHECK(out.last_acked == 2'000'000);
  CHECK(points_of(st, "dev-a").size() == 3);
}

TEST_CASE("the series table of a (device, epoch) survives a reopen of the "
          "store") {
  store_fixture f;
  codec_context dev;
  auto s1 = of_series({"cpu", "mem"}, 1);
  auto s2 = of_series({"mem", "disk", "net"}, 2);
  {
    auto st = f.open();
    write_committed(st, dev, 1, s1);
    write_committed(st, dev, 2, s2);
  }
  REQUIRE(dev.series.size() == 4);
  CHECK(wire_rows(f.path, "dev-a", "e1") == 4);
  auto st = f.open();
  // Batch 3 names no series inline: it decodes only against the old table
  // and the old histories (its digest covers both).
  auto s3 = of_series({"net", "cpu", "disk", "mem"}, 3);
  auto b3 = encode_columnar(s3, dev);
  REQUIRE(*columnar_base(b3) == 4);
  auto out = write_ok(st, columnar_batch("dev-a", "e1", 3, b3));
  CHECK(out.stored == 4);
  check_same_samples(points_of(st, "dev-a"), concat({s1, s2, s3}));
  // The duplicate of batch 2 is recognised after the reopen too.
  codec_context at2;
  commit_columnar(at2, s1);
  CHECK(write_ok(st, columnar_batch("dev-a", "e1", 2,
                                    encode_columnar(s2, at2)))
          .duplicate);
  // A new epoch of the device store has a table of its own, empty.
  auto r = st.write(columnar_batch("dev-a", "e2", 1, encode_columnar(s3, dev)));
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), ec::session_out_of_sync));
  write_ok(st, columnar_batch("dev-a", "e2", 1,
                              encode_columnar(s3, codec_context{})));
  CHECK(wire_rows(f.path, "dev-a", "e2") == 4);
  CHECK(wire_rows(f.path, "dev-a", "e1") == 4);
}

TEST_CASE("a session whose histories are lost refuses the next batch as out "
          "of sync rather than misreading it") {
  store_fixture f;
  codec_context dev;
  auto s1 = of_series({"cpu", "mem"}, 1);
  {
    auto st = f.open();
    REQUIRE(!write_committed(st, dev, 1, s1));
  }
  {
    auto db = sqlite::database::open(f.path);
    REQUIRE(db);
    REQUIRE_FALSE(db->exec("DELETE FROM wire_history"));
  }
  auto st = f.open();
  auto s2 = of_series({"cpu", "mem"}, 2);
  auto r = st.write(columnar_batch("dev-a", "e1", 2, encode_columnar(s2, dev)));
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), ec::session_out_of_sync));
  // The device's answer: the same points self-contained.
  write_ok(st, columnar_batch("dev-a", "e1", 2,
                              encode_columnar(s2, codec_context{})));
  check_same_samples(points_of(st, "dev-a"), concat({s1, s2}));
}

TEST_CASE("a transaction that fails after decoding leaves the session table "
          "as the database holds it") {
  store_fixture f;
  auto st = f.open();
  codec_context dev;
  auto s1 = of_series({"cpu", "mem"}, 1);
  write_committed(st, dev, 1, s1);
  auto s2 = of_series({"mem", "temp"}, 2);
  auto b2 = encode_columnar(s2, dev);
  REQUIRE(*columnar_base(b2) == 2);
  {
    // Fails the batch record, i.e. after the columnar bytes decoded (and the
    // in-memory table grew) within the same transaction.
    auto db = sqlite::database::open(f.path);
    REQUIRE(db);
    auto err = db->exec("CREATE TRIGGER refuse BEFORE INSERT ON batches "
                        "WHEN NEW.sequence = 2 BEGIN "
                        "SELECT RAISE(ABORT, 'refused by test'); END;");
    REQUIRE_MESSAGE(!err, render(err));
  }
  std::string failing;
  SUBCASE("a batch that extends the table") {
    failing = b2;
  }
  SUBCASE("a batch that restarts the table (base 0)") {
    failing = encode_columnar(of_series({"a", "b", "c"}, 2), codec_context{});
  }
  auto r = st.write(columnar_batch("dev-a", "e1", 2, failing));
  REQUIRE_FALSE(r);
  CHECK(st.stats().counters["failures"] == 1);
  CHECK(wire_rows(f.path, "dev-a", "e1") == 2);
  CHECK(points_of(st, "dev-a").size() == 2);
  {
    auto db = sqlite::database::open(f.path);
    REQUIRE(db);
    REQUIRE_FALSE(db->exec("DROP TRIGGER refuse"));
  }
  // The device never got an ack, so it resends batch 2 against its table
  // of 2; an in-memory table left at 3 would refuse it as out of sync.
  auto out = write_ok(st, columnar_batch("dev-a", "e1", 2, b2));
  CHECK(out.stored == 2);
  commit_columnar(dev, s2);
  CHECK(wire_rows(f.path, "dev-a", "e1") == 3);
  auto s3 = of_series({"temp", "cpu"}, 3);
  auto b3 = encode_columnar(s3, dev);
  REQUIRE(*columnar_base(b3) == 3);
  write_ok(st, columnar_batch("dev-a", "e1", 3, b3));
  check_same_samples(points_of(st, "dev-a"), concat({s1, s2, s3}));
}

TEST_CASE("columnar bytes the store cannot use are refused without storing "
          "anything") {
  store_fixture f;
  auto st = f.open();
  codec_context dev;
  auto s1 = of_series({"cpu", "mem"}, 1);
  write_committed(st, dev, 1, s1);
  auto s2 = of_series({"cpu", "disk"}, 2);
  auto b2 = encode_columnar(s2, dev);
  auto r = st.write(columnar_batch("dev-a", "e1", 2, b2 + '\0'));
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), ec::decode_failed));
  r = st.write(columnar_batch("dev-a", "e1", 2,
                              encode_columnar(s2, codec_context{}) + '\0'));
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), ec::decode_failed));
  codec_context ahead = dev;
  commit_columnar(ahead, of_series({"x"}, 0));
  r = st.write(columnar_batch("dev-a", "e1", 2, encode_columnar(s2, ahead)));
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), ec::session_out_of_sync));
  CHECK(wire_rows(f.path, "dev-a", "e1") == 2);
  auto ds = devices_of(st);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].batches_received == 1);
  check_same_samples(points_of(st, "dev-a"), s1);
  write_ok(st, columnar_batch("dev-a", "e1", 2, b2));
  check_same_samples(points_of(st, "dev-a"), concat({s1, s2}));
}

TEST_CASE("the latest DeviceCapability per device is kept, also from a "
          "duplicate, and a refused batch writes none") {
  store_fixture f;
  auto st = f.open();
  auto b1 = batch("dev-a", 1, samples(2, 1));
  b1.capability.tier = 1;
  b1.capability.total_ram = 16'000'000'000;
  b1.capability.cpu_cores = 8;
  b1.capability.has_sqlite = true;
  b1.capability.has_network = true;
  write_ok(st, b1);
  auto ds = devices_of(st);
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].capability.tier == 1);
  CHECK(ds[0].capability.total_ram == 16'000'000'000);
  CHECK(ds[0].capability.cpu_cores == 8);
  CHECK(ds[0].capability.has_sqlite);
  CHECK(ds[0].capability.has_network);
  // A resend after a capability change: a duplicate, but the news counts.
  auto again = b1;
  again.capability.tier = 2;
  again.capability.total_ram = 268'435'456;
  again.retry_count = 3;
  CHECK(write_ok(st, again).duplicate);
  CHECK(devices_of(st)[0].capability.tier == 2);
  CHECK(devices_of(st)[0].capability.total_ram == 268'435'456);
  // Other content under a held sequence is refused, capability and all.
  auto refused = batch("dev-a", 1, samples(3, 7));
  refused.checksum = "other";
  refused.capability.tier = 3;
  CHECK_FALSE(st.write(refused));
  CHECK(devices_of(st)[0].capability.tier == 2);
  // A device that never sent one shows tier 0.
  write_ok(st, batch("dev-b", 1, samples(1, 1)));
  CHECK(devices_of(st).back().capability.tier == 0);
}

TEST_CASE("a file with only one of the delivery flow columns (a crash "
          "between the two ALTERs) opens and gains the other") {
  test::scratch_dir dir{dir_prefix};
  REQUIRE(dir.ok());
  auto clk = std::make_shared<manual_clock>(clock_start_ms);
  auto path = dir.file("cloud.db");
  REQUIRE(embedded_store::open(path, clk));
  {
    auto db = sqlite::database::open(path);
    REQUIRE(db);
    REQUIRE_FALSE(db->exec("ALTER TABLE delivery DROP COLUMN stored; "
                           "ALTER TABLE declared_drops DROP COLUMN stored"));
  }
  auto st = embedded_store::open(path, clk);
  REQUIRE(st);
  auto db = sqlite::database::open(path);
  REQUIRE(db);
  for (auto table : {"delivery", "declared_drops"}) {
    auto has = db->has_column(table, "stored");
    REQUIRE(has);
    CHECK(*has);
  }
}
