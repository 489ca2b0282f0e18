// Network faults between device and cloud (delay, throttle, drop, blackhole,
// and a seeded mix, also over 10 simulated hours): once the network heals,
// every metric, log line and event arrives exactly once and in order; the
// "postgresql:" cases with the cloud on PostgreSQL through PgBouncer.
#include <doctest/doctest.h>

#include <csignal>
#include <cstdlib>
#include <memory>
#include <random>
#include <thread>

#include "fault_proxy.hpp"
#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* device_id = "fault-dev";

/// How the device runs: real time by default, or simulated hours.
struct device_plan {
  int64_t rounds = 100;
  std::string interval = "50ms";
  int64_t series = 20;
  int64_t log_lines = 2;
  int64_t event_every = 10;
  int64_t speed = 1;
  std::vector<std::string> sync = {"--sync.interval=50ms",
                                   "--sync.batch-size=100",
                                   "--sync.backoff-base=20ms",
                                   "--sync.backoff-cap=300ms"};
};

/// fleetd-cloud, a fault proxy in front of it, and fleetd syncing through it.
struct rig {
  temp_dir tmp;
  std::unique_ptr<process> cloud;
  std::unique_ptr<fault_proxy> proxy;
  std::unique_ptr<process> device;
  std::string dev_dir = tmp.path() + "/device";
  std::string dev_db = dev_dir + "/fleetd.db";
  cloud_backend backend;
  cloud_store cloud_db;

  device_plan plan;

  explicit rig(device_plan p = {}, cloud_backend b = {})
    : backend(std::move(b)),
      cloud_db(backend.store(tmp.path() + "/cloud")),
      plan(std::move(p)) {
    MESSAGE(backend.name(), ": temp dir ", tmp.path());
    std::vector<std::string> cloud_args{
      "--node.data-dir=" + tmp.path() + "/cloud", "--ingest.port=0",
      "--console.port=0", "--log.level=debug"};
    auto node_flags = backend.node_flags();
    cloud_args.insert(cloud_args.end(), node_flags.begin(), node_flags.end());
    cloud = std::make_unique<process>(program("fleetd-cloud"), cloud_args,
                                      tmp.path() + "/cloud.log");
    auto port = port_from(tmp.path() + "/cloud/ingest.port");
    auto console = port_from(tmp.path() + "/cloud/console.port");
    REQUIRE_MESSAGE(port != 0, read_file(tmp.path() + "/cloud.log"));
    REQUIRE(console != 0);
    proxy = std::make_unique<fault_proxy>(port);
    std::vector<std::string> args{
      "--node.data-dir=" + dev_dir, std::string("--device.id=") + device_id,
      "--cloud.port=" + std::to_string(proxy->port()), "--console.port=0",
      "--cloud.timeout=1s", "--tier.pin=1", "--collector.rounds=1",
      "--load.series=" + std::to_string(plan.series),
      "--load.interval=" + plan.interval,
      "--load.rounds=" + std::to_string(plan.rounds),
      "--load.log-lines=" + std::to_string(plan.log_lines),
      "--load.event-every=" + std::to_string(plan.event_every),
      "--clock.speed=" + std::to_string(plan.speed)};
    args.insert(args.end(), plan.sync.begin(), plan.sync.end());
    auto enroll = backend.device_flags(tmp.path(), console);
    args.insert(args.end(), enroll.begin(), enroll.end());
    device = std::make_unique<process>(program("fleetd"), args,
                                       tmp.path() + "/device.log");
  }

  int64_t cloud_batches() {
    return cloud_db.batches(device_id, "metrics");
  }

  /// The path works before any fault: at least one batch went through.
  void wait_first_batch() {
    REQUIRE(eventually([&] { return cloud_batches() >= 1; }, 10s));
  }

  /// Heals the network, waits for the drain, stops both, compares stores.
  void heal_and_check() {
    proxy->pass();
    REQUIRE(eventually([&] { return exists(dev_dir + "/console.port"); }, 10s));
    auto console =
      static_cast<uint16_t>(std::stoi(read_file(dev_dir + "/console.port")));
    REQUIRE(device_synced_all(console, dev_db, plan.rounds,
                              plan.speed > 1 ? 120s : 30s));
    // Faults of the network never put the series session out of step:
    // every metrics batch continued the histories of the one before.
    auto st = console_status(console);
    REQUIRE(st);
    CHECK(counter(*st, "sync_metrics", "session_resets") == 0);
    CHECK(counter(*st, "sync_metrics", "session_series") > 0);
    device->signal(SIGTERM);
    REQUIRE(device->wait(10s) == 0);
    cloud->signal(SIGTERM);
    REQUIRE(cloud->wait(10s) == 0);
    auto s = proxy->stats();
    proxy->stop();
    MESSAGE("proxy: connections ", s.connections, ", dropped ", s.dropped,
            ", bytes up ", s.bytes_up, ", bytes down ", s.bytes_down);
    auto n = check_records_exactly_once(dev_db, cloud_db, device_id);
    CHECK(n.points >= static_cast<size_t>(plan.rounds * plan.series));
    CHECK(static_cast<int64_t>(n.log_lines) == plan.rounds * plan.log_lines);
    CHECK(static_cast<int64_t>(n.events) >= plan.rounds / plan.event_every);
  }
};

void delay(const cloud_backend& backend) {
  rig r({}, backend);
  r.wait_first_batch();
  r.proxy->delay(200ms);
  auto before = r.cloud_batches();
  // Slow, not stopped: batches still arrive, at least one sent wholly
  // under the delay.
  CHECK(eventually([&] { return r.cloud_batches() >= before + 2; }, 60s));
  r.heal_and_check();
}

void throttle(const cloud_backend& backend) {
  rig r({}, backend);
  r.wait_first_batch();
  r.proxy->throttle(20000);
  auto before = r.cloud_batches();
  CHECK(eventually([&] { return r.cloud_batches() >= before + 2; }, 60s));
  r.heal_and_check();
}

void drop(const cloud_backend& backend) {
  rig r({}, backend);
  r.wait_first_batch();
  r.proxy->drop();
  // Every connection open at the drop is closed; from then on none forwards.
  REQUIRE(eventually([&] { return r.proxy->stats().open == 0; }, 10s));
  auto s0 = r.proxy->stats();
  // The device keeps trying, and each try is closed at once.
  REQUIRE(eventually(
    [&] { return r.proxy->stats().dropped >= s0.dropped + 3; }, 30s));
  auto s1 = r.proxy->stats();
  CHECK(s1.open == 0);
  CHECK(s1.bytes_up == s0.bytes_up);
  CHECK(s1.bytes_down == s0.bytes_down);
  r.heal_and_check();
}

void blackhole(const cloud_backend& backend) {
  rig r({}, backend);
  r.wait_first_batch();
  r.proxy->blackhole();
  // A write already under way completes; after it no chunk moves.
  REQUIRE(eventually([&] { return r.proxy->stats().writing == 0; }, 10s));
  auto s0 = r.proxy->stats();
  // The device's requests go unanswered: it gives up on them (its 1 s
  // cloud.timeout) and connects again, twice.
  REQUIRE(eventually(
    [&] { return r.proxy->stats().connections >= s0.connections + 2; },
    30s));
  auto s1 = r.proxy->stats();
  CHECK(s1.bytes_up == s0.bytes_up);
  CHECK(s1.bytes_down == s0.bytes_down);
  r.heal_and_check();
}

} // namespace

TEST_CASE("delay: 200 ms per chunk") {
  delay({});
}

TEST_CASE("throttle: 20 kB/s") {
  throttle({});
}

TEST_CASE("drop: every connection closed while it lasts") {
  drop({});
}

TEST_CASE("blackhole: nothing forwarded while it lasts") {
  blackhole({});
}

// The same on PostgreSQL through PgBouncer (fault_test.pg).
TEST_CASE("postgresql: delay: 200 ms per chunk") {
  on_postgresql("fault_delay", delay);
}

TEST_CASE("postgresql: throttle: 20 kB/s") {
  on_postgresql("fault_throttle", throttle);
}

TEST_CASE("postgresql: drop: every connection closed while it lasts") {
  on_postgresql("fault_drop", drop);
}

TEST_CASE("postgresql: blackhole: nothing forwarded while it lasts") {
  on_postgresql("fault_blackhole", blackhole);
}

namespace {

void random_mix(rig& r, std::chrono::seconds length) {
  uint32_t seed = std::random_device{}();
  if (auto env = std::getenv("FLEETD_FAULT_SEED"))
    seed = static_cast<uint32_t>(std::strtoul(env, nullptr, 10));
  MESSAGE("seed ", seed, " (rerun with FLEETD_FAULT_SEED=", seed, ")");
  std::mt19937 rng(seed);
  r.wait_first_batch();
  auto pick = [&](int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  auto end = std::chrono::steady_clock::now() + length;
  std::string log;
  int changes = 0;
  while (std::chrono::steady_clock::now() < end) {
    switch (pick(0, 4)) {
      case 0:
        r.proxy->pass();
        break;
      case 1:
        r.proxy->delay(std::chrono::milliseconds(pick(20, 300)));
        break;
      case 2:
        r.proxy->throttle(pick(5000, 50000));
        break;
      case 3:
        r.proxy->drop();
        break;
      case 4:
        r.proxy->blackhole();
        break;
    }
    auto hold = pick(200, 500);
    if (++changes <= 40)
      log += r.proxy->mode() + " " + std::to_string(hold) + "ms; ";
    std::this_thread::sleep_for(std::chrono::milliseconds(hold));
  }
  MESSAGE(changes, " fault changes; the first ones: ", log);
  r.heal_and_check();
}

} // namespace

TEST_CASE("a seeded random mix of faults") {
  rig r;
  random_mix(r, 4s);
}

// The 10 simulated hours stay on the embedded store: 40 s of faults alone.
TEST_CASE("postgresql: a seeded random mix of faults") {
  on_postgresql("fault_mix", [](const cloud_backend& backend) {
    rig r({}, backend);
    random_mix(r, 4s);
  });
}

TEST_CASE("a seeded random mix of faults over 10 simulated hours") {
  // 100 series every 10 s, a log line a second and an event a minute, for
  // 10 hours of the device's clock run 900 times faster than real time; the
  // faults keep changing for the whole collection (40 s of real time).
  device_plan plan;
  plan.speed = 900;
  plan.rounds = 10 * 360;
  plan.interval = "10s";
  plan.series = 100;
  plan.log_lines = 10;
  plan.event_every = 6;
  // The tier's sync settings (5 min, 1000 points) and the default backoff
  // (1 s .. 5 min), all in simulated time.
  plan.sync = {};
  rig r(plan);
  random_mix(r, 40s);
}
