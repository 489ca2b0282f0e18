// A device on the work-sharing scheduler with one worker thread (what a
// small tier runs) syncs every metric, log line and event to a real
// fleetd-cloud exactly once, and says at start which scheduler it runs.
#include <doctest/doctest.h>

#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* device_id = "sched-dev";
constexpr int64_t rounds = 60;

// Runs cloud and device (with `scheduler` flags) to the end of the load;
// checks the cloud's store against the device's; returns the device log.
std::string sync_with(const std::vector<std::string>& scheduler) {
  temp_dir tmp;
  auto cloud_dir = tmp.path() + "/cloud";
  auto dev_dir = tmp.path() + "/device";
  process cloud(program("fleetd-cloud"),
                {"--node.data-dir=" + cloud_dir, "--ingest.port=0",
                 "--console.port=0"},
                tmp.path() + "/cloud.log");
  auto ingest = port_from(cloud_dir + "/ingest.port");
  REQUIRE_MESSAGE(ingest != 0, read_file(tmp.path() + "/cloud.log"));
  std::vector<std::string> args{
    "--node.data-dir=" + dev_dir, std::string("--device.id=") + device_id,
    "--cloud.port=" + std::to_string(ingest), "--console.port=0",
    "--tier.pin=1", "--collector.rounds=1", "--load.series=10",
    "--load.interval=50ms", "--load.rounds=" + std::to_string(rounds),
    "--load.log-lines=2", "--load.event-every=10", "--sync.interval=100ms",
    "--sync.batch-size=100", "--sync.backoff-base=20ms",
    "--sync.backoff-cap=300ms"};
  args.insert(args.end(), scheduler.begin(), scheduler.end());
  process device(program("fleetd"), args, tmp.path() + "/device.log");
  auto console = port_from(dev_dir + "/console.port");
  REQUIRE_MESSAGE(console != 0, read_file(tmp.path() + "/device.log"));
  auto dev_db = dev_dir + "/fleetd.db";
  REQUIRE_MESSAGE(device_synced_all(console, dev_db, rounds, 60s),
                  read_file(tmp.path() + "/device.log"));
  device.signal(SIGTERM);
  REQUIRE(device.wait(20s) == 0);
  cloud.signal(SIGTERM);
  REQUIRE(cloud.wait(20s) == 0);
  auto n = check_records_exactly_once(dev_db, cloud_store(cloud_dir + "/cloud.db"),
                                      device_id);
  CHECK(n.points >= static_cast<size_t>(rounds * 10));
  CHECK(n.log_lines == static_cast<size_t>(rounds * 2));
  CHECK(n.events >= static_cast<size_t>(rounds / 10));
  auto cloud_log = read_file(tmp.path() + "/cloud.log");
  // The cloud keeps work-stealing on 2 threads unless told otherwise.
  CHECK_MESSAGE(cloud_log.find("scheduler: stealing, 2 threads")
                  != std::string::npos,
                cloud_log);
  return read_file(tmp.path() + "/device.log");
}

} // namespace

TEST_CASE("a device on work-sharing with one thread syncs exactly once") {
  auto log = sync_with({"--scheduler.policy=sharing", "--scheduler.threads=1"});
  CHECK_MESSAGE(log.find("scheduler: sharing, 1 thread") != std::string::npos,
                log);
}

TEST_CASE("a device on work-stealing with one thread and a long relaxed "
          "sleep syncs exactly once") {
  // The stealing knobs reach CAF, and the device works with them.
  auto log = sync_with({"--scheduler.policy=stealing", "--scheduler.threads=1",
                        "--scheduler.relaxed-sleep=5s"});
  CHECK_MESSAGE(log.find("scheduler: stealing, 1 thread, relaxed sleep 5s")
                  != std::string::npos,
                log);
}
