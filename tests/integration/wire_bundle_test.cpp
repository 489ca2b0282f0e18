// Bytes per request on real processes: a tier-3 device whose metrics, logs
// and events are all due every round sends one POST /v2/sync per round, not
// three, through a byte-counting proxy, with its real device key; every
// record arrives exactly once. The same run with cloud.sync-version=1 (one
// batch per POST /v1/sync) is the baseline the figures are reported against.
#include <doctest/doctest.h>

#include <memory>
#include <set>

#include "fault_proxy.hpp"
#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* device_id = "round-dev";
constexpr const char* stored_as = "acme/round-dev";
constexpr int64_t rounds = 12;
constexpr int64_t series = 10;
// Rounds left out at the start: the system collector's one round and the
// lifecycle events go first.
constexpr int64_t warmup = 3;

struct rig {
  temp_dir tmp;
  std::string cloud_dir = tmp.path() + "/cloud";
  std::string dev_dir = tmp.path() + "/device";
  std::unique_ptr<process> cloud;
  std::unique_ptr<fault_proxy> proxy;
  std::unique_ptr<process> device;
  cloud_store cloud_db{cloud_dir + "/cloud.db"};
  uint16_t console = 0;

  explicit rig(int64_t sync_version) {
    cloud = std::make_unique<process>(
      program("fleetd-cloud"),
      std::vector<std::string>{"--node.data-dir=" + cloud_dir,
                               "--ingest.port=0", "--console.port=0"},
      tmp.path() + "/cloud.log");
    auto port = port_from(cloud_dir + "/ingest.port");
    auto cloud_console = port_from(cloud_dir + "/console.port");
    REQUIRE_MESSAGE((port != 0 && cloud_console != 0),
                    read_file(tmp.path() + "/cloud.log"));
    REQUIRE(fleetctl(tmp.path(), cloud_console, {"org", "create", "acme"})
              .first
            == 0);
    auto key = fleetctl_secret(tmp.path(), cloud_console,
                               {"device", "add", "--org", "acme", device_id});
    write_file(tmp.path() + "/device.key", key + "\n");
    proxy = std::make_unique<fault_proxy>(port);
    device = std::make_unique<process>(
      program("fleetd"),
      std::vector<std::string>{
        "--node.data-dir=" + dev_dir, std::string("--device.id=") + device_id,
        "--cloud.port=" + std::to_string(proxy->port()),
        "--cloud.key-file=" + tmp.path() + "/device.key",
        "--cloud.sync-version=" + std::to_string(sync_version),
        "--console.port=0", "--tier.pin=3", "--collector.rounds=1",
        "--load.series=" + std::to_string(series), "--load.interval=1s",
        "--load.rounds=" + std::to_string(rounds), "--load.log-lines=1",
        "--load.event-every=1"},
      tmp.path() + "/device.log");
    console = port_from(dev_dir + "/console.port");
    REQUIRE_MESSAGE(console != 0, read_file(tmp.path() + "/device.log"));
  }

  size_t rows(cloud_store::table t) {
    return cloud_db.rows(t, stored_as).size();
  }

  /// Rounds of load data the cloud holds (one log line each).
  int64_t rounds_held() {
    return static_cast<int64_t>(rows(cloud_store::table::logs));
  }
};

struct traffic {
  int64_t bytes = 0;
  int64_t requests = 0;
  int64_t batches = 0;
  int64_t rounds = 0;
};

// Waits until the cloud holds `n` rounds and the link is idle.
traffic at_round(rig& r, int64_t n) {
  traffic out;
  REQUIRE_MESSAGE(eventually([&] { return r.rounds_held() >= n; }, 60s),
                  read_file(r.tmp.path() + "/device.log"));
  auto st = console_status(r.console);
  REQUIRE(st);
  auto p = r.proxy->stats();
  out.bytes = p.bytes_up + p.bytes_down;
  out.requests = counter(*st, "cloud_link", "requests");
  out.batches = counter(*st, "cloud_link", "batches");
  out.rounds = r.rounds_held();
  return out;
}

// A run's traffic over the rounds after the warm-up, and its exactly-once
// checks once every round arrived.
traffic measure(int64_t sync_version) {
  rig r(sync_version);
  auto a = at_round(r, warmup);
  // The device is done when all rounds arrived; the last exchange may still
  // be counting.
  auto b = at_round(r, rounds);
  REQUIRE(eventually(
    [&] {
      auto st = console_status(r.console);
      return st && counter(*st, "cloud_link", "batches") >= b.batches
             && r.rows(cloud_store::table::events) >= rounds;
    },
    30s));
  // Every record once: the load's points, one log line and one mark a round.
  auto points = r.cloud_db.rows(cloud_store::table::points, stored_as);
  std::set<std::vector<std::string>> distinct(points.begin(), points.end());
  CHECK(distinct.size() == points.size());
  int64_t load_points = 0;
  for (auto& p : points)
    load_points += p[0].rfind("fleetd_load", 0) == 0 ? 1 : 0;
  CHECK(load_points >= rounds * series);
  CHECK(r.rows(cloud_store::table::logs) == static_cast<size_t>(rounds));
  int64_t marks = 0;
  for (auto& e : r.cloud_db.rows(cloud_store::table::events, stored_as))
    marks += e[0] == "load_mark" ? 1 : 0;
  CHECK(marks == rounds);
  for (auto& s : r.cloud_db.rows(cloud_store::table::streams, stored_as))
    CHECK_MESSAGE(s[3] == "0", s[0] << " has duplicates");
  return {b.bytes - a.bytes, b.requests - a.requests, b.batches - a.batches,
          b.rounds - a.rounds};
}

} // namespace

TEST_CASE("a tier-3 round sends one request, not three, and every record "
          "arrives exactly once") {
  auto v1 = measure(1);
  auto v2 = measure(2);
  CHECK(v1.requests == v1.batches);
  CHECK(v1.batches >= 3 * v1.rounds);
  // About one request per round: a round the coalesce window splits (more
  // often on a loaded machine) adds one, yet requests carry 2+ batches.
  MESSAGE("v2: ", v2.requests, " requests for ", v2.rounds, " rounds");
  CHECK(v2.requests * 2 <= v2.batches);
  CHECK(v2.batches >= 3 * v2.rounds);
  CHECK(v2.bytes < v1.bytes);
  // Before this change each v1 request also carried "User-Agent: fleetd"
  // and its answer "Server: fleetd-cloud" (20 + 22 bytes).
  auto before = v1.bytes + v1.requests * 42;
  MESSAGE("per round: v1 as before ", before / v1.rounds, " bytes, v1 now ",
          v1.bytes / v1.rounds, " bytes (", v1.requests, " requests for ",
          v1.rounds, " rounds), v2 ", v2.bytes / v2.rounds, " bytes (",
          v2.requests, " requests for ", v2.rounds, " rounds); ratio ",
          static_cast<double>(v2.bytes) / static_cast<double>(v2.rounds)
            / (static_cast<double>(before)
               / static_cast<double>(v1.rounds)));
}
