// The operator changes a device's sync settings on the cloud (fleetctl
// config): the device applies them within one sync round, to the
// millisecond, and a restarted device applies them before it ever reaches
// the cloud again; a change keeps the settings it does not name; fleetctl
// refuses (exit 2) an unknown device without --create, nothing to set, and
// a value the settings cannot carry.
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

  std::pair<int, std::string> ctl(uint16_t port,
                                  std::vector<std::string> args) {
    std::vector<std::string> argv{"--node",
                                  "127.0.0.1:" + std::to_string(port)};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_to_end(program("fleetctl"), argv, 30s);
  }

  int64_t config_version(const std::string& device) {
    return query_int(cloud_db, "SELECT coalesce(max(version), 0) FROM "
                               "device_config WHERE device_id = '"
                                 + device + "'");
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
  auto out = n.ctl(n.cloud_console,
                   {"config", device_id, "--set.batch-size=7",
                    "--set.sync-interval=1500ms", "--set.retention=90min"});
  INFO(out.second);
  REQUIRE(out.first == 0);
  CHECK(out.second.find("settings version 1") != std::string::npos);
  // Shown in the units options read (1s500ms, 1h30m), exactly.
  CHECK(out.second.find("sync_interval 1s500ms") != std::string::npos);
  CHECK(out.second.find("retention 1h30m") != std::string::npos);
  // Applied: the capability actor and every sync actor run version 1.
  REQUIRE(eventually(
    [&] {
      auto st = console_status(console);
      return st && counter(*st, "capability", "cloud_settings_version") == 1
             && counter(*st, "capability", "batch_size") == 7
             && counter(*st, "capability", "sync_interval_ms") == 1500
             && counter(*st, "capability", "retention_ms") == 5'400'000
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
  CHECK(counter(*st, "capability", "sync_interval_ms") == 1500);
  CHECK(counter(*st, "capability", "retention_ms") == 5'400'000);
  CHECK(counter(*st, "sync_metrics", "config_version") == 1);
  // An edge node refuses the command.
  auto edge = n.ctl(console, {"config", device_id, "--set.batch-size=20"});
  CHECK(edge.first == 2);
  CHECK(edge.second.find("only a cloud node") != std::string::npos);
  n.device->signal(SIGTERM);
  REQUIRE(n.device->wait(10s) == 0);
  // A change keeps what it does not name; --unset gives one back.
  n.start_cloud();
  for (auto& [flag, want] : std::vector<std::pair<std::string, std::string>>{
         {"--set.batch-size=20",
          "{\"device_id\":\"config-dev\",\"version\":2,\"batch_size\":20,"
          "\"sync_interval_ms\":1500,\"retention_ms\":5400000,"
          "\"zstd_level\":-1}\n"},
         {"--unset.sync-interval",
          "{\"device_id\":\"config-dev\",\"version\":3,\"batch_size\":20,"
          "\"sync_interval_ms\":0,\"retention_ms\":5400000,"
          "\"zstd_level\":-1}\n"}}) {
    auto res = n.ctl(n.cloud_console, {"config", device_id, flag, "--json"});
    CAPTURE(flag);
    CHECK(res.first == 0);
    CHECK(res.second == want);
  }
  // Refused with exit 2, a reason, and no new version.
  struct refusal {
    std::vector<std::string> args;
    const char* reason;
  };
  for (auto& r : std::vector<refusal>{
         {{"config", "never-seen-dev", "--set.batch-size=5"},
          "never heard from device 'never-seen-dev'"},
         {{"config", device_id}, "nothing to set"},
         {{"config", device_id, "--create"}, "nothing to set"},
         {{"config", device_id, "--set.batch-size=5", "--unset.batch-size"},
          "both --set.batch-size and --unset.batch-size"},
         {{"config", device_id, "--set.retention=600000h"},
          "retention_ms: 2160000000000 is out of range"},
         {{"config", device_id, "--set.sync-interval=1500us"},
          "1500us is not a whole number of milliseconds"},
         {{"config", device_id, "--set.sync-interval=0s"},
          "set.sync-interval: must be at least 1ms"},
         {{"config", device_id, "--set.batch-size=0"},
          "set.batch-size: 0 is out of range"}}) {
    auto res = n.ctl(n.cloud_console, r.args);
    CAPTURE(r.args.back());
    INFO(res.second);
    CHECK(res.first == 2);
    CHECK(res.second.find(r.reason) != std::string::npos);
  }
  CHECK(n.config_version(device_id) == 3);
  CHECK(n.config_version("never-seen-dev") == 0);
  // --create sets a device's settings before it ever syncs; then it is known.
  auto created = n.ctl(n.cloud_console, {"config", "never-seen-dev",
                                         "--set.batch-size=5", "--create"});
  INFO(created.second);
  CHECK(created.first == 0);
  CHECK(created.second.find("settings version 1") != std::string::npos);
  CHECK(n.ctl(n.cloud_console,
              {"config", "never-seen-dev", "--set.zstd-level=0"})
          .first
        == 0);
  CHECK(n.config_version("never-seen-dev") == 2);
  // The device gets the merged version 3: its own interval (200ms) again.
  console = n.start_device();
  REQUIRE(eventually(
    [&] {
      auto st = console_status(console);
      return st && counter(*st, "capability", "cloud_settings_version") == 3
             && counter(*st, "capability", "batch_size") == 20
             && counter(*st, "capability", "sync_interval_ms") == 200
             && counter(*st, "capability", "retention_ms") == 5'400'000;
    },
    20s));
  n.device->signal(SIGTERM);
  CHECK(n.device->wait(10s) == 0);
  n.cloud->signal(SIGTERM);
  CHECK(n.cloud->wait(10s) == 0);
}
