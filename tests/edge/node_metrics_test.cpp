// node_exporter's series from the fixture /proc and /sys trees, collector by
// collector: names, labels, units; the filters and their defaults; missing,
// malformed, hostile and huge input. node_exporter_compare_test checks the
// same fixtures against node_exporter itself.
#include "edge/node_metrics.hpp"

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "fuzz.hpp"
#include "scratch_dir.hpp"

#include "messages/error.hpp"

using namespace fleetd;

namespace fs = std::filesystem;

namespace {

const std::string fixtures = FLEETD_SOURCE_DIR "/tests/edge/fixtures";

constexpr int64_t now_ms = 1'700'000'000'000;

std::string series(const metric_sample& x) {
  std::string out = x.name + "{";
  for (auto& [key, value] : x.labels) {
    if (out.back() != '{')
      out += ",";
    out += key + "=\"" + value + "\"";
  }
  return out + "}";
}

std::map<std::string, double> by_series(const metric_samples& xs) {
  std::map<std::string, double> out;
  for (auto& x : xs)
    out[series(x)] = x.value;
  return out;
}

bool has_problem_naming(const std::vector<std::string>& problems,
                        const std::string& what) {
  for (auto& x : problems)
    if (x.find(what) != std::string::npos)
      return true;
  return false;
}

/// A copy of the fixture trees in a fresh directory, removed at scope exit,
/// with a rootfs whose mount points are known (statfs must not depend on
/// the host's).
class tree {
public:
  tree() {
    std::error_code err;
    fs::copy(fixtures, dir(), fs::copy_options::recursive
                                | fs::copy_options::copy_symlinks, err);
    fs::create_directories(dir() / "rootfs/tmp", err);
    ok_ = scratch_.ok() && !err;
  }

  bool ok() const {
    return ok_;
  }

  fs::path dir() const {
    return scratch_.path();
  }

  node_metrics_config config(const std::string& enabled) const {
    node_metrics_config c;
    c.enabled = enabled;
    c.proc_root = (dir() / "proc").string();
    c.sys_root = (dir() / "sys").string();
    c.udev_data = (dir() / "udev").string();
    c.rootfs = (dir() / "rootfs").string();
    return c;
  }

  bool write(const std::string& name, const std::string& text) {
    std::ofstream out{dir() / name, std::ios::trunc};
    out << text;
    return static_cast<bool>(out);
  }

  bool remove(const std::string& name) {
    std::error_code err;
    return fs::remove_all(dir() / name, err) > 0;
  }

private:
  test::scratch_dir scratch_{"fleetd-node-metrics"};
  bool ok_ = false;
};

struct round {
  std::map<std::string, double> got;
  std::vector<std::string> problems;
  size_t samples = 0;
};

round read(const node_metrics_config& cfg) {
  round out;
  auto xs = read_system_metrics(cfg, now_ms, &out.problems);
  out.samples = xs.size();
  for (auto& x : xs) {
    CHECK(x.timestamp_ms == now_ms);
    CHECK_MESSAGE(out.got.emplace(series(x), x.value).second,
                  "twice: " << series(x));
  }
  return out;
}

} // namespace

TEST_CASE("each collector's series from the fixture trees") {
  tree t;
  REQUIRE(t.ok());
  // Series per collector on the fixtures (see each fixture file).
  std::map<std::string, size_t> expected{
    {"cpu", 2 * (8 + 2)}, {"stat", 6},      {"meminfo", 41},
    {"loadavg", 3},       {"filesystem", 16}, {"netdev", 16},
    {"diskstats", (1 + 17) + (1 + 11) + (1 + 15)},
    {"vmstat", 7},        {"pressure", 5},  {"hwmon", 14},
    {"thermal_zone", 4},  {"time", 6},      {"uname", 1}};
  REQUIRE(expected.size() == node_collectors().size());
  size_t all = 0;
  for (auto& [name, n] : expected) {
    CAPTURE(name);
    auto r = read(t.config(name));
    CHECK(r.problems.empty());
    CHECK(r.samples == n);
    all += n;
  }
  auto r = read(t.config(node_defaults::enabled));
  CHECK(r.samples == all);
}

TEST_CASE("cpu and stat: seconds from USER_HZ, guest apart, stat's counters") {
  tree t;
  REQUIRE(t.ok());
  auto r = read(t.config("cpu,stat"));
  auto& g = r.got;
  CHECK(g["node_cpu_seconds_total{cpu=\"0\",mode=\"user\"}"] == 22150 / 100.0);
  CHECK(g["node_cpu_seconds_total{cpu=\"1\",mode=\"steal\"}"] == 215 / 100.0);
  CHECK(g.count("node_cpu_guest_seconds_total{cpu=\"1\",mode=\"nice\"}") == 1);
  CHECK(g["node_boot_time_seconds{}"] == 1700000000);
  CHECK(g["node_context_switches_total{}"] == 7986525);
  CHECK(g["node_forks_total{}"] == 52311);
  CHECK(g["node_intr_total{}"] == 4215563);
  CHECK(g["node_procs_running{}"] == 3);
  CHECK(g["node_procs_blocked{}"] == 0);
  // No uptime of our own: dashboards take node_time_seconds - boot time.
  CHECK(g.count("node_uptime_seconds{}") == 0);
}

TEST_CASE("meminfo: every field, (x) as _x, kB as bytes, counts as they are") {
  tree t;
  REQUIRE(t.ok());
  auto g = read(t.config("meminfo")).got;
  CHECK(g["node_memory_MemTotal_bytes{}"] == 8046288.0 * 1024);
  CHECK(g["node_memory_Active_anon_bytes{}"] == 1520396.0 * 1024);
  CHECK(g["node_memory_Inactive_file_bytes{}"] == 3300452.0 * 1024);
  CHECK(g["node_memory_HugePages_Total{}"] == 0);
  CHECK(g.count("node_memory_HugePages_Total_bytes{}") == 0);
  CHECK(g["node_memory_Hugepagesize_bytes{}"] == 2048.0 * 1024);
}

TEST_CASE("filesystem: PID 1's mounts, default excludes, once each, "
          "statfs under the rootfs") {
  tree t;
  REQUIRE(t.ok());
  auto r = read(t.config("filesystem"));
  auto& g = r.got;
  auto key = [](const char* name, const char* dev, const char* type,
                const char* mp) {
    return std::string{"node_filesystem_"} + name + "{device=\"" + dev
           + "\",fstype=\"" + type + "\",mountpoint=\"" + mp + "\"}";
  };
  // "/" is listed twice in the fixture and shows once.
  CHECK(g[key("device_error", "/dev/root", "ext4", "/")] == 0);
  CHECK(g[key("size_bytes", "/dev/root", "ext4", "/")] > 0);
  CHECK(g[key("readonly", "/dev/root", "ext4", "/")] == 0);
  CHECK(g.count(key("files", "tmpfs", "tmpfs", "/tmp")) == 1);
  // Mount points missing under the rootfs: device_error alone.
  CHECK(g[key("device_error", "/dev/mmcblk0p1", "vfat", "/boot/firmware")] == 1);
  CHECK(g.count(key("size_bytes", "/dev/mmcblk0p1", "vfat", "/boot/firmware"))
        == 0);
  // \040 in /proc/mounts is a blank.
  CHECK(g.count(key("device_error", "/dev/sdb1", "ext4", "/srv/my data")) == 1);
  // Excluded: /run and /media by mount point, proc, sysfs, cgroup2 by type;
  // /proc/mounts (/other) is not read while PID 1's exist.
  for (auto& [k, v] : g) {
    CHECK(k.find("/run") == std::string::npos);
    CHECK(k.find("/media") == std::string::npos);
    CHECK(k.find("cgroup") == std::string::npos);
    CHECK(k.find("/other") == std::string::npos);
  }
  // Without PID 1's (hidepid), /proc/mounts.
  REQUIRE(t.remove("proc/1"));
  auto fallback = read(t.config("filesystem"));
  CHECK(fallback.problems.empty());
  CHECK(fallback.got.count(key("device_error", "/dev/other", "ext4", "/other"))
        == 1);
}

TEST_CASE("filesystem: a rootfs prefix is taken off the mount points") {
  tree t;
  REQUIRE(t.ok());
  auto root = (t.dir() / "rootfs").string();
  REQUIRE(t.write("proc/1/mounts", "/dev/vda " + root + " ext4 ro 0 0\n"
                                     "/dev/vdb " + root + "/tmp xfs rw 0 0\n"));
  auto g = read(t.config("filesystem")).got;
  CHECK(g["node_filesystem_readonly{device=\"/dev/vda\",fstype=\"ext4\","
          "mountpoint=\"/\"}"]
        == 1);
  CHECK(g.count("node_filesystem_size_bytes{device=\"/dev/vdb\",fstype=\"xfs\","
                "mountpoint=\"/tmp\"}")
        == 1);
}

TEST_CASE("netdev and diskstats: every column, default device filters") {
  tree t;
  REQUIRE(t.ok());
  auto g = read(t.config("netdev,diskstats")).got;
  CHECK(g["node_network_receive_drop_total{device=\"eth0\"}"] == 12);
  CHECK(g["node_network_receive_multicast_total{device=\"eth0\"}"] == 4521);
  CHECK(g["node_network_transmit_bytes_total{device=\"eth0\"}"] == 987654321);
  CHECK(g.count("node_network_receive_bytes_total{device=\"lo\"}") == 0);
  CHECK(g["node_disk_read_bytes_total{device=\"sda\"}"] == 24337522.0 * 512);
  CHECK(g["node_disk_read_time_seconds_total{device=\"sda\"}"] == 205.062);
  CHECK(g["node_disk_io_now{device=\"sda\"}"] == 2);
  CHECK(g["node_disk_discarded_sectors_total{device=\"sda\"}"] == 132341352);
  CHECK(g["node_disk_flush_requests_time_seconds_total{device=\"sda\"}"]
        == 29.631);
  // udev's labels where its database has the device.
  CHECK(g.count("node_disk_info{device=\"sda\",major=\"8\",minor=\"0\","
                "model=\"Samsung_SSD_860\",path=\"pci-0000:00:1f.2-ata-1\","
                "revision=\"RVT01B6Q\",serial=\"S3Z9NB0K\","
                "wwn=\"0x5002538e40a0eb3c\"}")
        == 1);
  CHECK(g.count("node_disk_info{device=\"mmcblk0\",major=\"179\",minor=\"0\"}")
        == 1);
  // An 11-column kernel has no discard or flush columns.
  CHECK(g.count("node_disk_discards_completed_total{device=\"mmcblk0\"}") == 0);
  CHECK(g.count("node_disk_reads_completed_total{device=\"loop0\"}") == 0);
  CHECK(g.count("node_disk_reads_completed_total{device=\"sda1\"}") == 0);
}

TEST_CASE("the filters follow the options, and a verdict is taken once") {
  tree t;
  REQUIRE(t.ok());
  auto cfg = t.config("netdev,diskstats,vmstat");
  cfg.netdev_device_include = "^(lo|eth)";
  cfg.netdev_device_exclude = "";
  cfg.diskstats_device_exclude = "^dm-";
  cfg.vmstat_fields = "^nr_";
  node_metrics_reader reader{cfg};
  for (int i = 0; i < 2; ++i) {
    metric_samples xs;
    reader.read(now_ms, xs, nullptr);
    auto g = by_series(xs);
    CHECK(g.count("node_network_receive_bytes_total{device=\"lo\"}") == 1);
    CHECK(g.count("node_network_receive_bytes_total{device=\"eth0\"}") == 1);
    CHECK(g.count("node_disk_reads_completed_total{device=\"loop0\"}") == 1);
    CHECK(g.count("node_disk_reads_completed_total{device=\"dm-0\"}") == 0);
    CHECK(g["node_vmstat_nr_dirty{}"] == 103);
    CHECK(g.count("node_vmstat_pgfault{}") == 0);
  }
  // Both include and exclude: in the first, not in the second.
  cfg.netdev_device_exclude = "^lo$";
  auto g = read(cfg).got;
  CHECK(g.count("node_network_receive_bytes_total{device=\"lo\"}") == 0);
  CHECK(g.count("node_network_receive_bytes_total{device=\"eth0\"}") == 1);
}

TEST_CASE("pressure, hwmon, thermal zones and clock sources") {
  tree t;
  REQUIRE(t.ok());
  auto g = read(t.config("pressure,hwmon,thermal_zone,time")).got;
  CHECK(g["node_pressure_cpu_waiting_seconds_total{}"] == 531.959675);
  CHECK(g["node_pressure_io_stalled_seconds_total{}"] == 51.632917);
  CHECK(g["node_pressure_memory_waiting_seconds_total{}"] == 0.0015);
  // Named for the device's bus and name, not the hwmonN that moves.
  auto chip = std::string{"chip=\"platform_coretemp_0\""};
  CHECK(g["node_hwmon_temp_celsius{" + chip + ",sensor=\"temp1\"}"] == 48.0);
  CHECK(g["node_hwmon_temp_max_celsius{" + chip + ",sensor=\"temp1\"}"]
        == 100.0);
  CHECK(g["node_hwmon_fan_rpm{" + chip + ",sensor=\"fan1\"}"] == 1250);
  CHECK(g["node_hwmon_in_volts{" + chip + ",sensor=\"in0\"}"] == 1.096);
  CHECK(g.count("node_hwmon_sensor_label{" + chip
                + ",label=\"Package id 0\",sensor=\"temp1\"}")
        == 1);
  CHECK(g.count("node_hwmon_chip_names{" + chip + ",chip_name=\"coretemp\"}")
        == 1);
  CHECK(g["node_hwmon_update_interval_seconds{chip=\"acpitz\",sensor="
          "\"update_interval0\"}"]
        == 1.0);
  CHECK(g["node_thermal_zone_temp{type=\"x86_pkg_temp\",zone=\"0\"}"] == 47.0);
  CHECK(g["node_thermal_zone_temp{type=\"acpitz\",zone=\"1\"}"] == -5.0);
  CHECK(g["node_cooling_device_max_state{name=\"0\",type=\"Processor\"}"] == 3);
  CHECK(g["node_time_seconds{}"] == now_ms / 1000.0);
  CHECK(g.count("node_time_clocksource_current_info{clocksource=\"tsc\","
                "device=\"0\"}")
        == 1);
  CHECK(g.count("node_time_clocksource_available_info{clocksource=\"hpet\","
                "device=\"0\"}")
        == 1);
}

TEST_CASE("what a kernel may lack is no problem; what is missing is named") {
  tree t;
  REQUIRE(t.ok());
  // Before 4.20 (no PSI), no hwmon, no thermal class: nothing, quietly.
  REQUIRE(t.remove("proc/pressure"));
  REQUIRE(t.remove("sys/class"));
  auto r = read(t.config("pressure,hwmon,thermal_zone"));
  CHECK(r.problems.empty());
  CHECK(r.samples == 0);
  // A missing /proc file is named, and the rest of the round is kept.
  REQUIRE(t.remove("proc/net"));
  auto m = read(t.config("netdev,loadavg"));
  REQUIRE(m.problems.size() == 1);
  CHECK(has_problem_naming(m.problems, "/net/dev"));
  CHECK(m.samples == 3);
}

TEST_CASE("malformed lines are skipped and counted, the rest still read") {
  tree t;
  REQUIRE(t.ok());
  REQUIRE(t.write("proc/stat", "cpu  3 0 3 6 0 0 0 0 0 0\n"
                               "cpu0 1 0 1 two 0 0 0 0 0 0\n"
                               "cpu1 2 0 2 4 0 0 0 0 0 0\n"
                               "cpu2\n"));
  REQUIRE(t.write("proc/meminfo", "MemTotal: 1000 kB\nMemFree 500 kB\n"
                                  "Bad(name: 1 kB\nWeird: 1 kB extra\n"
                                  "Evil\"}: 5\n"));
  REQUIRE(t.write("proc/diskstats", " 8 0 sda 1 2 3\n"
                                    " 8 16 sdb 1 2 3 4 5 6 7 8 9 10 11\n"));
  auto r = read(t.config("cpu,meminfo,diskstats"));
  CHECK(has_problem_naming(r.problems, "stat: skipped 2 malformed line"));
  CHECK(has_problem_naming(r.problems, "meminfo: skipped 4 malformed line"));
  CHECK(has_problem_naming(r.problems, "diskstats: skipped 1 malformed line"));
  CHECK(r.got.count("node_cpu_seconds_total{cpu=\"0\",mode=\"user\"}") == 0);
  CHECK(r.got["node_cpu_seconds_total{cpu=\"1\",mode=\"idle\"}"] == 0.04);
  CHECK(r.got["node_memory_MemTotal_bytes{}"] == 1000.0 * 1024);
  CHECK(r.got.size() == 10 + 1 + 12);
}

TEST_CASE("a huge or endless file is cut at the cap and named") {
  tree t;
  REQUIRE(t.ok());
  std::string huge;
  while (huge.size() <= node_limits::file_bytes + 1000)
    huge += "pgfault 1\n";
  REQUIRE(t.write("proc/vmstat", huge));
  std::vector<std::string> problems;
  auto xs = read_system_metrics(t.config("vmstat"), now_ms, &problems);
  CHECK(has_problem_naming(problems, "longer than"));
  // Every line says the same series: one sample, not one per line.
  CHECK(xs.size() == 1);
  // More devices than the cap: the rest is left out and named.
  std::string many = "Inter-|\n face |\n";
  for (size_t i = 0; i <= node_limits::devices + 5; ++i)
    many += "e" + std::to_string(i)
            + ": 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0\n";
  REQUIRE(t.write("proc/net/dev", many));
  problems.clear();
  xs = read_system_metrics(t.config("netdev"), now_ms, &problems);
  CHECK(has_problem_naming(problems, "more than"));
  CHECK(xs.size() == node_limits::devices * 16);
  // /dev/zero never ends: cut, not read forever.
  auto cfg = t.config("loadavg");
  REQUIRE(t.remove("proc/loadavg"));
  fs::create_symlink("/dev/zero", t.dir() / "proc/loadavg");
  problems.clear();
  xs = read_system_metrics(cfg, now_ms, &problems);
  CHECK(xs.empty());
  CHECK(has_problem_naming(problems, "longer than"));
}

TEST_CASE("mutated /proc files never crash the reader nor give bad names") {
  tree t;
  REQUIRE(t.ok());
  std::mt19937_64 rng{20261207};
  auto cfg = t.config("cpu,stat,meminfo,netdev,diskstats,vmstat,pressure,"
                      "filesystem,loadavg");
  std::map<std::string, std::string> seeds;
  for (auto name : {"stat", "meminfo", "net/dev", "diskstats", "vmstat",
                    "pressure/io", "1/mounts", "loadavg"}) {
    std::ifstream in{t.dir() / "proc" / name};
    seeds[name] = std::string{std::istreambuf_iterator<char>{in}, {}};
  }
  auto n = test::fuzz_iterations(300);
  for (long i = 0; i < n; ++i) {
    for (auto& [name, text] : seeds)
      REQUIRE(t.write("proc/" + name, test::mutate(text, " :()\n0123456789abkB",
                                                    rng)));
    std::vector<std::string> problems;
    auto xs = read_system_metrics(cfg, now_ms, &problems);
    for (auto& x : xs) {
      REQUIRE(!x.name.empty());
      for (char c : x.name)
        REQUIRE((c == '_' || std::isalnum(static_cast<unsigned char>(c))));
    }
  }
}

TEST_CASE("the running kernel's /proc and /sys read without problems") {
  std::vector<std::string> problems;
  auto xs = read_system_metrics(node_metrics_config{}, now_ms, &problems);
  INFO("problems: ", problems.size() > 0 ? problems.front() : "");
  CHECK(problems.empty());
  auto g = by_series(xs);
  CHECK(g["node_memory_MemTotal_bytes{}"] > 0);
  CHECK(g.count("node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"}") == 1);
  CHECK(g["node_boot_time_seconds{}"] > 0);
}

TEST_CASE("options: an unknown collector or a bad pattern is refused by name") {
  node_metrics_config c;
  CHECK(!validate(c));
  c.enabled = "cpu,gpu";
  auto err = validate(c);
  CHECK(err == ec::bad_config);
  CHECK(render(err).find("collector.enabled") != std::string::npos);
  CHECK(render(err).find("gpu") != std::string::npos);
  c = node_metrics_config{};
  c.diskstats_device_exclude = "^(sd[a-z]";
  err = validate(c);
  CHECK(render(err).find("collector.diskstats.device-exclude") != std::string::npos);
  c = node_metrics_config{};
  c.netdev_device_include = "^eth\\d+$";
  CHECK(render(validate(c)).find("[0-9]") != std::string::npos);
  c = node_metrics_config{};
  c.rootfs = "relative";
  CHECK(render(validate(c)).find("host.rootfs") != std::string::npos);
  // Nothing enabled is a valid, silent collector.
  c = node_metrics_config{};
  c.enabled = "";
  CHECK(!validate(c));
  CHECK(read_system_metrics(c, now_ms, nullptr).empty());
}
