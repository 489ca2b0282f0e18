// fleetd-cloud killed with SIGKILL mid-stream: every point arrives exactly once.
#include <doctest/doctest.h>

#include <csignal>
#include <memory>
#include <random>

#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr int64_t rounds = 80;
constexpr int kills = 3;

std::unique_ptr<process> start_cloud(const temp_dir& tmp, int port) {
  return std::make_unique<process>(
    program("fleetd-cloud"),
    std::vector<std::string>{"--node.data-dir=" + tmp.path() + "/cloud",
                             "--ingest.port=" + std::to_string(port),
                             "--console.port=0", "--log.level=debug"},
    tmp.path() + "/cloud.log");
}

int64_t cloud_batches(const temp_dir& tmp) {
  return query_int(tmp.path() + "/cloud/cloud.db",
                   "SELECT count(*) FROM batches WHERE stream = 'metrics'");
}

} // namespace

TEST_CASE("a cloud killed mid-stream loses and duplicates nothing") {
  temp_dir tmp;
  auto seed = std::random_device{}();
  MESSAGE("seed ", seed, ", temp dir ", tmp.path());
  std::mt19937 rng(seed);
  auto cloud = start_cloud(tmp, 0);
  auto port_file = tmp.path() + "/cloud/ingest.port";
  REQUIRE(eventually([&] { return exists(port_file); }, 10s));
  auto port = std::stoi(read_file(port_file));
  auto dev_dir = tmp.path() + "/device";
  auto dev_db = dev_dir + "/fleetd.db";
  process device{program("fleetd"),
                 {"--node.data-dir=" + dev_dir, "--device.id=crash-dev",
                  "--cloud.port=" + std::to_string(port), "--console.port=0",
                  "--cloud.timeout=2s", "--collector.interval=50ms",
                  "--collector.rounds=" + std::to_string(rounds),
                  "--sync.interval=50ms", "--sync.batch-size=100",
                  "--sync.backoff-base=20ms", "--sync.backoff-cap=300ms"},
                 tmp.path() + "/device.log"};
  for (int i = 0; i < kills; ++i) {
    auto target = cloud_batches(tmp) + std::uniform_int_distribution<>(1, 5)(rng);
    REQUIRE(eventually([&] { return cloud_batches(tmp) >= target; }, 30s));
    cloud->signal(SIGKILL);
    REQUIRE(cloud->wait(5s));
    // The device keeps collecting while the cloud is gone.
    auto before = query_int(dev_db, "SELECT count(*) FROM metrics");
    CHECK(eventually(
      [&] {
        return query_int(dev_db, "SELECT count(*) FROM metrics") > before + 50;
      },
      10s));
    cloud = start_cloud(tmp, port);
  }
  REQUIRE(eventually([&] { return exists(dev_dir + "/console.port"); }, 10s));
  auto console = static_cast<uint16_t>(std::stoi(read_file(dev_dir + "/console.port")));
  REQUIRE(device_drained(console, rounds, 60s));
  device.signal(SIGTERM);
  REQUIRE(device.wait(10s) == 0);
  cloud->signal(SIGTERM);
  REQUIRE(cloud->wait(10s) == 0);
  auto committed = check_metrics_exactly_once(
    dev_db, tmp.path() + "/cloud/cloud.db", "crash-dev");
  CHECK(committed > 1000);
}
