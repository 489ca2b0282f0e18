#pragma once

// The 100 node_exporter-like series the benchmarks store and send (storage,
// outage, ingest): names, labels, how each value moves and where it starts,
// and node_values, which moves them scrape after scrape.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "messages/types.hpp"

namespace fleetd::bench {

enum class kind { counter, int_counter, gauge, int_gauge };

struct series_def {
  std::string name;
  label_map labels;
  kind k;
  double start;
  double step; // counters: mean increase per scrape; gauges: noise amplitude
};

// 100 series shaped like a small device's node_exporter output.
inline std::vector<series_def> node_exporter_series(std::mt19937_64& rng,
                                                    int64_t start_ms) {
  std::vector<series_def> out;
  std::uniform_real_distribution<double> u(0, 1);
  auto add = [&](std::string name, label_map labels, kind k, double start,
                 double step) {
    out.push_back({std::move(name), std::move(labels), k, start, step});
  };
  for (int cpu = 0; cpu < 4; ++cpu)
    for (auto mode : {"idle", "iowait", "irq", "nice", "softirq", "steal",
                      "system", "user"}) {
      double share = std::string(mode) == "idle"     ? 7.0
                     : std::string(mode) == "user"   ? 1.8
                     : std::string(mode) == "system" ? 0.9
                                                     : 0.05;
      add("node_cpu_seconds_total",
          {{"cpu", std::to_string(cpu)}, {"mode", mode}}, kind::counter,
          share * 86400 * (1 + u(rng)), share);
    }
  for (auto m : {"MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached",
                 "SwapTotal", "SwapFree", "Active", "Inactive", "Dirty"})
    add(std::string("node_memory_") + m + "_bytes", {}, kind::int_gauge,
        std::floor(4e9 * (0.05 + 0.9 * u(rng)) / 4096) * 4096,
        std::string(m) == "MemTotal" || std::string(m) == "SwapTotal" ? 0
                                                                      : 2e6);
  struct fs {
    const char* device;
    const char* fstype;
    const char* mountpoint;
  };
  for (auto f : {fs{"/dev/mmcblk0p2", "ext4", "/"},
                 fs{"/dev/mmcblk0p1", "vfat", "/boot"},
                 fs{"/dev/sda1", "ext4", "/data"}})
    for (auto m : {"avail_bytes", "free_bytes", "size_bytes", "files_free"})
      add(std::string("node_filesystem_") + m,
          {{"device", f.device}, {"fstype", f.fstype},
           {"mountpoint", f.mountpoint}},
          kind::int_gauge, std::floor(3.2e10 * u(rng) / 4096) * 4096,
          std::string(m) == "size_bytes" ? 0 : 4096);
  for (auto dev : {"eth0", "wlan0", "lo"})
    for (auto dir : {"receive", "transmit"})
      for (auto m : {"bytes", "packets", "errs", "drop"})
        add(std::string("node_network_") + dir + "_" + m + "_total",
            {{"device", dev}}, kind::int_counter, std::floor(1e9 * u(rng)),
            std::string(m) == "bytes"     ? 2e5
            : std::string(m) == "packets" ? 300
                                          : 0.02);
  for (auto dev : {"mmcblk0", "sda"}) {
    add("node_disk_read_bytes_total", {{"device", dev}}, kind::int_counter,
        std::floor(1e10 * u(rng)), 4e4);
    add("node_disk_written_bytes_total", {{"device", dev}}, kind::int_counter,
        std::floor(1e10 * u(rng)), 1.2e5);
    add("node_disk_io_time_seconds_total", {{"device", dev}}, kind::counter,
        1e4 * u(rng), 0.08);
    add("node_disk_reads_completed_total", {{"device", dev}},
        kind::int_counter, std::floor(1e7 * u(rng)), 12);
  }
  for (auto m : {"node_load1", "node_load5", "node_load15"})
    add(m, {}, kind::gauge, 0.3 + u(rng), 0.15);
  add("node_context_switches_total", {}, kind::int_counter, 1e9, 9000);
  add("node_intr_total", {}, kind::int_counter, 2e9, 15000);
  add("node_forks_total", {}, kind::int_counter, 3e6, 4);
  add("node_procs_running", {}, kind::int_gauge, 2, 1);
  add("node_procs_blocked", {}, kind::int_gauge, 0, 0.4);
  add("node_hwmon_temp_celsius",
      {{"chip", "thermal_thermal_zone0"}, {"sensor", "temp1"}}, kind::gauge,
      48.3, 1.7);
  add("node_time_seconds", {}, kind::counter, start_ms / 1000.0, 10);
  add("node_boot_time_seconds", {}, kind::int_gauge, 1699000000, 0);
  add("node_entropy_available_bits", {}, kind::int_gauge, 256, 0);
  add("node_filefd_allocated", {}, kind::int_gauge, 1568, 12);
  add("node_timex_offset_seconds", {}, kind::gauge, 0, 0.0004);
  return out;
}

/// The values of a set of series scrape after scrape, as node_exporter prints
/// them: counters grow by random steps, gauges wander around where they
/// started; cpu seconds in 1/100 s (USER_HZ), load averages with 2
/// decimals, ns offsets, each value the double its printed text parses to.
class node_values {
public:
  explicit node_values(std::vector<series_def> defs) : defs_(std::move(defs)) {
    // Own copy: a moved owner of the definitions leaves nothing dangling.
    for (auto& d : defs_) {
      current_.push_back(d.start);
      scale_.push_back(d.k == kind::int_counter || d.k == kind::int_gauge ? 0
                       : d.name == "node_cpu_seconds_total"
                           || d.name.rfind("node_load", 0) == 0
                         ? 1e2
                       : d.name == "node_timex_offset_seconds" ? 1e9
                                                               : 1e3);
    }
    printed_.resize(defs_.size());
  }

  /// Moves every series one scrape on; values() holds what is printed.
  void step(std::mt19937_64& rng) {
    // Fresh distributions per scrape: a scrape's draws depend on rng alone.
    std::uniform_real_distribution<double> u(0, 1);
    std::normal_distribution<double> noise(0, 1);
    for (size_t i = 0; i < defs_.size(); ++i) {
      auto& d = defs_[i];
      auto& v = current_[i];
      switch (d.k) {
        case kind::counter:
          v += d.step * 2 * u(rng);
          break;
        case kind::int_counter:
          v += std::floor(d.step * 2 * u(rng));
          break;
        case kind::gauge:
          // A wander pulled back towards where it started.
          v += 0.3 * d.step * noise(rng) + 0.05 * (d.start - v);
          if (d.name != "node_timex_offset_seconds")
            v = std::max(0.0, v);
          break;
        case kind::int_gauge: {
          auto x = v + 0.3 * d.step * noise(rng) + 0.05 * (d.start - v);
          // Page-sized quantities stay in pages.
          double unit = d.step >= 4096 && std::fmod(d.start, 4096) == 0 ? 4096
                                                                        : 1;
          v = std::max(0.0, std::round(x / unit) * unit);
          break;
        }
      }
      printed_[i] = scale_[i] > 0 ? std::round(v * scale_[i]) / scale_[i] : v;
    }
  }

  /// The printed value of each series after the last step, by index.
  const std::vector<double>& values() const {
    return printed_;
  }

private:
  std::vector<series_def> defs_;
  std::vector<double> current_;
  // 10^decimals of each series' printed values; 0: integers already.
  std::vector<double> scale_;
  std::vector<double> printed_;
};

} // namespace fleetd::bench
