// A device with several cloud endpoints (cloud.endpoints): it moves on from
// one that does not answer, stays on the next, and every point arrives once.
// Two listeners in front of one node stand in for two nodes on one store.
#include <doctest/doctest.h>

#include <csignal>
#include <memory>

#include "fault_proxy.hpp"
#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* device_id = "failover-dev";
constexpr int64_t rounds = 80;

/// fleetd-cloud and a device syncing to `endpoints` (ports on 127.0.0.1).
struct rig {
  temp_dir tmp;
  std::unique_ptr<process> cloud;
  std::unique_ptr<process> device;
  std::string dev_dir = tmp.path() + "/device";
  std::string dev_db = dev_dir + "/fleetd.db";
  std::string cloud_db = tmp.path() + "/cloud/cloud.db";

  rig() {
    MESSAGE("temp dir ", tmp.path());
    cloud = std::make_unique<process>(
      program("fleetd-cloud"),
      std::vector<std::string>{"--node.data-dir=" + tmp.path() + "/cloud",
                               "--ingest.port=0", "--console.port=0"},
      tmp.path() + "/cloud.log");
  }

  uint16_t ingest_port() {
    return port_from(tmp.path() + "/cloud/ingest.port");
  }

  void start_device(const std::vector<uint16_t>& ports) {
    std::string endpoints;
    for (auto port : ports)
      endpoints += (endpoints.empty() ? "" : ",") + std::string("127.0.0.1:")
                   + std::to_string(port);
    device = std::make_unique<process>(
      program("fleetd"),
      std::vector<std::string>{
        "--node.data-dir=" + dev_dir, std::string("--device.id=") + device_id,
        "--cloud.endpoints=" + endpoints, "--console.port=0",
        "--cloud.timeout=2s", "--collector.interval=50ms",
        "--collector.rounds=" + std::to_string(rounds), "--sync.interval=50ms",
        "--sync.batch-size=100", "--sync.backoff-base=20ms",
        "--sync.backoff-cap=300ms"},
      tmp.path() + "/device.log");
  }

  int64_t cloud_batches() {
    return query_int(cloud_db, "SELECT count(*) FROM batches WHERE stream = "
                               "'metrics'");
  }

  /// Waits for the drain; returns the cloud_link's failovers and checks
  /// the series session never had to start over.
  int64_t drain() {
    auto console = port_from(dev_dir + "/console.port");
    REQUIRE(console != 0);
    REQUIRE(device_drained(console, rounds, 20s));
    auto st = console_status(console);
    REQUIRE(st);
    CHECK(counter(*st, "sync_metrics", "session_resets") == 0);
    return counter(*st, "cloud_link", "failovers");
  }

  /// Stops both and checks every point arrived once, sequences contiguous.
  void stop_and_check() {
    device->signal(SIGTERM);
    REQUIRE(device->wait(10s) == 0);
    cloud->signal(SIGTERM);
    REQUIRE(cloud->wait(10s) == 0);
    auto committed = check_metrics_exactly_once(dev_db, cloud_db, device_id);
    CHECK(committed > 0);
  }

  size_t failover_lines() {
    auto log = read_file(tmp.path() + "/device.log");
    size_t n = 0;
    for (auto pos = log.find("failing over from"); pos != std::string::npos;
         pos = log.find("failing over from", pos + 1))
      ++n;
    return n;
  }
};

} // namespace

TEST_CASE("a device whose first endpoint is a dead port syncs through the "
          "second, exactly once") {
  rig r;
  auto port = r.ingest_port();
  REQUIRE(port != 0);
  r.start_device({free_port(), port});
  CHECK(r.drain() == 1);
  CHECK(r.failover_lines() == 1);
  r.stop_and_check();
}

TEST_CASE("a node's door killed mid-stream: the device moves to the other "
          "one and every record arrives once, in sequence") {
  rig r;
  auto port = r.ingest_port();
  REQUIRE(port != 0);
  fault_proxy a{port};
  fault_proxy b{port};
  r.start_device({a.port(), b.port()});
  REQUIRE(eventually([&] { return r.cloud_batches() >= 5; }, 15s));
  CHECK(b.stats().connections == 0);
  // Listener and open connections gone at once, as with a killed node.
  a.stop();
  auto through_a = a.stats();
  auto before = r.cloud_batches();
  CHECK(r.drain() == 1);
  CHECK(r.cloud_batches() > before);
  CHECK(r.failover_lines() == 1);
  CHECK(b.stats().bytes_up > 0);
  CHECK(a.stats().bytes_up == through_a.bytes_up);
  r.stop_and_check();
  b.stop();
}
