// SIGTERM (and SIGINT) stop each program within 5 s with its data flushed.
#include <doctest/doctest.h>

#include <csignal>
#include <memory>

#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

struct pair_of_nodes {
  temp_dir tmp;
  std::unique_ptr<process> cloud;
  std::unique_ptr<process> device;
  std::string dev_dir = tmp.path() + "/device";
  std::string cloud_dir = tmp.path() + "/cloud";

  void start(int device_rounds) {
    cloud = std::make_unique<process>(
      program("fleetd-cloud"),
      std::vector<std::string>{"--node.data-dir=" + cloud_dir,
                               "--ingest.port=0", "--console.port=0"},
      tmp.path() + "/cloud.log");
    REQUIRE(eventually([&] { return exists(cloud_dir + "/ingest.port"); }, 10s));
    auto port = read_file(cloud_dir + "/ingest.port");
    device = std::make_unique<process>(
      program("fleetd"),
      std::vector<std::string>{"--node.data-dir=" + dev_dir,
                               "--device.id=stop-dev",
                               "--cloud.port=" + port.substr(0, port.size() - 1),
                               "--console.port=0", "--collector.interval=20ms",
                               "--collector.rounds=" + std::to_string(device_rounds),
                               "--sync.interval=50ms"},
      tmp.path() + "/device.log");
  }
};

// Stops `p` with `sig`; returns how long it took.
std::chrono::milliseconds stop(process& p, int sig) {
  auto t0 = std::chrono::steady_clock::now();
  p.signal(sig);
  auto st = p.wait(10s);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
    std::chrono::steady_clock::now() - t0);
  REQUIRE(st);
  CHECK(*st == 0);
  return took;
}

} // namespace

TEST_CASE("SIGTERM stops the device and the cloud within 5 s, flushed") {
  pair_of_nodes n;
  n.start(0);
  auto dev_db = n.dev_dir + "/fleetd.db";
  REQUIRE(eventually(
    [&] {
      return query_int(n.cloud_dir + "/cloud.db",
                       "SELECT count(*) FROM batches") >= 3;
    },
    20s));
  auto dev_took = stop(*n.device, SIGTERM);
  MESSAGE("device stopped in ", dev_took.count(), " ms");
  CHECK(dev_took < 5s);
  // Flushed: the WAL was checkpointed into the database and removed.
  CHECK(file_size(dev_db + "-wal") <= 0);
  CHECK(query(dev_db, "PRAGMA integrity_check") == std::vector<std::string>{"ok"});
  CHECK(query_int(dev_db, "SELECT count(*) FROM metrics") > 0);
  CHECK(n.device->wait(0ms));
  auto log = read_file(n.tmp.path() + "/device.log");
  CHECK(log.find("stopped") != std::string::npos);
  auto cloud_took = stop(*n.cloud, SIGTERM);
  MESSAGE("cloud stopped in ", cloud_took.count(), " ms");
  CHECK(cloud_took < 5s);
  auto cloud_db = n.cloud_dir + "/cloud.db";
  CHECK(file_size(cloud_db + "-wal") <= 0);
  CHECK(query(cloud_db, "PRAGMA integrity_check") == std::vector<std::string>{"ok"});
}

TEST_CASE("SIGINT stops a device whose cloud is gone within 5 s") {
  pair_of_nodes n;
  n.start(0);
  REQUIRE(eventually(
    [&] {
      return query_int(n.dev_dir + "/fleetd.db",
                       "SELECT count(*) FROM metrics") > 0;
    },
    20s));
  n.cloud->signal(SIGKILL);
  n.cloud->wait(5s);
  auto took = stop(*n.device, SIGINT);
  CHECK(took < 5s);
  CHECK(file_size(n.dev_dir + "/fleetd.db-wal") <= 0);
}

TEST_CASE("a second node on a data directory in use refuses to start") {
  pair_of_nodes n;
  n.start(0);
  REQUIRE(eventually([&] { return exists(n.dev_dir + "/console.port"); }, 10s));
  struct second {
    std::string prog;
    std::vector<std::string> args;
    std::string dir;
  };
  for (auto& x : {second{"fleetd-cloud",
                         {"--node.data-dir=" + n.cloud_dir, "--console.port=0",
                          "--ingest.port=0"},
                         n.cloud_dir},
                  second{"fleetd",
                         {"--node.data-dir=" + n.dev_dir, "--console.port=0"},
                         n.dev_dir}}) {
    CAPTURE(x.prog);
    auto out = run_to_end(program(x.prog), x.args, 10s);
    CHECK(out.first == 1);
    CHECK(out.second.find("another " + x.prog + " uses " + x.dir)
          != std::string::npos);
  }
  stop(*n.device, SIGTERM);
  stop(*n.cloud, SIGTERM);
}
