// The cloud's embedded store: each (device, stream, sequence) stored once,
// duplicates and gaps counted, everything kept across a reopen.
#include "cloud/embedded_store.hpp"

#include <stdlib.h>

#include <chrono>
#include <filesystem>
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

using namespace fleetd;
using namespace std::chrono_literals;

namespace fs = std::filesystem;

namespace {

constexpr int64_t clock_start_ms = 1'700'000'000'000;

// Each suite names its own temp directories, so leftovers say whose they are.
struct scratch_dir : fleetd::test::scratch_dir {
  scratch_dir() : fleetd::test::scratch_dir("fleetd-cloudstore") {
    // nop
  }
};

/// `n` samples of two series; `tag` makes the values of each batch unique.
metric_samples samples(size_t n, double tag) {
  metric_samples out;
  for (size_t i = 0; i < n; ++i) {
    metric_sample s;
    s.name = i % 2 == 0 ? "cpu" : "load1";
    if (i % 2 == 0)
      s.labels = {{"core", "0"}, {"mode", "idle"}};
    s.timestamp_ms = clock_start_ms + static_cast<int64_t>(i);
    s.value = tag * 1000 + static_cast<double>(i);
    out.push_back(std::move(s));
  }
  return out;
}

ingest_batch batch(std::string device, int64_t seq, metric_samples xs,
                   std::string stream = metrics_stream) {
  ingest_batch b;
  b.device_id = std::move(device);
  b.stream = std::move(stream);
  b.sequence = seq;
  b.samples = std::move(xs);
  return b;
}

void check_same_samples(const metric_samples& got,
                        const metric_samples& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i].name == want[i].name);
    CHECK(got[i].labels == want[i].labels);
    CHECK(got[i].timestamp_ms == want[i].timestamp_ms);
    CHECK(got[i].value == want[i].value);
  }
}

metric_samples concat(std::vector<metric_samples> parts) {
  metric_samples out;
  for (auto& p : parts)
    out.insert(out.end(), p.begin(), p.end());
  return out;
}

struct store_fixture {
  scratch_dir dir;
  std::shared_ptr<manual_clock> clock
    = std::make_shared<manual_clock>(clock_start_ms);
  std::string path = dir.file("cloud.db");

  cloud_store open() {
    REQUIRE(dir.ok());
    auto st = cloud_store::open(path, clock);
    REQUIRE_MESSAGE(st, "cannot open " << path << ": "
                                       << (st ? "" : render(st.error())));
    return std::move(*st);
  }
};

ingest_outcome write_ok(cloud_store& st, const ingest_batch& b) {
  auto r = st.write(b);
  REQUIRE_MESSAGE(r, render(r.error()));
  return *r;
}

metric_samples points_of(cloud_store& st, const std::string& device) {
  auto r = st.points(device);
  REQUIRE_MESSAGE(r, render(r.error()));
  return std::move(*r);
}

device_infos devices_of(cloud_store& st) {
  auto r = st.devices();
  REQUIRE_MESSAGE(r, render(r.error()));
  return std::move(*r);
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
  CHECK(stats.name == "embedded_store");
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

TEST_CASE("the embedded store actor answers write, devices, points and "
          "stats") {
  store_fixture f;
  auto store = std::make_shared<cloud_store>(f.open());
  caf::actor_system_config cfg;
  register_messages(cfg);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto st = sys.spawn<caf::detached>(embedded_store, store);
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
  CHECK(stats.name == "embedded_store");
  CHECK(stats.counters["batches_stored"] == 1);
  CHECK(stats.counters["duplicates"] == 1);
  self->send_exit(st, caf::exit_reason::user_shutdown);
  self->wait_for(st);
}

TEST_CASE("a sequence reused with other content or far ahead is refused") {
  scratch_dir dir;
  REQUIRE(dir.ok());
  auto clk = std::make_shared<manual_clock>(clock_start_ms);
  auto st = cloud_store::open(dir.file("cloud.db"), clk);
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
