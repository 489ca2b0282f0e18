// fleetd's system collector against the real node_exporter (Debian's 1.5.0)
// with the same collectors: the same series (name and labels) and, read at
// the same moment on this machine, the same values within a stated
// tolerance; and on the fixture /proc and /sys trees exactly the same
// values, which checks the readers of what this machine lacks (hwmon,
// thermal zones, udev labels).
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "edge/node_metrics.hpp"
#include "messages/prom_text.hpp"
#include "runtime/http_client.hpp"
#include "skip.hpp"
#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* node_exporter = "/usr/bin/prometheus-node-exporter";

const std::string fixtures = FLEETD_SOURCE_DIR "/tests/edge/fixtures";

// Series node_exporter 1.5.0 shows that fleetd does not, each for a reason.
const std::set<std::string> inherent_ne_only = {
  // Read over netlink (node_exporter 1.5's default); /proc/net/dev, which
  // fleetd reads, has no such column (--no-collector.netdev.netlink: none).
  "node_network_receive_nohandler_total",
};

// node_exporter's own series, not of a collector.
bool own_series(const std::string& name) {
  for (auto prefix : {"go_", "process_", "promhttp_", "node_scrape_collector_",
                      "node_exporter_build_info"})
    if (name.rfind(prefix, 0) == 0)
      return true;
  return false;
}

std::string key_of(const metric_sample& x) {
  std::string out = x.name + "{";
  for (auto& [k, v] : x.labels)
    out += k + "=\"" + v + "\",";
  return out + "}";
}


struct page {
  std::map<std::string, double> values;
  std::map<std::string, prom_type> types;
};

page scrape(http_client& client) {
  page out;
  auto res = client.get("/metrics");
  REQUIRE_MESSAGE(res, "scrape failed");
  REQUIRE(res->status == 200);
  auto parsed = parse_prom_text(res->body, 0);
  REQUIRE(parsed.bad_lines == 0);
  for (auto& f : parsed.families)
    out.types[f.name] = f.type;
  for (auto& x : parsed.samples)
    if (!own_series(x.name) && inherent_ne_only.count(x.name) == 0)
      out.values[key_of(x)] = x.value;
  return out;
}

std::map<std::string, double> ours(const metric_samples& xs) {
  std::map<std::string, double> out;
  for (auto& x : xs) {
    // prom_text drops empty labels; so does the comparison.
    metric_sample y = x;
    for (auto i = y.labels.begin(); i != y.labels.end();)
      i = i->second.empty() ? y.labels.erase(i) : std::next(i);
    CHECK_MESSAGE(out.emplace(key_of(y), y.value).second,
                  "twice in one round: " << key_of(y));
  }
  return out;
}

std::vector<std::string> ne_args(uint16_t port,
                                 const std::vector<std::string>& collectors,
                                 std::vector<std::string> extra) {
  std::vector<std::string> args{"--web.listen-address=127.0.0.1:"
                                  + std::to_string(port),
                                "--collector.disable-defaults"};
  for (auto& c : collectors)
    args.push_back("--collector." + c);
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

std::string join(const std::vector<std::string>& xs) {
  std::string out;
  for (auto& x : xs)
    out += (out.empty() ? "" : ",") + x;
  return out;
}

// The same series set: none of fleetd's missing from node_exporter's page
// and none of the page's missing from fleetd's round. `before`, when
// given, is a scrape just before fleetd's read: a series that came or went
// between the two scrapes (a mount, a device of another test) may be in
// fleetd's round or not.
void check_same_series(const std::map<std::string, double>& fleetd,
                       const std::map<std::string, double>& ne,
                       const std::map<std::string, double>* before = nullptr) {
  auto in_before = [&](const std::string& k) {
    return before == nullptr || before->count(k) == 1;
  };
  size_t differences = 0;
  for (auto& [k, v] : fleetd)
    if (ne.count(k) == 0 && (before == nullptr || before->count(k) == 0)) {
      FAIL_CHECK("only fleetd has " << k);
      ++differences;
    }
  for (auto& [k, v] : ne)
    if (fleetd.count(k) == 0 && in_before(k)) {
      FAIL_CHECK("only node_exporter has " << k);
      ++differences;
    }
  CHECK(differences == 0);
}

// Absolute slack of a gauge beyond the two scrapes around fleetd's read:
// what moves between two reads microseconds apart on a busy machine.
double gauge_slack(const std::string& key) {
  if (key.rfind("node_memory_", 0) == 0)
    return 64.0 * 1024 * 1024;
  if (key.rfind("node_procs_", 0) == 0 || key.rfind("node_disk_io_now", 0) == 0)
    return 8;
  if (key.rfind("node_load", 0) == 0)
    return 0.5;
  if (key.rfind("node_time_seconds", 0) == 0)
    return 10;
  if (key.rfind("node_filesystem_", 0) == 0)
    return 256.0 * 1024 * 1024;
  return 0;
}

} // namespace

TEST_CASE("fleetd reads what node_exporter shows, at the same moment") {
  if (access(node_exporter, X_OK) != 0)
    return skip(std::string(node_exporter)
                + " is not installed (tools/install-deps)");
  temp_dir tmp;
  auto port = free_port();
  std::vector<std::string> collectors;
  for (auto c : node_collectors())
    collectors.emplace_back(c);
  process exporter{node_exporter, ne_args(port, collectors, {}),
                   tmp.path() + "/node_exporter.log"};
  REQUIRE(eventually([&] { return listening(port); }, 20s));
  http_client client{"127.0.0.1", port, 10s, 16 << 20};
  node_metrics_config cfg;
  cfg.enabled = join(collectors);
  node_metrics_reader reader{cfg};
  // One round first: the reader's caches are warm, as in a running node.
  metric_samples warm;
  reader.read(0, warm, nullptr);
  auto before = scrape(client);
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  metric_samples xs;
  std::vector<std::string> problems;
  reader.read(now_ms, xs, &problems);
  auto after = scrape(client);
  CHECK_MESSAGE(problems.empty(), (problems.empty() ? "" : problems[0]));
  auto got = ours(xs);
  check_same_series(got, after.values, &before.values);
  size_t checked = 0;
  for (auto& [key, v] : got) {
    auto b = before.values.find(key);
    auto a = after.values.find(key);
    if (b == before.values.end() || a == after.values.end())
      continue;
    auto name = key.substr(0, key.find('{'));
    auto type = after.types[name];
    auto lo = std::min(b->second, a->second);
    auto hi = std::max(b->second, a->second);
    // Counters grow: fleetd's read lies between the scrapes around it (a
    // hundredth of a second of CPU and a millisecond of I/O as slack for
    // node_exporter's rounding). Gauges move both ways: the same range, 5 %
    // and a small absolute slack wider.
    double slack = type == prom_type::counter
                     ? 0.01 + 1e-9 * std::fabs(hi)
                     : 0.05 * std::fabs(hi) + gauge_slack(key);
    CHECK_MESSAGE((v >= lo - slack && v <= hi + slack),
                  key << " = " << v << ", node_exporter " << b->second
                      << " then " << a->second);
    ++checked;
  }
  // All but what came or went between the scrapes (none on a quiet machine).
  CHECK(checked > 0);
  MESSAGE("series compared with node_exporter: " << checked << " of "
                                                  << got.size());
  exporter.signal(SIGTERM);
  exporter.wait(10s);
}

TEST_CASE("on the fixture /proc and /sys, fleetd and node_exporter agree "
          "exactly") {
  if (access(node_exporter, X_OK) != 0)
    return skip(std::string(node_exporter)
                + " is not installed (tools/install-deps)");
  temp_dir tmp;
  auto port = free_port();
  // filesystem statfs's this machine's mounts, time and uname read it too:
  // the test above has them. Netlink is not a file: /proc/net/dev it is.
  std::vector<std::string> collectors{"cpu",      "stat",     "meminfo",
                                      "loadavg",  "netdev",   "diskstats",
                                      "vmstat",   "pressure", "hwmon",
                                      "thermal_zone"};
  process exporter{node_exporter,
                   ne_args(port, collectors,
                           {"--path.procfs=" + fixtures + "/proc",
                            "--path.sysfs=" + fixtures + "/sys",
                            "--path.udev.data=" + fixtures + "/udev",
                            "--no-collector.netdev.netlink"}),
                   tmp.path() + "/node_exporter.log"};
  REQUIRE(eventually([&] { return listening(port); }, 20s));
  http_client client{"127.0.0.1", port, 10s, 16 << 20};
  node_metrics_config cfg;
  cfg.enabled = join(collectors);
  cfg.proc_root = fixtures + "/proc";
  cfg.sys_root = fixtures + "/sys";
  cfg.udev_data = fixtures + "/udev";
  std::vector<std::string> problems;
  auto got = ours(read_system_metrics(cfg, 0, &problems));
  auto ne = scrape(client).values;
  // The fixture's broken hwmon input (in1_input) is skipped by both.
  check_same_series(got, ne);
  for (auto& [key, v] : got)
    if (auto i = ne.find(key); i != ne.end())
      CHECK_MESSAGE(v == doctest::Approx(i->second).epsilon(1e-12),
                    key << " = " << v << ", node_exporter " << i->second);
  exporter.signal(SIGTERM);
  exporter.wait(10s);
}
