// fleetctl rollout against a real fleetd-cloud and two real devices: start
// puts the canary's settings on one device, status shows it, halt keeps it,
// rollback gives the device its own settings back; a canary of tiny batches
// halts by itself on bandwidth; a rollout with a short bake reaches both
// devices by itself.
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

struct fleet {
  temp_dir tmp;
  std::string cloud_dir = tmp.path() + "/cloud";
  std::string cloud_db = cloud_dir + "/cloud.db";
  std::unique_ptr<process> cloud;
  std::vector<std::unique_ptr<process>> devices;
  std::vector<uint16_t> consoles;
  uint16_t ingest = 0;
  uint16_t cloud_console = 0;

  void start_cloud() {
    cloud = std::make_unique<process>(
      program("fleetd-cloud"),
      std::vector<std::string>{"--node.data-dir=" + cloud_dir,
                               "--ingest.port=0", "--console.port=0",
                               "--rollout.check-interval=50ms"},
      tmp.path() + "/cloud.log");
    ingest = port_from(cloud_dir + "/ingest.port");
    cloud_console = port_from(cloud_dir + "/console.port");
    REQUIRE(ingest != 0);
    REQUIRE(cloud_console != 0);
  }

  void start_device(const std::string& id) {
    auto dir = tmp.path() + "/" + id;
    devices.push_back(std::make_unique<process>(
      program("fleetd"),
      std::vector<std::string>{
        "--node.data-dir=" + dir, "--device.id=" + id,
        "--cloud.port=" + std::to_string(ingest), "--console.port=0",
        "--tier.pin=1", "--collector.rounds=1", "--load.series=10",
        "--load.interval=50ms", "--sync.interval=200ms",
        "--sync.batch-size=100", "--sync.backoff-base=20ms",
        "--sync.backoff-cap=200ms"},
      tmp.path() + "/" + id + ".log"));
    consoles.push_back(port_from(dir + "/console.port"));
    REQUIRE(consoles.back() != 0);
  }

  std::pair<int, std::string> ctl(std::vector<std::string> args) {
    std::vector<std::string> argv{
      "--node", "127.0.0.1:" + std::to_string(cloud_console)};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_to_end(program("fleetctl"), argv, 90s);
  }

  // The batch size each device runs (0: its own).
  std::vector<int64_t> batch_sizes() {
    std::vector<int64_t> out;
    for (auto port : consoles) {
      auto st = console_status(port);
      out.push_back(st ? counter(*st, "capability", "batch_size") : -1);
    }
    return out;
  }
};

} // namespace

TEST_CASE("fleetctl rollout start, status, halt and rollback on a real "
          "cloud with two devices; a canary that costs bandwidth halts") {
  fleet f;
  f.start_cloud();
  f.start_device("roll-a");
  f.start_device("roll-b");
  REQUIRE(eventually(
    [&] {
      return query_int(f.cloud_db, "SELECT count(DISTINCT device_id) FROM "
                                   "batches")
             == 2;
    },
    20s));
  auto own = f.batch_sizes();
  REQUIRE(own.size() == 2);
  // A bake far longer than the test: the canary stays the only change.
  auto out = f.ctl({"rollout", "start", "--set.batch-size=7", "--canary",
                    "50%", "--steps", "100", "--bake", "1h"});
  INFO(out.second);
  REQUIRE(out.first == 0);
  // Answered once the stage is recorded, while its pushes go on.
  CHECK(out.second.find("pushing") != std::string::npos);
  CHECK(eventually(
    [&] {
      auto s = f.ctl({"rollout", "status"}).second;
      return s.find("baking") != std::string::npos
             && s.find("changed 1 of 2 devices") != std::string::npos;
    },
    20s));
  REQUIRE(eventually(
    [&] {
      auto b = f.batch_sizes();
      return (b[0] == 7) != (b[1] == 7);
    },
    20s));
  auto status = f.ctl({"rollout", "status", "--json"});
  INFO(status.second);
  CHECK(status.first == 0);
  CHECK(status.second.find("\"phase\":\"baking\"") != std::string::npos);
  CHECK(status.second.find("\"changed\":1") != std::string::npos);
  // One at a time per org.
  auto again = f.ctl({"rollout", "start", "--set.batch-size=9"});
  CHECK(again.first == 2);
  CHECK(again.second.find("has a rollout baking") != std::string::npos);
  auto halt = f.ctl({"rollout", "halt"});
  CHECK(halt.first == 0);
  CHECK(halt.second.find("halted (halted by the operator)")
        != std::string::npos);
  auto back = f.ctl({"rollout", "rollback"});
  INFO(back.second);
  CHECK(back.first == 0);
  CHECK(back.second.find("rolled_back") != std::string::npos);
  REQUIRE(eventually([&] { return f.batch_sizes() == own; }, 20s));
  // Bad words are refused before the node is asked.
  auto bad = f.ctl({"rollout", "start", "--set.batch-size=7", "--canary",
                    "0%"});
  CHECK(bad.first == 2);
  CHECK(bad.second.find("--canary") != std::string::npos);
  // Batches of 2 points cost far more bytes per record: after a short bake
  // the rollout halts by itself, its canary alone changed.
  out = f.ctl({"rollout", "start", "--set.batch-size=2", "--canary", "50%",
               "--steps", "100", "--bake", "1s"});
  INFO(out.second);
  REQUIRE(out.first == 0);
  std::string halted;
  REQUIRE(eventually(
    [&] {
      halted = f.ctl({"rollout", "status"}).second;
      return halted.find(": halted") != std::string::npos;
    },
    60s));
  MESSAGE(halted);
  CHECK(halted.find("halted by itself after stage 1 of 2: bandwidth")
        != std::string::npos);
  CHECK(halted.find("changed 1 of 2 devices") != std::string::npos);
  CHECK(f.ctl({"rollout", "rollback"}).first == 0);
  REQUIRE(eventually([&] { return f.batch_sizes() == own; }, 20s));
  // A short bake: the rollout goes to both devices by itself (larger
  // batches; the bandwidth margin wide, this run checks the stages).
  out = f.ctl({"rollout", "start", "--set.batch-size=9", "--canary", "50%",
               "--steps", "100", "--bake", "1s", "--margin.bandwidth=100000"});
  INFO(out.second);
  REQUIRE(out.first == 0);
  REQUIRE(eventually(
    [&] {
      auto s = f.ctl({"rollout", "status", "--json"});
      return s.second.find("\"phase\":\"done\"") != std::string::npos;
    },
    60s));
  REQUIRE(eventually(
    [&] { return f.batch_sizes() == std::vector<int64_t>{9, 9}; }, 20s));
  for (auto& d : f.devices) {
    d->signal(SIGTERM);
    CHECK(d->wait(10s) == 0);
  }
  f.cloud->signal(SIGTERM);
  CHECK(f.cloud->wait(10s) == 0);
}
