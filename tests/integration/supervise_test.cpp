// A device syncs to a cloud node while the cloud's essential actors are
// killed mid-stream through the test hook (fleetctl debug kill, node.test-hooks):
// each is restarted, GET /healthz answers 503 naming it while it is down and
// while it restarts too often, 200 after; and, once drained, the cloud holds
// every point the device committed exactly once, in order, batches 1..N.
#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <memory>

#include "messages/error.hpp"
#include "runtime/http_client.hpp"
#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr int64_t rounds = 400; // 20 s of samples at 50 ms
constexpr int64_t max_restarts = 3;
constexpr const char* device_id = "heal-dev";

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

struct cloud_node {
  temp_dir& tmp;
  std::unique_ptr<process> proc;
  uint16_t ingest = 0;
  uint16_t console = 0;
  std::unique_ptr<http_client> http;

  explicit cloud_node(temp_dir& dir) : tmp(dir) {
    proc = std::make_unique<process>(
      program("fleetd-cloud"),
      std::vector<std::string>{
        "--node.data-dir=" + tmp.path() + "/cloud", "--ingest.port=0",
        "--console.port=0", "--node.test-hooks=true",
        // A second of down time per death, so a poll sees it; the doubling
        // starts over after a second up, so each kill gets the same.
        "--supervisor.backoff-initial=1s", "--supervisor.backoff-max=2s",
        "--supervisor.stable-after=1s",
        "--supervisor.max-restarts=" + std::to_string(max_restarts),
        "--supervisor.window=12s"},
      tmp.path() + "/cloud.log");
    ingest = port_from(tmp.path() + "/cloud/ingest.port");
    console = port_from(tmp.path() + "/cloud/console.port");
    http = std::make_unique<http_client>("127.0.0.1", ingest, 5s, 65536);
  }

  /// GET /healthz: status and the error header (empty on 200).
  std::pair<unsigned, std::string> health() {
    auto r = http->get("/healthz");
    if (!r) {
      http->close();
      return {0, render(r.error())};
    }
    return {r->status, r->error};
  }

  int64_t batches() {
    return query_int(tmp.path() + "/cloud/cloud.db",
                     "SELECT count(*) FROM batches WHERE stream = 'metrics'");
  }

  int64_t supervisor_counter(const std::string& name) {
    auto st = console_status(console);
    return st ? counter(*st, "supervisor", name) : -1;
  }

  void kill(const std::string& actor) {
    auto [rc, out] = run_to_end(program("fleetctl"),
                                {"--node=127.0.0.1:" + std::to_string(console),
                                 "debug", "kill", actor},
                                20s);
    REQUIRE_MESSAGE(rc == 0, out);
    CHECK(out == "killed " + actor + "\n");
  }
};

/// Polls /healthz until `pred` holds for an answer; returns that answer and
/// the seconds it took; status 0 when it never did within `limit`.
template <class Pred>
std::pair<std::pair<unsigned, std::string>, double>
health_until(cloud_node& cloud, Pred pred, std::chrono::milliseconds limit) {
  auto t0 = clock_type::now();
  std::pair<unsigned, std::string> last{0, ""};
  bool ok = eventually(
    [&] {
      last = cloud.health();
      return pred(last);
    },
    limit);
  return {ok ? last : std::pair<unsigned, std::string>{0, last.second},
          seconds_since(t0)};
}

/// Kills `actor` once the device has synced a few more batches; checks that
/// /healthz says 503 naming it, then 200 once it is back; returns the
/// seconds /healthz said 503.
double kill_and_heal(cloud_node& cloud, const std::string& actor) {
  auto target = cloud.batches() + 3;
  REQUIRE(eventually([&] { return cloud.batches() >= target; }, 30s));
  auto restarts = cloud.supervisor_counter(actor + ".restarts");
  cloud.kill(actor);
  auto [down, t_down] = health_until(
    cloud, [](auto& h) { return h.first == 503; }, 5s);
  CHECK(down.first == 503);
  // Down, or (asked before the supervisor heard of the death) not answering.
  CHECK(down.second.find("unhealthy: unreachable: " + actor + " ")
        != std::string::npos);
  MESSAGE(actor, " killed: /healthz ", down.first, " '", down.second,
          "' after ", t_down, " s");
  auto [up, t_up] = health_until(
    cloud, [](auto& h) { return h.first == 200; }, 15s);
  CHECK(up.first == 200);
  CHECK(cloud.supervisor_counter(actor + ".restarts") == restarts + 1);
  MESSAGE(actor, " restarted: /healthz 200 after ", t_up, " s more");
  return t_up;
}

/// A cloud node with the default supervisor and no test hooks.
std::unique_ptr<process> start_plain_cloud(const temp_dir& tmp) {
  return std::make_unique<process>(
    program("fleetd-cloud"),
    std::vector<std::string>{"--node.data-dir=" + tmp.path() + "/cloud",
                             "--ingest.port=0", "--console.port=0"},
    tmp.path() + "/cloud.log");
}

/// A device syncing `rounds` rounds of samples to the cloud on `ingest`.
std::unique_ptr<process> start_device(const temp_dir& tmp, uint16_t ingest,
                                      const std::string& id, int64_t n,
                                      std::vector<std::string> extra = {}) {
  std::vector<std::string> args{
    "--node.data-dir=" + tmp.path() + "/device", "--device.id=" + id,
    "--cloud.port=" + std::to_string(ingest), "--console.port=0",
    "--cloud.timeout=2s", "--collector.interval=50ms",
    "--collector.rounds=" + std::to_string(n), "--sync.interval=50ms",
    "--sync.batch-size=20", "--sync.backoff-base=20ms",
    "--sync.backoff-cap=300ms"};
  args.insert(args.end(), extra.begin(), extra.end());
  return std::make_unique<process>(program("fleetd"), args,
                                   tmp.path() + "/device.log");
}

/// Kills cloud_store past supervisor.max-restarts, each time once it is
/// back: /healthz must say "restarting too often" while it runs again, and
/// 200 once the window has moved past the deaths.
void flap(cloud_node& cloud) {
  for (int64_t i = 0; i <= max_restarts; ++i) {
    auto restarts = cloud.supervisor_counter("cloud_store.restarts");
    cloud.kill("cloud_store");
    REQUIRE(eventually(
      [&] {
        return cloud.supervisor_counter("cloud_store.restarts") > restarts;
      },
      15s));
  }
  auto st = console_status(cloud.console);
  REQUIRE(st);
  CHECK(state_of(*st, "cloud_store") == "ok"); // running again ...
  auto flapping = cloud.health();
  CHECK(flapping.first == 503); // ... yet restarting too often
  CHECK(flapping.second.find("cloud_store is restarting too often")
        != std::string::npos);
  MESSAGE("after ", max_restarts + 1, " more kills: /healthz ", flapping.first,
          " '", flapping.second, "'");
  auto [calm, t_calm] = health_until(
    cloud, [](auto& h) { return h.first == 200; }, 20s);
  CHECK(calm.first == 200);
  MESSAGE("healthy again ", t_calm, " s later (supervisor.window 12 s)");
}

/// Kills a device's `actor` once sync has moved on; its status must say
/// unhealthy naming it, then healthy with one restart.
void kill_on_device(uint16_t console, const std::string& actor) {
  auto synced = [&] {
    auto st = console_status(console);
    return st ? counter(*st, "sync_metrics", "batches_acked") : -1;
  };
  auto target = synced() + 3;
  REQUIRE(eventually([&] { return synced() >= target; }, 30s));
  auto [rc, out] = run_to_end(program("fleetctl"),
                              {"--node=127.0.0.1:" + std::to_string(console),
                               "debug", "kill", actor},
                              20s);
  REQUIRE_MESSAGE(rc == 0, out);
  std::string seen;
  CHECK(eventually(
    [&] {
      auto st = console_status(console);
      seen = st ? state_of(*st, "supervisor") : "";
      return seen.find("unhealthy: " + actor + " is down") != std::string::npos;
    },
    5s));
  MESSAGE(actor, " killed: ", seen);
  CHECK(eventually(
    [&] {
      auto st = console_status(console);
      return st && state_of(*st, "supervisor") == "healthy"
             && counter(*st, "supervisor", actor + ".restarts") == 1;
    },
    15s));
}

/// SIGTERM, and the exit status 0 within 30 s.
void stop(process& p, const char* what) {
  p.signal(SIGTERM);
  auto status = p.wait(30s);
  REQUIRE_MESSAGE(status, what, " still runs 30 s after SIGTERM");
  CHECK_MESSAGE(*status == 0, what, " exited with ", *status);
}

} // namespace

TEST_CASE("essential cloud actors killed mid-stream are restarted, /healthz "
          "tells, and no acknowledged point is lost or doubled") {
  temp_dir tmp;
  MESSAGE("temp dir ", tmp.path());
  cloud_node cloud{tmp};
  REQUIRE(cloud.ingest != 0);
  REQUIRE(cloud.console != 0);
  CHECK(cloud.health().first == 200);
  auto device = start_device(tmp, cloud.ingest, device_id, rounds);
  // Each essential actor once: down, then healthy again.
  kill_and_heal(cloud, "cloud_store");
  kill_and_heal(cloud, "tenancy");
  kill_and_heal(cloud, "ingest");
  // Deaths past supervisor.max-restarts within the window: unhealthy even
  // while the store runs again, until the window has moved past them.
  flap(cloud);
  CHECK(cloud.supervisor_counter("cloud_store.deaths") == max_restarts + 2);
  CHECK(cloud.supervisor_counter("ingest.deaths") == 1);
  auto dev_console = port_from(tmp.path() + "/device/console.port");
  REQUIRE(dev_console != 0);
  REQUIRE(device_drained(dev_console, rounds, 90s));
  // The kills hit the stream: the device met failures and went on.
  auto dev = console_status(dev_console);
  REQUIRE(dev);
  MESSAGE("device: send_failures ", counter(*dev, "sync_metrics", "send_failures"),
          ", batches_acked ", counter(*dev, "sync_metrics", "batches_acked"));
  stop(*device, "fleetd");
  stop(*cloud.proc, "fleetd-cloud");
  CHECK(check_metrics_exactly_once(tmp.path() + "/device/fleetd.db",
                                   tmp.path() + "/cloud/cloud.db", device_id)
        > 1000);
}

TEST_CASE("without node.test-hooks nothing can be killed from the console") {
  temp_dir tmp;
  auto cloud = start_plain_cloud(tmp);
  auto console = port_from(tmp.path() + "/cloud/console.port");
  REQUIRE(console != 0);
  auto node = "--node=127.0.0.1:" + std::to_string(console);
  auto [rc, out] = run_to_end(program("fleetctl"),
                              {node, "debug", "kill", "cloud_store"}, 20s);
  CHECK(rc == 1);
  CHECK(out == "fleetctl: debug failed: bad_config: this node has no 'kill "
               "cloud_store' diagnostics\n");
  auto [src, status] = run_to_end(program("fleetctl"), {node, "status"}, 20s);
  CHECK(src == 0);
  CHECK(status.find("\nhealth: healthy\n") != std::string::npos);
  CHECK(status.find("cloud_store.deaths=0 cloud_store.restarts=0")
        != std::string::npos);
  CHECK(read_file(tmp.path() + "/cloud.log").find("test-hooks")
        == std::string::npos);
  stop(*cloud, "fleetd-cloud");
}

TEST_CASE("a device's storage and sync actors killed mid-stream are "
          "restarted, its status tells, and nothing committed is lost") {
  temp_dir tmp;
  auto cloud = start_plain_cloud(tmp);
  auto ingest = port_from(tmp.path() + "/cloud/ingest.port");
  REQUIRE(ingest != 0);
  auto device = start_device(tmp, ingest, "heal-edge", rounds / 2,
                             {"--node.test-hooks=true",
                              "--supervisor.backoff-initial=1s",
                              "--supervisor.stable-after=1s"});
  auto console = port_from(tmp.path() + "/device/console.port");
  REQUIRE(console != 0);
  kill_on_device(console, "storage");
  kill_on_device(console, "sync_metrics");
  REQUIRE(device_drained(console, rounds / 2, 90s));
  stop(*device, "fleetd");
  stop(*cloud, "fleetd-cloud");
  CHECK(check_metrics_exactly_once(tmp.path() + "/device/fleetd.db",
                                   tmp.path() + "/cloud/cloud.db", "heal-edge")
        > 500);
}
