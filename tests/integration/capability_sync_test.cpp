// DeviceCapability end to end: a real fleetd (reading a fake host through
// host.proc/host.sys, with a cgroup memory limit) sends what it detected
// with its first request; a real fleetd-cloud keeps it per device and shows
// it in `fleetctl devices`.
#include <doctest/doctest.h>

#include <csignal>
#include <filesystem>

#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* device_id = "cap-dev";
constexpr int64_t cgroup_ram = 268'435'456;

/// The integer after `"key":` in `json`; -1 if absent.
int64_t json_int(const std::string& json, const std::string& key) {
  auto needle = "\"" + key + "\":";
  auto i = json.find(needle);
  if (i == std::string::npos)
    return -1;
  return std::stoll(json.substr(i + needle.size()));
}

} // namespace

TEST_CASE("the cloud holds the capability the device detected, and fleetctl "
          "devices shows it") {
  temp_dir tmp;
  auto proc = tmp.path() + "/host/proc";
  auto sys = tmp.path() + "/host/sys";
  std::filesystem::create_directories(proc + "/self");
  std::filesystem::create_directories(sys + "/fs/cgroup");
  write_file(proc + "/meminfo", "MemTotal: 8000000 kB\nMemFree: 2000000 kB\n"
                                "MemAvailable: 4000000 kB\n");
  write_file(proc + "/stat", "cpu  4 0 4 8 0 0 0 0 0 0\n"
                             "cpu0 2 0 2 4 0 0 0 0 0 0\n"
                             "cpu1 2 0 2 4 0 0 0 0 0 0\n"
                             "cpu2 2 0 2 4 0 0 0 0 0 0\n");
  write_file(proc + "/self/cgroup", "0::/\n");
  write_file(sys + "/fs/cgroup/memory.max", std::to_string(cgroup_ram) + "\n");
  write_file(sys + "/fs/cgroup/cpu.max", "200000 100000\n");
  process cloud{program("fleetd-cloud"),
                {"--node.data-dir=" + tmp.path() + "/cloud", "--ingest.port=0",
                 "--console.port=0"},
                tmp.path() + "/cloud.log"};
  auto port = port_from(tmp.path() + "/cloud/ingest.port");
  REQUIRE(port != 0);
  auto cloud_console = port_from(tmp.path() + "/cloud/console.port");
  REQUIRE(cloud_console != 0);
  auto dev_dir = tmp.path() + "/device";
  process device{program("fleetd"),
                 {"--node.data-dir=" + dev_dir,
                  std::string("--device.id=") + device_id,
                  "--cloud.port=" + std::to_string(port), "--console.port=0",
                  "--host.proc=" + proc, "--host.sys=" + sys,
                  "--collector.interval=50ms", "--collector.rounds=3",
                  "--sync.interval=50ms", "--sync.batch-size=10",
                  "--sync.backoff-base=20ms", "--sync.backoff-cap=300ms"},
                 tmp.path() + "/device.log"};
  REQUIRE(port_from(dev_dir + "/console.port") != 0);
  auto cloud_db = tmp.path() + "/cloud/cloud.db";
  auto row_sql = std::string("SELECT tier || ' ' || total_ram || ' ' || "
                             "cpu_cores || ' ' || has_sqlite || ' ' || "
                             "has_network FROM device_capability WHERE "
                             "device_id = '")
                 + device_id + "'";
  std::vector<std::string> rows;
  bool stored = eventually(
    [&] {
      if (!exists(cloud_db))
        return false;
      rows = query(cloud_db, row_sql);
      return !rows.empty();
    },
    60s);
  REQUIRE_MESSAGE(stored, "device log: " << read_file(tmp.path()
                                                      + "/device.log"));
  // What the running device detected, from its own console.
  auto [rc, caps] = run_to_end(program("fleetd"),
                               {"debug", "capabilities", "--json",
                                "--node.data-dir=" + dev_dir},
                               60s);
  REQUIRE(rc == 0);
  INFO(caps);
  auto tier = json_int(caps.substr(caps.find("\"settings\"")), "tier");
  CHECK(tier == 2);
  CHECK(json_int(caps, "total_ram") == cgroup_ram);
  CHECK(json_int(caps, "cpu_cores") == 2);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0] == std::to_string(tier) + " " + std::to_string(cgroup_ram)
                     + " 2 1 1");
  auto [ctl_rc, out] = run_to_end(program("fleetctl"),
                                  {"--node",
                                   "127.0.0.1:" + std::to_string(cloud_console),
                                   "devices", "--json"},
                                  30s);
  INFO(out);
  CHECK(ctl_rc == 0);
  CHECK(out.find("\"capability\":{\"tier\":2,\"total_ram\":"
                 + std::to_string(cgroup_ram))
        != std::string::npos);
  device.signal(SIGTERM);
  CHECK(device.wait(10s) == 0);
  cloud.signal(SIGTERM);
  CHECK(cloud.wait(10s) == 0);
}
