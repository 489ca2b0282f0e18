// SIGTERM (and SIGINT) stop each program with its data flushed, every actor
// within its own stop deadline (node.stop-timeout), none waited out.
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

// Stops `p` with `sig`; checks it exited 0 after stopping every actor in
// time: its log says "stopped" and names no actor it gave up waiting for.
// Wall time is only reported: a loaded machine may stretch it.
void stop(process& p, int sig, const std::string& log_file) {
  auto t0 = std::chrono::steady_clock::now();
  p.signal(sig);
  auto st = p.wait(60s);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
    std::chrono::steady_clock::now() - t0);
  MESSAGE(log_file, ": stopped in ", took.count(), " ms");
  REQUIRE(st);
  CHECK(*st == 0);
  auto log = read_file(log_file);
  INFO(log);
  CHECK(log.find("did not stop") == std::string::npos);
  CHECK(log.find(": stopped\n") != std::string::npos);
}

} // namespace

TEST_CASE("SIGTERM stops the device and the cloud in time, flushed") {
  pair_of_nodes n;
  n.start(0);
  auto dev_db = n.dev_dir + "/fleetd.db";
  REQUIRE(eventually(
    [&] {
      return query_int(n.cloud_dir + "/cloud.db",
                       "SELECT count(*) FROM batches") >= 3;
    },
    20s));
  stop(*n.device, SIGTERM, n.tmp.path() + "/device.log");
  // Flushed: the WAL was checkpointed into the database and removed.
  CHECK(file_size(dev_db + "-wal") <= 0);
  CHECK(query(dev_db, "PRAGMA integrity_check") == std::vector<std::string>{"ok"});
  CHECK(query_int(dev_db, "SELECT count(*) FROM metrics") > 0);
  stop(*n.cloud, SIGTERM, n.tmp.path() + "/cloud.log");
  auto cloud_db = n.cloud_dir + "/cloud.db";
  CHECK(file_size(cloud_db + "-wal") <= 0);
  CHECK(query(cloud_db, "PRAGMA integrity_check") == std::vector<std::string>{"ok"});
}

TEST_CASE("SIGINT stops a device whose cloud is gone in time") {
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
  stop(*n.device, SIGINT, n.tmp.path() + "/device.log");
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
  stop(*n.device, SIGTERM, n.tmp.path() + "/device.log");
  stop(*n.cloud, SIGTERM, n.tmp.path() + "/cloud.log");
}
