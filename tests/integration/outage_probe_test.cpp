// Resume after an outage: while the cloud is gone (the fault proxy drops
// every connection) the device's batch retries back off towards
// sync.backoff-cap, but cheap health probes (GET /healthz, no batch) every
// sync.probe-interval find the cloud's return, so data flows again within
// one probe interval of it, nothing lost or doubled.
#include <doctest/doctest.h>

#include <csignal>
#include <memory>

#include "fault_proxy.hpp"
#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* device_id = "probe-dev";
constexpr int64_t rounds = 160;
constexpr int64_t series = 10;
constexpr int64_t lines_per_round = 2;
constexpr int64_t event_every = 10;
constexpr auto probe_interval = 300ms;
// The probe itself, a batch through permit, ingest and the cloud's commit,
// and the test's polling of the cloud's file, on a shared 2-core machine.
constexpr auto exchange_slack = 700ms;
// Failures before the cloud returns: the batch backoff's ceiling is then
// 50 ms * 2^6 = 3.2 s, ten times the probe interval.
constexpr int64_t failures_before_return = 7;
constexpr auto bound = probe_interval + exchange_slack;

struct rig {
  temp_dir tmp;
  std::unique_ptr<process> cloud;
  std::unique_ptr<fault_proxy> proxy;
  std::unique_ptr<process> device;
  std::string dev_dir = tmp.path() + "/device";
  std::string dev_db = dev_dir + "/fleetd.db";
  cloud_store cloud_db = cloud_backend{}.store(tmp.path() + "/cloud");
  uint16_t console = 0;

  rig() {
    cloud = std::make_unique<process>(
      program("fleetd-cloud"),
      std::vector<std::string>{"--node.data-dir=" + tmp.path() + "/cloud",
                               "--ingest.port=0", "--console.port=0"},
      tmp.path() + "/cloud.log");
    auto port = port_from(tmp.path() + "/cloud/ingest.port");
    REQUIRE_MESSAGE(port != 0, read_file(tmp.path() + "/cloud.log"));
    proxy = std::make_unique<fault_proxy>(port);
    device = std::make_unique<process>(
      program("fleetd"),
      std::vector<std::string>{
        "--node.data-dir=" + dev_dir, std::string("--device.id=") + device_id,
        "--cloud.port=" + std::to_string(proxy->port()), "--console.port=0",
        "--cloud.timeout=1s", "--tier.pin=1", "--collector.rounds=1",
        "--load.series=" + std::to_string(series), "--load.interval=50ms",
        "--load.rounds=" + std::to_string(rounds),
        "--load.log-lines=" + std::to_string(lines_per_round),
        "--load.event-every=" + std::to_string(event_every),
        "--sync.interval=50ms", "--sync.batch-size=100",
        "--sync.backoff-base=50ms", "--sync.backoff-cap=30s",
        "--sync.probe-interval=300ms", "--log.level=debug"},
      tmp.path() + "/device.log");
    console = port_from(dev_dir + "/console.port");
    REQUIRE_MESSAGE(console != 0, read_file(tmp.path() + "/device.log"));
  }

  int64_t cloud_batches() {
    return cloud_db.batches(device_id, "metrics")
           + cloud_db.batches(device_id, "logs")
           + cloud_db.batches(device_id, "events");
  }

  node_status status() {
    auto st = console_status(console);
    REQUIRE(st);
    return *st;
  }
};

int64_t batches_sent(const node_status& st) {
  return counter(st, "sync_metrics", "batches_sent")
         + counter(st, "sync_logs", "batches_sent")
         + counter(st, "sync_events", "batches_sent");
}

int64_t bytes_sent(const node_status& st) {
  return counter(st, "sync_metrics", "bytes_sent")
         + counter(st, "sync_logs", "bytes_sent")
         + counter(st, "sync_events", "bytes_sent");
}

} // namespace

TEST_CASE("after an outage longer than several backoff doublings, data "
          "resumes within sync.probe-interval of the cloud's return") {
  rig r;
  REQUIRE(eventually([&] { return r.cloud_batches() >= 1; }, 10s));
  r.proxy->drop();
  REQUIRE(eventually([&] { return r.proxy->stats().open == 0; }, 10s));
  // The device first: every connection the proxy counts from here on was
  // started (and counted by the device) after the status read.
  auto d0 = r.status();
  auto p0 = r.proxy->stats();
  // The outage lasts until the batch backoff has doubled several times, the
  // device has probed, and the next batch retry is due well after the bound
  // (without probes the test fails): states the device reports, no guess.
  REQUIRE(eventually(
    [&] {
      auto st = r.status();
      return counter(st, "backoff", "consecutive_failures")
               >= failures_before_return
             && counter(st, "backoff", "health_probes") >= 3
             && counter(st, "backoff", "next_attempt_in_ms")
                  > 2 * bound.count();
    },
    30s));
  // The proxy first: every connection it counted was started (and counted
  // by the device) before the status read.
  auto p1 = r.proxy->stats();
  auto d1 = r.status();
  auto before = r.cloud_batches();
  auto back = std::chrono::steady_clock::now();
  r.proxy->pass();
  REQUIRE(eventually([&] { return r.cloud_batches() > before; }, 30s));
  auto resume = std::chrono::duration_cast<std::chrono::milliseconds>(
    std::chrono::steady_clock::now() - back);
  auto d2 = r.status();
  auto probes = counter(d1, "cloud_link", "health_probes")
                - counter(d0, "cloud_link", "health_probes");
  auto attempts = batches_sent(d1) - batches_sent(d0);
  auto requests = counter(d1, "cloud_link", "requests")
                  - counter(d0, "cloud_link", "requests");
  auto failures = counter(d1, "backoff", "consecutive_failures");
  MESSAGE("outage: ", failures, " consecutive failures (next batch retry "
          "within ", counter(d1, "backoff", "next_attempt_in_ms"), " ms), ",
          probes, " health probes, ", attempts, " batch attempts in ",
          requests, " requests (",
          bytes_sent(d1) - bytes_sent(d0), " body bytes), ",
          p1.connections - p0.connections, " connections, ",
          p1.bytes_up - p0.bytes_up, " bytes forwarded");
  MESSAGE("resume: first accepted batch ", resume.count(),
          " ms after the cloud's return (bound ",
          bound.count(), " ms)");
  CHECK(resume <= bound);
  // A probe, not a batch retry, found the cloud again.
  CHECK(counter(d2, "backoff", "health_probes_ok") >= 1);
  CHECK(counter(d2, "backoff", "went_online") >= 1);
  // Cheap while offline: batches go only on the backoff's schedule (per
  // counted failure the probe and the streams due with it, which share its
  // request when they reach the link together, plus one in flight per
  // stream at the drop), every other connection is a probe, and nothing
  // got through the proxy.
  CHECK(probes >= 3);
  CHECK(attempts <= 3 * (failures + 1));
  CHECK(requests <= attempts);
  CHECK(p1.connections - p0.connections <= probes + requests + 3);
  CHECK(p1.bytes_up == p0.bytes_up);

  REQUIRE(device_synced_all(r.console, r.dev_db, rounds, 30s));
  r.device->signal(SIGTERM);
  REQUIRE(r.device->wait(10s) == 0);
  r.cloud->signal(SIGTERM);
  REQUIRE(r.cloud->wait(10s) == 0);
  r.proxy->stop();
  auto n = check_records_exactly_once(r.dev_db, r.cloud_db, device_id);
  CHECK(n.points >= static_cast<size_t>(rounds * series));
  CHECK(static_cast<int64_t>(n.log_lines) == rounds * lines_per_round);
}
