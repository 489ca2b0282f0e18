// The operator changes a device's sync settings on the cloud (fleetctl
// config): the device applies them within one sync round, and a restarted
// device applies them before it ever reaches the cloud again.
#include <doctest/doctest.h>

#include <csignal>
#include <unistd.h>
#include <memory>
#include <string>
#include <vector>

#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* device_id = "config-dev";

uint16_t port_in(const std::string& file) {
  auto port = port_from(file);
  REQUIRE(port != 0);
  return port;
}

struct nodes {
  temp_dir tmp;
  std::string cloud_dir = tmp.path() + "/cloud";
  std::string dev_dir = tmp.path() + "/device";
  std::string cloud_db = cloud_dir + "/cloud.db";
  std::unique_ptr<process> cloud;
  std::unique_ptr<process> device;
  uint16_t ingest = 0;
  uint16_t cloud_console = 0;

  void start_cloud() {
    // The port files of an earlier run must not be mistaken for this one's.
    ::unlink((cloud_dir + "/ingest.port").c_str());
    ::unlink((cloud_dir + "/console.port").c_str());
    cloud = std::make_unique<process>(
      program("fleetd-cloud"),
      std::vector<std::string>{"--node.data-dir=" + cloud_dir,
                               "--ingest.port=0", "--console.port=0"},
      tmp.path() + "/cloud.log");
    ingest = port_in(cloud_dir + "/ingest.port");
    cloud_console = port_in(cloud_dir + "/console.port");
  }

  uint16_t start_device() {
    ::unlink((dev_dir + "/console.port").c_str());
    device = std::make_unique<process>(
      program("fleetd"),
      std::vector<std::string>{
        "--node.data-dir=" + dev_dir, std::string{"--device.id="} + device_id,
        "--cloud.port=" + std::to_string(ingest), "--console.port=0",
        "--tier.pin=1", "--collector.rounds=1", "--load.series=10",
        "--load.interval=50ms", "--sync.interval=200ms",
        "--sync.batch-size=100", "--sync.backoff-base=20ms",
        "--sync.backoff-cap=200ms"},
      tmp.path() + "/device.log");
    return port_in(dev_dir + "/console.port");
  }

  int64_t last_metrics_batch() {
    return query_int(cloud_db, "SELECT coalesce(max(sequence), 0) FROM "
                               "batches WHERE stream = 'metrics'");
  }
};

} // namespace

TEST_CASE("a SyncConfig set on the cloud is applied within one sync round "
          "and survives a device restart") {
  nodes n;
  n.start_cloud();
  auto console = n.start_device();
  REQUIRE(eventually([&] { return n.last_metrics_batch() >= 2; }, 20s));
  auto before = n.last_metrics_batch();
  auto out = run_to_end(program("fleetctl"),
                        {"--node", "127.0.0.1:" + std::to_string(n.cloud_console),
                         "config", device_id, "--set.batch-size=7",
                         "--set.sync-interval=1s"},
                        30s);
  INFO(out.second);
  REQUIRE(out.first == 0);
  CHECK(out.second.find("settings version 1") != std::string::npos);
  // Applied: the capability actor and every sync actor run version 1.
  REQUIRE(eventually(
    [&] {
      auto st = console_status(console);
      return st && counter(*st, "capability", "cloud_settings_version") == 1
             && counter(*st, "capability", "batch_size") == 7
             && counter(*st, "capability", "sync_interval_ms") == 1000
             && counter(*st, "sync_metrics", "config_version") == 1
             && counter(*st, "sync_logs", "config_version") == 1
             && counter(*st, "sync_events", "config_version") == 1;
    },
    20s));
  // Within one round: the batch whose ack carried the settings, and one cut
  // before they reached the sync actor, may be large; none after them.
  REQUIRE(eventually([&] { return n.last_metrics_batch() >= before + 4; },
                     20s));
  auto big = query_int(n.cloud_db,
                       "SELECT count(*) FROM batches WHERE stream = 'metrics' "
                       "AND points > 7 AND sequence > "
                         + std::to_string(before + 2));
  CHECK(big == 0);
  CHECK(query_int(n.cloud_db, "SELECT count(*) FROM batches WHERE stream = "
                              "'metrics' AND sequence > "
                                + std::to_string(before + 2))
        >= 2);
  // Restart with the cloud gone: the settings come from the device's store.
  n.device->signal(SIGTERM);
  REQUIRE(n.device->wait(10s) == 0);
  n.cloud->signal(SIGTERM);
  REQUIRE(n.cloud->wait(10s) == 0);
  console = n.start_device();
  auto st = console_status(console);
  REQUIRE(st);
  CHECK(counter(*st, "capability", "cloud_settings_version") == 1);
  CHECK(counter(*st, "capability", "batch_size") == 7);
  CHECK(counter(*st, "capability", "sync_interval_ms") == 1000);
  CHECK(counter(*st, "sync_metrics", "config_version") == 1);
  // A newer version replaces it; an unknown device is still accepted (the
  // settings wait for it), and an edge node refuses the command.
  n.start_cloud();
  auto again = run_to_end(
    program("fleetctl"),
    {"--node", "127.0.0.1:" + std::to_string(n.cloud_console), "config",
     device_id, "--set.batch-size=20", "--json"},
    30s);
  CHECK(again.first == 0);
  CHECK(again.second.find("\"version\":2") != std::string::npos);
  auto edge = run_to_end(program("fleetctl"),
                         {"--node", "127.0.0.1:" + std::to_string(console),
                          "config", device_id, "--set.batch-size=20"},
                         30s);
  CHECK(edge.first == 1);
  CHECK(edge.second.find("only a cloud node") != std::string::npos);
  n.device->signal(SIGTERM);
  CHECK(n.device->wait(10s) == 0);
  n.cloud->signal(SIGTERM);
  CHECK(n.cloud->wait(10s) == 0);
}
