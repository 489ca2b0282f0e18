// The data stack end to end on real processes: a fleetd syncs to a
// fleetd-cloud whose journal fans out to a real VictoriaMetrics, a real
// ClickHouse, the Loki stand-in and the fleet view; once every sink's lag is
// 0, each backend holds exactly the device's own records (read from its
// file), once. With the store on PostgreSQL: events, the registry row, latest
// values and hourly aggregates there, compared the same way.
#include <algorithm>
#include <cmath>
#include <csignal>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <doctest/doctest.h>

#include "cloud/fleet_sink.hpp"
#include "data_stack_support.hpp"
#include "helpers.hpp"
#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "messages/types.hpp"
#include "skip.hpp"
#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr int64_t rounds = 6;
constexpr int64_t lines_per_round = 3;

// The fleet view in the node's store (read through the fleet sink's own
// readers): hourly aggregates exact and once, and per series the device's
// latest sample; returns the hours checked.
size_t check_fleet(const fleet_sink_config& where,
                   const samples_by_series& want) {
  auto f = make_fleet_sink(where);
  REQUIRE(f);
  auto hours = (*f)->hours("acme");
  REQUIRE_MESSAGE(hours, render(hours.error()));
  rollups got;
  for (auto& h : *hours) {
    CHECK(h.device == "dev");
    got[{h.metric, h.labels, h.hour_s}] = {
      h.sum, static_cast<uint64_t>(h.count), h.min, h.max};
  }
  auto n = check_rollups(std::move(got), want);
  auto latest = (*f)->latest("acme");
  REQUIRE(latest);
  CHECK(latest->size() == want.size());
  for (auto& l : *latest) {
    CAPTURE(l.metric);
    auto it = want.find({l.metric, l.labels});
    REQUIRE(it != want.end());
    // The series' last time; its value, exactly, among those of that time.
    auto& xs = it->second;
    CHECK(l.ts_ms == xs.back().first);
    CHECK(std::any_of(xs.begin(), xs.end(), [&](const sample& x) {
      return x.first == l.ts_ms && bits_of(x.second) == bits_of(l.value);
    }));
  }
  return n;
}

// Loki: the device's lines, once, in its one stream of tenant acme.
size_t check_loki(const loki_standin& loki, const std::string& dev_db) {
  std::vector<loki_entry> lines;
  for (auto& r : device_logs(dev_db)) {
    auto a = r.find(' ');
    auto b = r.find(' ', a + 1);
    lines.push_back({std::stoll(r.substr(a + 1, b - a - 1)),
                     unhex(r.substr(b + 1))});
  }
  REQUIRE(lines.size() == static_cast<size_t>(rounds * lines_per_round));
  std::stable_sort(lines.begin(), lines.end(), [](auto& x, auto& y) {
    return x.timestamp_ns < y.timestamp_ns;
  });
  CHECK(loki.streams("acme").size() == 1);
  CHECK(loki.entries("acme", {{"device_id", "dev"}, {"source", "fleetd_load"}})
        == lines);
  CHECK(loki.entry_count("acme") == lines.size());
  return lines.size();
}

std::vector<std::string> device_args(const std::string& dev_dir,
                                     uint16_t ingest,
                                     const std::string& enroll) {
  return {"--node.data-dir=" + dev_dir, "--device.id=dev",
          "--cloud.port=" + std::to_string(ingest),
          "--cloud.enroll-token=" + enroll, "--console.port=0",
          "--collector.rounds=1", "--load.series=3", "--load.interval=150ms",
          "--load.rounds=" + std::to_string(rounds),
          "--load.log-lines=" + std::to_string(lines_per_round),
          "--load.event-every=2", "--sync.interval=50ms",
          "--sync.backoff-base=20ms", "--sync.backoff-cap=300ms"};
}

// fleetd-cloud with `flags` in dir/cloud, and the device dev of org acme
// enrolled there, run until it synced every round, then stopped.
struct synced_run {
  std::unique_ptr<process> cloud;
  uint16_t console = 0;
  std::string dev_db;
};

synced_run run_device(const std::string& dir, std::vector<std::string> flags) {
  synced_run out;
  auto cloud_dir = dir + "/cloud";
  flags.insert(flags.end(), {"--node.data-dir=" + cloud_dir,
                             "--ingest.port=0", "--console.port=0"});
  out.cloud = std::make_unique<process>(program("fleetd-cloud"), flags,
                                        dir + "/cloud.log");
  auto ingest = port_from(cloud_dir + "/ingest.port");
  out.console = port_from(cloud_dir + "/console.port");
  REQUIRE_MESSAGE(ingest != 0, read_file(dir + "/cloud.log"));
  REQUIRE(out.console != 0);
  REQUIRE(fleetctl(dir, out.console, {"org", "create", "acme"}).first == 0);
  auto enroll = fleetctl_secret(dir, out.console,
                                {"enroll", "create", "--org", "acme"});
  auto dev_dir = dir + "/device";
  out.dev_db = dev_dir + "/fleetd.db";
  process device{program("fleetd"), device_args(dev_dir, ingest, enroll),
                 dir + "/device.log"};
  auto dev_console = port_from(dev_dir + "/console.port");
  REQUIRE(dev_console != 0);
  REQUIRE_MESSAGE(device_synced_all(dev_console, out.dev_db, rounds, 30s),
                  read_file(dir + "/device.log"));
  device.signal(SIGTERM);
  REQUIRE(device.wait(10s).has_value());
  return out;
}

} // namespace

TEST_CASE("a device's metrics and logs reach VictoriaMetrics, ClickHouse "
          "and Loki exactly once, rollups exact") {
  std::string why;
  auto vm = start_vm(why);
  if (!vm)
    return skip(why);
  auto* ch = shared_ch_server(why);
  if (!ch)
    return skip(why);
  loki_standin loki;
  auto loki_port = loki.start();
  REQUIRE(loki_port);
  temp_dir tmp;
  auto run = run_device(tmp.path(),
                        {"--sinks.victoria.url=" + vm->url(),
                         "--sinks.clickhouse.url=" + ch->url(),
                         "--sinks.loki.url=http://127.0.0.1:"
                           + std::to_string(*loki_port)});
  auto& dev_db = run.dev_db;
  REQUIRE_MESSAGE(
    eventually([&] { return sinks_drained(run.console); }, 30s),
    read_file(tmp.path() + "/cloud.log"));
  auto want = device_samples(dev_db);
  REQUIRE(total(want) > 0);
  stack_device who{"acme", "dev"};
  check_vm(*vm, who, want);
  auto hours = check_ch(*ch, who, want);
  auto lines = check_loki(loki, who, dev_db);
  CHECK(lines == static_cast<size_t>(rounds * lines_per_round));
  fleet_sink_config where;
  where.db_path = tmp.path() + "/cloud/cloud.db";
  auto fleet_hours = check_fleet(where, want);
  MESSAGE("checked ", total(want), " samples in ", want.size(),
          " series (VictoriaMetrics, ClickHouse raw), ", hours,
          " hourly rollups, ", lines, " log lines (Loki), ", fleet_hours,
          " hourly aggregates and the latest values (embedded store)");
}

namespace {

// The device's last sequence of `stream` as the device numbered it.
int64_t device_cut(const std::string& dev_db, const std::string& stream) {
  return query_int(dev_db, "SELECT next_sequence - 1 FROM stream_state WHERE "
                           "stream = '" + stream + "'");
}

// The registry row of acme/dev against the device's own file and the
// batches the cloud holds (check_records_exactly_once counted them).
void check_registry(const pg_database& db, const std::string& dev_db,
                    int64_t batches) {
  auto app = pg_connect(db.app_url);
  REQUIRE(!app.begin("acme"));
  auto r = pg_must(app, "SELECT last_seen_ms, last_batch_ms, batches, "
                        "duplicates, (last_sequences->>'metrics')::bigint, "
                        "(last_sequences->>'logs')::bigint, "
                        "(last_sequences->>'events')::bigint, tier, "
                        "cpu_cores, config_version, revoked_ms FROM "
                        "device_registry WHERE device = 'dev'");
  auto others = pg_must(app, "SELECT count(*) FROM device_registry");
  app.rollback();
  REQUIRE(r.rows() == 1);
  CHECK(others.int64(0, 0) == 1);
  CHECK(r.int64(0, 1) > 0);
  CHECK(r.int64(0, 0) >= r.int64(0, 1));
  CHECK(r.int64(0, 2) == batches);
  CHECK(r.int64(0, 4) == device_cut(dev_db, "metrics"));
  CHECK(r.int64(0, 5) == device_cut(dev_db, "logs"));
  // Events: the device records some while it stops, never sent.
  CHECK(r.int64(0, 6) <= device_cut(dev_db, "events"));
  CHECK(r.int64(0, 6) >= query_int(dev_db, "SELECT acked_sequence FROM "
                                           "stream_state WHERE stream = "
                                           "'events'"));
  CHECK(r.int64(0, 7) >= 1);
  CHECK(r.int64(0, 8) >= 1);
  CHECK(r.int64(0, 10) == 0);
  MESSAGE("registry: ", r.int64(0, 2), " batches, ", r.int64(0, 3),
          " duplicates, tier ", r.int64(0, 7), ", config version ",
          r.int64(0, 9));
}

} // namespace

TEST_CASE("with the store on PostgreSQL, a device's events, registry row, "
          "latest values and hourly aggregates are there exactly once") {
  std::string why;
  auto be = postgresql_backend("data_stack_pg", why);
  if (!be)
    return skip(why);
  temp_dir tmp;
  auto run = run_device(tmp.path(), be->node_flags());
  auto& dev_db = run.dev_db;
  REQUIRE_MESSAGE(
    eventually([&] { return sinks_drained(run.console, {"sink_fleet"}); },
               30s),
    read_file(tmp.path() + "/cloud.log"));
  auto store = cloud_store::postgresql(be->pg->app_url, "acme");
  auto records = check_records_exactly_once(dev_db, store, "dev");
  check_registry(*be->pg, dev_db, records.batches);
  auto want = device_samples(dev_db);
  REQUIRE(total(want) > 0);
  fleet_sink_config where;
  where.backend = "postgresql";
  where.postgresql_url = be->pg->app_url;
  auto hours = check_fleet(where, want);
  MESSAGE("PostgreSQL: ", records.events, " events, ", records.points,
          " points, ", records.log_lines, " log lines, ", records.batches,
          " batches; ", hours, " hourly aggregates and ", want.size(),
          " latest values");
}
