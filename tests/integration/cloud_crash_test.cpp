// fleetd-cloud killed with SIGKILL mid-stream: every point arrives exactly
// once, on the embedded store and on PostgreSQL through PgBouncer.
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

std::unique_ptr<process> start_cloud(const temp_dir& tmp,
                                     const cloud_backend& backend, int port) {
  std::vector<std::string> args{"--node.data-dir=" + tmp.path() + "/cloud",
                                "--ingest.port=" + std::to_string(port),
                                "--console.port=0", "--log.level=debug"};
  auto flags = backend.node_flags();
  args.insert(args.end(), flags.begin(), flags.end());
  return std::make_unique<process>(program("fleetd-cloud"), args,
                                   tmp.path() + "/cloud.log");
}

void cloud_killed_mid_stream(const cloud_backend& backend) {
  temp_dir tmp;
  auto seed = std::random_device{}();
  MESSAGE(backend.name(), ": seed ", seed, ", temp dir ", tmp.path());
  std::mt19937 rng(seed);
  auto cloud = start_cloud(tmp, backend, 0);
  auto port = port_from(tmp.path() + "/cloud/ingest.port");
  auto cloud_console = port_from(tmp.path() + "/cloud/console.port");
  REQUIRE_MESSAGE(port != 0, read_file(tmp.path() + "/cloud.log"));
  REQUIRE(cloud_console != 0);
  auto store = backend.store(tmp.path() + "/cloud");
  auto cloud_batches = [&] { return store.batches("crash-dev", "metrics"); };
  auto dev_dir = tmp.path() + "/device";
  auto dev_db = dev_dir + "/fleetd.db";
  std::vector<std::string> args{
    "--node.data-dir=" + dev_dir, "--device.id=crash-dev",
    "--cloud.port=" + std::to_string(port), "--console.port=0",
    "--cloud.timeout=2s", "--collector.interval=50ms",
    "--collector.rounds=" + std::to_string(rounds), "--sync.interval=50ms",
    "--sync.batch-size=100", "--sync.backoff-base=20ms",
    "--sync.backoff-cap=300ms"};
  auto flags = backend.device_flags(tmp.path(), cloud_console);
  args.insert(args.end(), flags.begin(), flags.end());
  process device{program("fleetd"), args, tmp.path() + "/device.log"};
  for (int i = 0; i < kills; ++i) {
    auto target = cloud_batches() + std::uniform_int_distribution<>(1, 5)(rng);
    REQUIRE(eventually([&] { return cloud_batches() >= target; }, 30s));
    cloud->signal(SIGKILL);
    REQUIRE(cloud->wait(5s));
    // The device keeps collecting while the cloud is gone.
    auto before = query_int(dev_db, "SELECT count(*) FROM metrics");
    CHECK(eventually(
      [&] {
        return query_int(dev_db, "SELECT count(*) FROM metrics") > before + 50;
      },
      10s));
    cloud = start_cloud(tmp, backend, port);
  }
  REQUIRE(eventually([&] { return exists(dev_dir + "/console.port"); }, 10s));
  auto console = static_cast<uint16_t>(std::stoi(read_file(dev_dir + "/console.port")));
  REQUIRE(device_drained(console, rounds, 60s));
  device.signal(SIGTERM);
  REQUIRE(device.wait(10s) == 0);
  cloud->signal(SIGTERM);
  auto status = cloud->wait(10s);
  // Its log says how it ended when it did not end well.
  REQUIRE_MESSAGE(status == 0, "exit status "
                                 << (status ? std::to_string(*status)
                                            : std::string("none in 10 s"))
                                 << "; " << read_file(tmp.path() + "/cloud.log"));
  auto committed = check_metrics_exactly_once(dev_db, store, "crash-dev");
  CHECK(committed > 1000);
}

} // namespace

TEST_CASE("a cloud killed mid-stream loses and duplicates nothing") {
  cloud_killed_mid_stream(cloud_backend{});
}

TEST_CASE("postgresql: a cloud killed mid-stream loses and duplicates nothing") {
  on_postgresql("cloud_crash", cloud_killed_mid_stream);
}
