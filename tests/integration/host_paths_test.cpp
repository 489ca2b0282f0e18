// host.proc and host.sys: a containerised fleetd reads the host's procfs and
// sysfs (with its cgroup limits) where they are mounted, for the tier and
// for the system collector; the start log names every reason for the tier;
// a real fleetd-cloud keeps the DeviceCapability the device detected.
#include <doctest/doctest.h>

#include <csignal>
#include <cstring>
#include <filesystem>

#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr int64_t host_ram = 8'000'000LL * 1024;
constexpr int64_t cgroup_ram = 268'435'456;

/// A fake host: 8 GB of RAM, 2 CPUs, a cgroup v2 limit of 256 MiB.
struct fake_host {
  temp_dir tmp;
  std::string proc = tmp.path() + "/host/proc";
  std::string sys = tmp.path() + "/host/sys";

  fake_host() {
    std::filesystem::create_directories(proc + "/self");
    std::filesystem::create_directories(sys + "/fs/cgroup");
    write_file(proc + "/meminfo",
               "MemTotal: 8000000 kB\nMemFree: 2000000 kB\n"
               "MemAvailable: 4000000 kB\n");
    write_file(proc + "/stat", "cpu  4 0 4 8 0 0 0 0 0 0\n"
                               "cpu0 2 0 2 4 0 0 0 0 0 0\n"
                               "cpu1 2 0 2 4 0 0 0 0 0 0\n");
    write_file(proc + "/self/cgroup", "0::/\n");
    write_file(sys + "/fs/cgroup/memory.max", std::to_string(cgroup_ram) + "\n");
  }

  std::vector<std::string> args() const {
    return {"--host.proc=" + proc, "--host.sys=" + sys};
  }
};

constexpr const char* cap_device = "cap-dev";

std::vector<std::string> with(std::vector<std::string> a,
                              const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

} // namespace

TEST_CASE("debug capabilities reads RAM and the cgroup limit under host.proc "
          "and host.sys") {
  fake_host host;
  auto out = host.tmp.path() + "/caps.json";
  std::string cmd = program("fleetd") + " debug capabilities --json";
  for (auto& a : with(host.args(), {"--node.data-dir=" + host.tmp.path()
                                    + "/not-yet"}))
    cmd += " '" + a + "'";
  REQUIRE(std::system((cmd + " >" + out + " 2>/dev/null").c_str()) == 0);
  auto json = read_file(out);
  INFO(json);
  CHECK(json.find("\"total_ram\":" + std::to_string(cgroup_ram) + ",")
        != std::string::npos);
  CHECK(json.find("\"cpu_cores\":2") != std::string::npos);
  CHECK(json.find("RAM limited to 268.4 MB by cgroup v2 " + host.sys
                  + "/fs/cgroup//memory.max (host 8.2 GB)")
        != std::string::npos);
  CHECK(json.find("\"detected_tier\":2") != std::string::npos);
}

TEST_CASE("a host.proc or host.sys that is not a directory stops the start "
          "with a message naming the option") {
  temp_dir tmp;
  for (auto key : {"host.proc", "host.sys"}) {
    auto [rc, err] = run_to_end(program("fleetd"),
                                {"--node.data-dir=" + tmp.path() + "/d",
                                 std::string{"--"} + key + "=" + tmp.path()
                                   + "/missing"},
                                30s);
    INFO(err);
    CHECK(rc != 0);
    CHECK(err.find(std::string{key} + ": '" + tmp.path()
                   + "/missing' is not a directory")
          != std::string::npos);
  }
}

TEST_CASE("a running node takes the tier from host.proc/host.sys, collects "
          "from host.proc, and its start log names every reason") {
  fake_host host;
  auto dir = host.tmp.path() + "/device";
  auto log = host.tmp.path() + "/device.log";
  process device{program("fleetd"),
                 with(host.args(),
                      {"--node.data-dir=" + dir, "--device.id=host-dev",
                       "--cloud.port=1", "--console.port=0",
                       "--collector.interval=50ms", "--collector.rounds=2",
                       "--tier.pin=1", "--sync.backoff-base=10ms",
                       "--sync.backoff-cap=50ms"}),
                 log};
  // The fake's MemTotal as a double's bits: the collector read host.proc.
  double total = static_cast<double>(host_ram);
  uint64_t bits = 0;
  std::memcpy(&bits, &total, sizeof bits);
  auto db = dir + "/fleetd.db";
  auto sql = "SELECT count(*) FROM metrics m JOIN series s ON s.id = "
             "m.series_id WHERE s.name = 'node_memory_MemTotal_bytes' AND "
             "m.bits = "
             + std::to_string(static_cast<int64_t>(bits));
  CHECK(eventually([&] { return exists(db) && query_int(db, sql) >= 1; },
                   30s));
  device.signal(SIGTERM);
  REQUIRE(device.wait(10s) == 0);
  auto text = read_file(log);
  INFO(text);
  // One line: the pinned tier, the detected tier's reason, the cgroup's.
  auto at = text.find("tier 1 full (pinned; detected tier 2): tier 2: not "
                      "tier 1 (RAM 268.4 MB is not > 512 MB)");
  REQUIRE(at != std::string::npos);
  auto line = text.substr(at, text.find('\n', at) - at);
  CHECK(line.find("RAM limited to 268.4 MB by cgroup v2") != std::string::npos);
  CHECK(line.find("tier 1 pinned by config (detected tier 2)")
        != std::string::npos);
}

TEST_CASE("the cloud holds the capability the device detected, and fleetctl "
          "devices shows it") {
  fake_host host;
  auto& tmp = host.tmp;
  // A third CPU on the host; the cgroup's quota allows two.
  write_file(host.proc + "/stat", "cpu  4 0 4 8 0 0 0 0 0 0\n"
                                  "cpu0 2 0 2 4 0 0 0 0 0 0\n"
                                  "cpu1 2 0 2 4 0 0 0 0 0 0\n"
                                  "cpu2 2 0 2 4 0 0 0 0 0 0\n");
  write_file(host.sys + "/fs/cgroup/cpu.max", "200000 100000\n");
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
                  std::string("--device.id=") + cap_device,
                  "--cloud.port=" + std::to_string(port), "--console.port=0",
                  "--host.proc=" + host.proc, "--host.sys=" + host.sys,
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
                 + cap_device + "'";
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
