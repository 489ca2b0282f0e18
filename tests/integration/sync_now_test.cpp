// fleetd sync now on a running device whose sync interval is an hour: every
// stream's pending data reaches the cloud at once and the command reports
// what was acked; with the cloud gone it times out (exit 1) with the
// figures; without a running node it says so (exit 1). fleetd debug ping
// works beside the running node.
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

bool has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

} // namespace

TEST_CASE("fleetd sync now sends every stream at once and waits for the "
          "acks") {
  temp_dir tmp;
  auto cloud_dir = tmp.path() + "/cloud";
  auto dev_dir = tmp.path() + "/device";
  auto cloud_db = cloud_dir + "/cloud.db";
  auto cloud = std::make_unique<process>(
    program("fleetd-cloud"),
    std::vector<std::string>{"--node.data-dir=" + cloud_dir, "--ingest.port=0",
                             "--console.port=0"},
    tmp.path() + "/cloud.log");
  auto ingest = port_from(cloud_dir + "/ingest.port");
  REQUIRE(ingest != 0);
  std::vector<std::string> opts{"--node.data-dir=" + dev_dir,
                                "--device.id=now-dev",
                                "--cloud.port=" + std::to_string(ingest),
                                "--console.port=0", "--tier.pin=1",
                                "--sync.interval=1h", "--load.series=5",
                                "--load.interval=100ms",
                                "--sync.backoff-base=20ms",
                                "--sync.backoff-cap=200ms"};
  auto fleetd = [&](std::vector<std::string> args) {
    args.insert(args.end(), opts.begin(), opts.end());
    return run_to_end(program("fleetd"), args, 90s);
  };
  // No node yet: nothing to ask.
  auto none = fleetd({"sync", "now"});
  CHECK(none.first == 1);
  CHECK(has(none.second, "no node runs on"));

  process device{program("fleetd"), opts, tmp.path() + "/device.log"};
  auto console = port_from(dev_dir + "/console.port");
  REQUIRE(console != 0);
  auto metrics_batches = [&] {
    return query_int(cloud_db, "SELECT count(*) FROM batches WHERE stream = "
                               "'metrics'");
  };
  // An hour between rounds: the first round ran at start, then data waits.
  REQUIRE(eventually(
    [&] {
      auto st = console_status(console);
      return st && counter(*st, "load_generator", "rounds") >= 10;
    },
    20s));
  auto before = metrics_batches();
  auto r = fleetd({"sync", "now"});
  INFO(r.second);
  CHECK(r.first == 0);
  CHECK(has(r.second, "sync now: every stream acked in "));
  CHECK(has(r.second, "sync_metrics: 1 batch(es) acked"));
  CHECK(metrics_batches() == before + 1);
  auto json = fleetd({"sync", "now", "--json"});
  CHECK(json.first == 0);
  CHECK(has(json.second, "\"acked\":true"));
  CHECK(has(json.second, "\"stream\":\"sync_metrics\""));

  // debug ping beside a running node on the same data directory (plain
  // HTTP, an anonymous device: no TLS step, the key step passes keyless).
  auto ping = fleetd({"debug", "ping"});
  INFO(ping.second);
  CHECK(ping.first == 0);
  CHECK(has(ping.second, "tls: skipped: cloud.insecure"));
  CHECK(has(ping.second, "auth: ok: the cloud takes this device without a "
                         "key"));
  CHECK(has(ping.second, "verdict: healthy"));

  // The cloud gone: the acks never come.
  cloud->signal(SIGTERM);
  REQUIRE(cloud->wait(20s) == 0);
  auto late = fleetd({"sync", "now", "--sync.now-timeout=1500ms"});
  INFO(late.second);
  CHECK(late.first == 1);
  CHECK(has(late.second, "sync now: timed out after "));
  CHECK(has(late.second, "not everything acked"));
  // --json: the report as JSON past the timeout too.
  late = fleetd({"sync", "now", "--json", "--sync.now-timeout=500ms"});
  CHECK(late.first == 1);
  CHECK(has(late.second, "{\"acked\":false,"));
  device.signal(SIGTERM);
  CHECK(device.wait(20s) == 0);
}
