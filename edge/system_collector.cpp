#include "edge/system_collector.hpp"

#include "runtime/text.hpp"

#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string_view>
#include <system_error>
#include <utility>

#include <caf/error.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "runtime/config_check.hpp"
#include "runtime/logger.hpp"
#include "runtime/options.hpp"

namespace fleetd {

namespace {

constexpr const char* component = "system_collector";

constexpr auto store_timeout = std::chrono::seconds(10);

// USER_HZ: the unit of /proc/stat, fixed at 100 for user space on Linux.
constexpr double user_hz = 100.0;

// node_cpu_seconds_total modes in /proc/stat column order; guest time is
// already part of user time, so node_exporter leaves it out and so do we.
constexpr const char* cpu_modes[] = {"user",    "nice", "system",
                                     "idle",    "iowait", "irq",
                                     "softirq", "steal"};

// The meminfo fields we report, in the order we emit them.
constexpr const char* meminfo_fields[] = {"MemTotal",  "MemAvailable",
                                          "MemFree",   "Buffers",
                                          "Cached",    "SwapTotal",
                                          "SwapFree"};

std::string_view first_line(const std::string& text) {
  return std::string_view{text}.substr(0, text.find('\n'));
}

// from_chars, not strtod: locale-independent and needs no terminator.
bool parse_number(std::string_view x, double& out) {
  auto last = x.data() + x.size();
  auto [ptr, err] = std::from_chars(x.data(), last, out);
  return !x.empty() && err == std::errc{} && ptr == last;
}

/// Reads the files of one round into `out`; every sample gets `now_ms`.
class round_reader {
public:
  round_reader(const std::string& proc_root, int64_t now_ms,
               metric_samples& out, std::vector<std::string>* problems)
    : proc_root_(proc_root), now_ms_(now_ms), out_(out), problems_(problems) {
    // nop
  }

  void read_stat() {
    std::string path;
    std::string text;
    if (!load("stat", path, text))
      return;
    size_t cpus = 0;
    size_t bad = 0;
    for (auto line : split_lines(text)) {
      auto fields = split_fields(line);
      // Only per-cpu lines ("cpu0 ..."); "cpu " is their sum.
      if (fields.empty() || fields[0].size() <= 3
          || fields[0].substr(0, 3) != "cpu")
        continue;
      auto cpu = std::string{fields[0].substr(3)};
      // Kernels older than 2.6.11 have fewer columns; take what exists.
      auto columns = std::min(fields.size() - 1, std::size(cpu_modes));
      std::vector<double> jiffies(columns);
      bool ok = columns >= 4;
      for (size_t i = 0; ok && i < columns; ++i)
        ok = parse_number(fields[i + 1], jiffies[i]);
      // Half a CPU's modes would skew every rate computed from it.
      if (!ok) {
        ++bad;
        continue;
      }
      for (size_t i = 0; i < columns; ++i)
        add("node_cpu_seconds_total", jiffies[i] / user_hz,
            {{"cpu", cpu}, {"mode", cpu_modes[i]}});
      ++cpus;
    }
    report_malformed(path, bad);
    if (cpus == 0 && bad == 0)
      note(path + ": no per-cpu lines");
  }

  void read_meminfo() {
    std::string path;
    std::string text;
    if (!load("meminfo", path, text))
      return;
    std::map<std::string_view, double, std::less<>> bytes;
    size_t bad = 0;
    for (auto line : split_lines(text)) {
      auto colon = line.find(':');
      if (colon == std::string_view::npos)
        continue;
      auto key = trim(line.substr(0, colon));
      if (!wanted_meminfo(key))
        continue;
      auto fields = split_fields(line.substr(colon + 1));
      double value = 0;
      if (fields.empty() || !parse_number(fields[0], value)) {
        ++bad;
        continue;
      }
      // Every field we report is in kB (KiB) in meminfo.
      if (fields.size() > 1 && fields[1] == "kB")
        value *= 1024;
      bytes[key] = value;
    }
    report_malformed(path, bad);
    for (auto field : meminfo_fields) {
      auto i = bytes.find(std::string_view{field});
      if (i == bytes.end()) {
        note(path + ": no " + field);
        continue;
      }
      add(std::string{"node_memory_"} + field + "_bytes", i->second, {});
    }
  }

  void read_net_dev() {
    std::string path;
    std::string text;
    if (!load("net/dev", path, text))
      return;
    size_t bad = 0;
    for (auto line : split_lines(text)) {
      // The two header lines have no colon; every interface line does.
      auto colon = line.find(':');
      if (colon == std::string_view::npos)
        continue;
      auto device = std::string{trim(line.substr(0, colon))};
      // Split after the colon: old kernels glue "eth0:123" together.
      auto fields = split_fields(line.substr(colon + 1));
      double v[16];
      bool ok = !device.empty() && fields.size() >= 16;
      for (size_t i = 0; ok && i < 16; ++i)
        ok = parse_number(fields[i], v[i]);
      if (!ok) {
        ++bad;
        continue;
      }
      label_map labels{{"device", device}};
      add("node_network_receive_bytes_total", v[0], labels);
      add("node_network_receive_packets_total", v[1], labels);
      add("node_network_receive_errs_total", v[2], labels);
      add("node_network_transmit_bytes_total", v[8], labels);
      add("node_network_transmit_packets_total", v[9], labels);
      add("node_network_transmit_errs_total", v[10], labels);
    }
    report_malformed(path, bad);
  }

  void read_loadavg() {
    std::string path;
    std::string text;
    if (!load("loadavg", path, text))
      return;
    // "0.52 0.58 0.59 2/1234 56789": three averages, running/total, last pid.
    auto fields = split_fields(first_line(text));
    double load1 = 0, load5 = 0, load15 = 0, running = 0;
    bool ok = fields.size() >= 4 && parse_number(fields[0], load1)
              && parse_number(fields[1], load5)
              && parse_number(fields[2], load15);
    auto slash = ok ? fields[3].find('/') : std::string_view::npos;
    ok = ok && slash != std::string_view::npos
         && parse_number(fields[3].substr(0, slash), running);
    if (!ok) {
      report_malformed(path, 1);
      return;
    }
    add("node_load1", load1, {});
    add("node_load5", load5, {});
    add("node_load15", load15, {});
    add("node_procs_running", running, {});
  }

  void read_uptime() {
    std::string path;
    std::string text;
    if (!load("uptime", path, text))
      return;
    // "12345.67 54321.00": seconds up, then idle seconds summed over CPUs.
    auto fields = split_fields(first_line(text));
    double seconds = 0;
    if (fields.empty() || !parse_number(fields[0], seconds)) {
      report_malformed(path, 1);
      return;
    }
    add("node_uptime_seconds", seconds, {});
  }

  void read_filesystem(const std::string& disk_path) {
    // No data directory configured means no filesystem to watch.
    if (disk_path.empty())
      return;
    struct statvfs fs {};
    if (::statvfs(disk_path.c_str(), &fs) != 0) {
      note(disk_path + ": statvfs failed: "
           + std::generic_category().message(errno));
      return;
    }
    // Block counts are in f_frsize units, not f_bsize.
    auto block = static_cast<double>(fs.f_frsize);
    label_map labels{{"mountpoint", disk_path}};
    add("node_filesystem_size_bytes", block * fs.f_blocks, labels);
    add("node_filesystem_avail_bytes", block * fs.f_bavail, labels);
    add("node_filesystem_free_bytes", block * fs.f_bfree, labels);
  }

private:
  static bool wanted_meminfo(std::string_view key) {
    for (auto field : meminfo_fields)
      if (key == field)
        return true;
    return false;
  }

  // Whole file; /proc files report size 0, so this reads until EOF.
  bool load(const char* name, std::string& path, std::string& text) {
    path = proc_root_ + "/" + name;
    std::ifstream in{path};
    if (!in) {
      note(path + ": cannot open");
      return false;
    }
    std::ostringstream buf;
    buf << in.rdbuf();
    if (in.bad()) {
      note(path + ": read failed");
      return false;
    }
    text = buf.str();
    return true;
  }

  void add(std::string name, double value, label_map labels) {
    metric_sample x;
    x.name = std::move(name);
    x.labels = std::move(labels);
    x.timestamp_ms = now_ms_;
    x.value = value;
    out_.push_back(std::move(x));
  }

  void report_malformed(const std::string& path, size_t bad) {
    if (bad > 0)
      note(path + ": skipped " + std::to_string(bad) + " malformed line(s)");
  }

  void note(std::string problem) {
    if (problems_ != nullptr)
      problems_->push_back(std::move(problem));
  }

  const std::string& proc_root_;
  int64_t now_ms_;
  metric_samples& out_;
  std::vector<std::string>* problems_;
};

bool finished(const system_collector_state& st) {
  return st.cfg.max_rounds > 0 && st.rounds >= st.cfg.max_rounds;
}

std::string join(const std::vector<std::string>& xs) {
  std::string out;
  for (auto& x : xs) {
    if (!out.empty())
      out += "; ";
    out += x;
  }
  return out;
}

void collect_round(
  collector_actor::stateful_pointer<system_collector_state> self) {
  auto& st = self->state;
  std::vector<std::string> problems;
  auto now = st.cfg.clock->now_ms();
  auto samples = st.cfg.source
                   ? st.cfg.source(now, &problems)
                   : read_system_metrics(st.cfg.proc_root, st.cfg.disk_path,
                                         now, &problems);
  ++st.rounds;
  if (!problems.empty()) {
    // The same files stay missing every round: warn once, then only debug
    // (named for the collector: a scrape target's are its own).
    auto* who = st.cfg.name.c_str();
    if (st.read_problems == 0)
      log_warning_limited(who, "unreadable", "skipping unreadable metrics: ",
                          join(problems));
    else
      log_debug(who, "skipping unreadable metrics: ", join(problems));
    st.read_problems += static_cast<int64_t>(problems.size());
  }
  if (st.cfg.events)
    for (auto& e : st.cfg.events(now))
      self->send(st.cfg.storage, event_atom::value, e.kind, e.message);
  if (st.cfg.logs) {
    auto lines = st.cfg.logs(now);
    if (!lines.empty()) {
      st.lines_collected += static_cast<int64_t>(lines.size());
      // Stored before the samples below: the mailbox keeps this order.
      self->request(st.cfg.storage, store_timeout, store_atom::value,
                    std::move(lines))
        .then([self](int64_t n) { self->state.lines_stored += n; },
              [self](caf::error& err) {
                ++self->state.store_failures;
                log_warning_limited(component, "store_logs",
                                    "storing log lines failed: ", render(err));
              });
    }
  }
  if (samples.empty())
    return;
  st.points_collected += static_cast<int64_t>(samples.size());
  st.in_flight = true;
  self
    ->request(st.cfg.storage, store_timeout, store_atom::value,
              std::move(samples))
    .then(
      [self](int64_t committed) {
        self->state.points_stored += committed;
        self->state.in_flight = false;
        for (auto& x : self->state.cfg.on_stored)
          caf::anon_send(x, store_atom::value);
      },
      [self](caf::error& err) {
        // The round is lost, not retried: the next one reads fresh totals.
        ++self->state.store_failures;
        log_warning_limited(component, "store_samples",
                            "storing samples failed: ", render(err));
        self->state.in_flight = false;
      });
}

} // namespace

metric_samples read_system_metrics(const std::string& proc_root,
                                   const std::string& disk_path,
                                   int64_t now_ms,
                                   std::vector<std::string>* problems) {
  metric_samples out;
  round_reader reader{proc_root, now_ms, out, problems};
  reader.read_stat();
  reader.read_meminfo();
  reader.read_filesystem(disk_path);
  reader.read_net_dev();
  reader.read_loadavg();
  reader.read_uptime();
  return out;
}

std::chrono::milliseconds next_round_in(int64_t now_ms,
                                        std::chrono::milliseconds interval) {
  auto iv = interval.count();
  if (iv <= 0)
    return interval;
  // The multiple of iv nearest to now + iv.
  auto next = (now_ms + iv + iv / 2) / iv * iv;
  return std::chrono::milliseconds(next - now_ms);
}

void declare(option_set& opts, system_collector_config& x) {
  using namespace std::chrono_literals;
  opts.add("collector.interval", x.interval, 10s,
           "How often the system collector reads CPU, memory, disk, network "
           "(rounds start on multiples of it on the clock)",
           10ms);
  opts.add("collector.rounds", x.max_rounds, 0, "rounds",
           "Stop collecting after this many rounds (0: never); sync goes on",
           0);
}

caf::error validate(const system_collector_config& x) {
  if (x.name.empty())
    return bad_config("system_collector_config.name: must not be empty");
  // The load generator is a collector too, with its own options.
  std::string group = x.name == "load_generator" ? "load." : "collector.";
  if (x.interval.count() < 0)
    return bad_config(group + "interval: must not be negative");
  if (x.max_rounds < 0)
    return bad_config(group + "rounds: must not be negative");
  return caf::none;
}

collector_actor::behavior_type
system_collector(collector_actor::stateful_pointer<system_collector_state> self,
                 system_collector_config cfg) {
  if (stop_on_bad_config(self, "system_collector", validate(cfg)))
    return collector_actor::behavior_type::make_empty_behavior();
  if (!cfg.clock)
    cfg.clock = make_system_clock();
  self->state.cfg = std::move(cfg);
  self->send(self, tick_atom::value);
  return {
    [self](tick_atom) {
      auto& st = self->state;
      // Only our own ticks re-arm the timer; a tick from another actor is
      // one extra round and must not start a second timer chain.
      auto own_tick = self->current_sender() == self->ctrl();
      if (finished(st))
        return;
      if (st.in_flight) {
        // Storage is slow: drop this round rather than queue requests.
        ++st.rounds_skipped;
        log_debug(component, "previous store unanswered, round skipped");
      } else {
        collect_round(self);
      }
      if (own_tick && !finished(st))
        self->delayed_send(self,
                           st.cfg.clock->real(next_round_in(
                             st.cfg.clock->now_ms(), st.cfg.interval)),
                           tick_atom::value);
    },
    [self](stats_atom) {
      auto& st = self->state;
      actor_stats out;
      out.name = st.cfg.name;
      out.state = finished(st) && !st.in_flight ? "done" : "collecting";
      out.counters = {{"rounds", st.rounds},
                      {"points_collected", st.points_collected},
                      {"points_stored", st.points_stored},
                      {"store_failures", st.store_failures},
                      {"read_problems", st.read_problems},
                      {"rounds_skipped", st.rounds_skipped},
                      {"lines_collected", st.lines_collected},
                      {"lines_stored", st.lines_stored}};
      return out;
    },
  };
}

} // namespace fleetd
