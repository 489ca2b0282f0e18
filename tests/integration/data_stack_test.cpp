// The data stack end to end on real processes: a fleetd syncs to a
// fleetd-cloud whose journal fans out to a real VictoriaMetrics, a real
// ClickHouse and the Loki stand-in; once every sink's lag is 0, each
// backend holds exactly the device's own records (read from its file), once.
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "data_stack_support.hpp"
#include "helpers.hpp"
#include "skip.hpp"
#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr int64_t rounds = 6;
constexpr int64_t lines_per_round = 3;

std::vector<std::string> device_args(const std::string& dev_dir,
                                     uint16_t ingest,
                                     const std::string& enroll) {
  return {"--node.data-dir=" + dev_dir, "--device.id=dev",
          "--cloud.port=" + std::to_string(ingest),
          "--cloud.enroll-token=" + enroll, "--console.port=0",
          "--collector.rounds=1", "--load.series=3", "--load.interval=150ms",
          "--load.rounds=" + std::to_string(rounds),
          "--load.log-lines=" + std::to_string(lines_per_round),
          "--load.event-every=2", "--sync.interval=50ms",
          "--sync.backoff-base=20ms", "--sync.backoff-cap=300ms"};
}

} // namespace

TEST_CASE("a device's metrics and logs reach VictoriaMetrics, ClickHouse "
          "and Loki exactly once, rollups exact") {
  std::string why;
  auto vm = start_vm(why);
  if (!vm)
    return skip(why);
  auto* ch = shared_ch_server(why);
  if (!ch)
    return skip(why);
  loki_standin loki;
  auto loki_port = loki.start();
  REQUIRE(loki_port);
  temp_dir tmp;
  auto cloud_dir = tmp.path() + "/cloud";
  process cloud{program("fleetd-cloud"),
                {"--node.data-dir=" + cloud_dir, "--ingest.port=0",
                 "--console.port=0", "--sinks.victoria.url=" + vm->url(),
                 "--sinks.clickhouse.url=" + ch->url(),
                 "--sinks.loki.url=http://127.0.0.1:"
                   + std::to_string(*loki_port)},
                tmp.path() + "/cloud.log"};
  auto ingest = port_from(cloud_dir + "/ingest.port");
  auto console = port_from(cloud_dir + "/console.port");
  REQUIRE_MESSAGE(ingest != 0, read_file(tmp.path() + "/cloud.log"));
  REQUIRE(console != 0);
  REQUIRE(fleetctl(tmp.path(), console, {"org", "create", "acme"}).first == 0);
  auto enroll = fleetctl_secret(tmp.path(), console,
                                {"enroll", "create", "--org", "acme"});
  auto dev_dir = tmp.path() + "/device";
  auto dev_db = dev_dir + "/fleetd.db";
  process device{program("fleetd"), device_args(dev_dir, ingest, enroll),
                 tmp.path() + "/device.log"};
  auto dev_console = port_from(dev_dir + "/console.port");
  REQUIRE(dev_console != 0);
  REQUIRE_MESSAGE(device_synced_all(dev_console, dev_db, rounds, 30s),
                  read_file(tmp.path() + "/device.log"));
  REQUIRE_MESSAGE(eventually([&] { return sinks_drained(console); }, 30s),
                  read_file(tmp.path() + "/cloud.log"));
  auto want = device_samples(dev_db);
  REQUIRE(total(want) > 0);
  stack_device who{"acme", "dev"};
  check_vm(*vm, who, want);
  auto hours = check_ch(*ch, who, want);
  auto lines = check_loki(loki, who, dev_db);
  CHECK(lines == static_cast<size_t>(rounds * lines_per_round));
  MESSAGE("checked ", total(want), " samples in ", want.size(),
          " series (VictoriaMetrics, ClickHouse raw), ", hours,
          " hourly rollups, ", lines, " log lines (Loki)");
}
