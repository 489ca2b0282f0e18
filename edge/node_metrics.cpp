#include "edge/node_metrics.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <functional>
#include <map>
#include <system_error>
#include <tuple>
#include <utility>

#include "messages/error.hpp"
#include "runtime/config_check.hpp"
#include "runtime/options.hpp"
#include "runtime/text.hpp"

namespace fleetd {

namespace {

// USER_HZ: the unit of /proc/stat, fixed at 100 for user space on Linux.
constexpr double user_hz = 100.0;

// node_cpu_seconds_total modes in /proc/stat column order, then guest's.
constexpr const char* cpu_modes[] = {"user", "nice",    "system", "idle",
                                     "iowait", "irq", "softirq", "steal"};

// /proc/net/dev's columns as node_exporter names them.
constexpr const char* netdev_names[] = {
  "node_network_receive_bytes_total",      "node_network_receive_packets_total",
  "node_network_receive_errs_total",       "node_network_receive_drop_total",
  "node_network_receive_fifo_total",       "node_network_receive_frame_total",
  "node_network_receive_compressed_total", "node_network_receive_multicast_total",
  "node_network_transmit_bytes_total",     "node_network_transmit_packets_total",
  "node_network_transmit_errs_total",      "node_network_transmit_drop_total",
  "node_network_transmit_fifo_total",      "node_network_transmit_colls_total",
  "node_network_transmit_carrier_total",   "node_network_transmit_compressed_total"};

// /proc/diskstats' columns after the name: the metric, and the factor and
// divisor to its unit. Divided, not multiplied by 0.001: the nearest double
// to the decimal (node_exporter's product is 1e-16 off, which stores that
// keep decimal digits, e.g. VictoriaMetrics, round away).
struct disk_column {
  const char* name;
  double factor;
  double divisor;
};
constexpr disk_column disk_columns[] = {
  {"node_disk_reads_completed_total", 1, 1},
  {"node_disk_reads_merged_total", 1, 1},
  {"node_disk_read_bytes_total", 512, 1},
  {"node_disk_read_time_seconds_total", 1, 1000},
  {"node_disk_writes_completed_total", 1, 1},
  {"node_disk_writes_merged_total", 1, 1},
  {"node_disk_written_bytes_total", 512, 1},
  {"node_disk_write_time_seconds_total", 1, 1000},
  {"node_disk_io_now", 1, 1},
  {"node_disk_io_time_seconds_total", 1, 1000},
  {"node_disk_io_time_weighted_seconds_total", 1, 1000},
  {"node_disk_discards_completed_total", 1, 1},
  {"node_disk_discards_merged_total", 1, 1},
  {"node_disk_discarded_sectors_total", 1, 1},
  {"node_disk_discard_time_seconds_total", 1, 1000},
  {"node_disk_flush_requests_total", 1, 1},
  {"node_disk_flush_requests_time_seconds_total", 1, 1000}};

// hwmon sensor types node_exporter reads; other files are not sensors.
constexpr std::string_view hwmon_types[] = {
  "vrm",   "beep_enable", "update_interval", "in",     "cpu",
  "fan",   "pwm",         "temp",            "curr",   "power",
  "energy", "humidity",   "intrusion"};

const std::vector<std::string_view> all_collectors = {
  "cpu",      "stat",     "meminfo",      "loadavg", "filesystem",
  "netdev",   "diskstats", "vmstat",      "pressure", "hwmon",
  "thermal_zone", "time", "uname"};

// from_chars, not strtod: locale-independent and needs no terminator.
bool parse_number(std::string_view x, double& out) {
  auto last = x.data() + x.size();
  auto [ptr, err] = std::from_chars(x.data(), last, out);
  return !x.empty() && err == std::errc{} && ptr == last;
}

bool starts_with(std::string_view x, std::string_view prefix) {
  return x.substr(0, prefix.size()) == prefix;
}

// Prometheus metric name characters after the first.
bool valid_name_part(std::string_view x) {
  for (char c : x)
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
          || (c >= '0' && c <= '9')))
      return false;
  return !x.empty();
}

// node_exporter's cleanMetricName: lower case, [^a-z0-9:_] as '_', '_'
// trimmed at both ends.
std::string clean_name(std::string_view x) {
  std::string out;
  for (char c : x) {
    c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == ':'
              || c == '_';
    out += ok ? c : '_';
  }
  auto first = out.find_first_not_of('_');
  if (first == std::string::npos)
    return {};
  auto last = out.find_last_not_of('_');
  return out.substr(first, last - first + 1);
}

// A sysfs value file's text without its newlines (Go's strings.Trim "\n").
std::string_view trim_newlines(std::string_view x) {
  while (!x.empty() && x.front() == '\n')
    x.remove_prefix(1);
  while (!x.empty() && x.back() == '\n')
    x.remove_suffix(1);
  return x;
}

// fstab(5)'s escapes in a mount point that node_exporter undoes.
std::string unescape_mount(std::string_view x) {
  std::string out;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x.substr(i, 4) == "\\040") {
      out += ' ';
      i += 3;
    } else if (x.substr(i, 4) == "\\011") {
      out += '\t';
      i += 3;
    } else {
      out += x[i];
    }
  }
  return out;
}

/// A filter's verdict per name, decided once: device and mount names do
/// not change between rounds, so no pattern runs per round.
class name_filter {
public:
  name_filter() = default;
  name_filter(const std::string& include, const std::string& exclude)
    : include_(include), exclude_(exclude) {
    // nop
  }

  bool accepts(std::string_view name) {
    auto i = verdicts_.find(name);
    if (i != verdicts_.end())
      return i->second;
    std::string key{name};
    // An empty pattern is no filter (as regcomp's "" would match all).
    bool ok = (include_.empty() || include_.matches(key))
              && (exclude_.empty() || !exclude_.matches(key));
    // Hostile churn (a new name every round) must not grow it forever.
    if (verdicts_.size() >= 4 * node_limits::devices)
      verdicts_.clear();
    verdicts_.emplace(std::move(key), ok);
    return ok;
  }

private:
  pattern include_;
  pattern exclude_;
  std::map<std::string, bool, std::less<>> verdicts_;
};

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Entry names of a directory, sorted; false when it cannot be opened.
bool list_dir(const std::string& path, std::vector<std::string>& out,
              size_t cap, bool& truncated) {
  out.clear();
  truncated = false;
  auto* dir = ::opendir(path.c_str());
  if (dir == nullptr)
    return false;
  while (auto* e = ::readdir(dir)) {
    std::string_view name{e->d_name};
    if (name == "." || name == "..")
      continue;
    if (out.size() >= cap) {
      truncated = true;
      break;
    }
    out.emplace_back(name);
  }
  ::closedir(dir);
  std::sort(out.begin(), out.end());
  return true;
}

} // namespace

const std::vector<std::string_view>& node_collectors() {
  return all_collectors;
}

void declare(option_set& opts, node_metrics_config& x) {
  opts.add("collector.enabled", x.enabled, node_defaults::enabled,
           "node_exporter collectors the system collector runs, "
           "comma-separated (names, labels and units as node_exporter "
           "1.5's)");
  opts.add("collector.filesystem.mount-points-exclude", x.mount_points_exclude,
           node_defaults::mount_points_exclude,
           "Mount points the filesystem collector leaves out (POSIX ERE, "
           "unanchored)");
  opts.add("collector.filesystem.fs-types-exclude", x.fs_types_exclude,
           node_defaults::fs_types_exclude,
           "File system types the filesystem collector leaves out (POSIX "
           "ERE, unanchored)");
  opts.add("collector.netdev.device-include", x.netdev_device_include, "",
           "Only network devices matching this (POSIX ERE, unanchored; "
           "empty: all)");
  opts.add("collector.netdev.device-exclude", x.netdev_device_exclude,
           node_defaults::netdev_device_exclude,
           "Network devices left out (POSIX ERE, unanchored; empty: none)");
  opts.add("collector.diskstats.device-exclude", x.diskstats_device_exclude,
           node_defaults::diskstats_device_exclude,
           "Block devices the diskstats collector leaves out (POSIX ERE, "
           "unanchored)");
  opts.add("collector.vmstat.fields", x.vmstat_fields, node_defaults::vmstat_fields,
           "/proc/vmstat fields the vmstat collector reads (POSIX ERE, "
           "unanchored)");
  opts.add("host.rootfs", x.rootfs, "/",
           "Where the host's root file system is mounted: file systems are "
           "measured under it and named without it (e.g. /host/root)");
}

caf::error validate(const node_metrics_config& x) {
  for (auto name : split_list(x.enabled, ',')) {
    if (std::find(all_collectors.begin(), all_collectors.end(), name)
        == all_collectors.end())
      return bad_config("collector.enabled: unknown collector '"
                        + std::string{name} + "' (known: "
                        + node_defaults::enabled + ")");
  }
  for (auto [key, value] :
       {std::pair{"collector.filesystem.mount-points-exclude",
                  &x.mount_points_exclude},
        std::pair{"collector.filesystem.fs-types-exclude", &x.fs_types_exclude},
        std::pair{"collector.netdev.device-include", &x.netdev_device_include},
        std::pair{"collector.netdev.device-exclude", &x.netdev_device_exclude},
        std::pair{"collector.diskstats.device-exclude",
                  &x.diskstats_device_exclude},
        std::pair{"collector.vmstat.fields", &x.vmstat_fields}}) {
    if (value->empty())
      continue;
    if (auto why = pattern_error(*value); !why.empty())
      return bad_config(std::string{key} + ": " + why);
  }
  if (x.rootfs.empty() || x.rootfs.front() != '/')
    return bad_config("host.rootfs: '" + x.rootfs + "' is not an absolute path");
  return caf::none;
}

struct node_metrics_reader::impl {
  explicit impl(node_metrics_config c)
    : cfg(std::move(c)),
      mounts_filter("", cfg.mount_points_exclude),
      fs_types_filter("", cfg.fs_types_exclude),
      netdev_filter(cfg.netdev_device_include, cfg.netdev_device_exclude),
      disk_filter("", cfg.diskstats_device_exclude),
      vmstat_filter(cfg.vmstat_fields.empty() ? std::string{"^$"}
                                              : cfg.vmstat_fields,
                    "") {
    for (auto name : split_list(cfg.enabled, ','))
      for (size_t i = 0; i < all_collectors.size() && i < std::size(on); ++i)
        if (all_collectors[i] == name)
          on[i] = true;
    // rootfs "/" adds nothing in front of a mount point.
    if (cfg.rootfs.size() > 1 && cfg.rootfs.back() == '/')
      cfg.rootfs.pop_back();
  }

  // -- files ----------------------------------------------------------------

  enum class load_status { ok, missing, failed };

  // Whole file into buf (reused between rounds), at most file_bytes; a
  // longer file is cut there and named. /proc files report size 0, so this
  // reads until EOF.
  load_status load(const std::string& path, std::string_view& text,
                   bool quiet_if_missing = false) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      auto missing = errno == ENOENT;
      if (!(missing && quiet_if_missing))
        note(path + ": cannot open: " + std::generic_category().message(errno));
      return missing ? load_status::missing : load_status::failed;
    }
    if (buf.size() < 64 * 1024)
      buf.resize(64 * 1024);
    size_t len = 0;
    bool cut = false;
    for (;;) {
      if (len == buf.size()) {
        if (buf.size() >= node_limits::file_bytes) {
          // One more byte tells a file of exactly the cap from a longer one.
          char probe;
          cut = ::read(fd, &probe, 1) > 0;
          break;
        }
        buf.resize(std::min(buf.size() * 2, node_limits::file_bytes));
      }
      auto n = ::read(fd, buf.data() + len, buf.size() - len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0) {
        note(path + ": read failed: " + std::generic_category().message(errno));
        ::close(fd);
        return load_status::failed;
      }
      if (n == 0)
        break;
      len += static_cast<size_t>(n);
    }
    ::close(fd);
    if (cut) {
      note(path + ": longer than " + std::to_string(node_limits::file_bytes)
           + " bytes, the rest ignored");
      // The last line is likely cut in half: drop it.
      auto nl = std::string_view{buf.data(), len}.rfind('\n');
      len = nl == std::string_view::npos ? 0 : nl + 1;
    }
    text = std::string_view{buf.data(), len};
    return load_status::ok;
  }

  // A small sysfs value file (a number, a name); false when unreadable.
  // A small file (a sysfs value, a udev record) into `out`, at most 64 KiB
  // and never into buf, whose lines may be in use; false when unreadable.
  static bool load_small(const std::string& path, std::string& out) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return false;
    out.clear();
    char chunk[4096];
    ssize_t n = 0;
    while (out.size() < 64 * 1024
           && (n = ::read(fd, chunk, sizeof chunk)) != 0) {
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        break;
      out.append(chunk, static_cast<size_t>(n));
    }
    ::close(fd);
    return n >= 0;
  }

  const std::string& proc(const char* name) {
    path.assign(cfg.proc_root);
    path += '/';
    path += name;
    return path;
  }

  // -- samples --------------------------------------------------------------

  void add(std::string name, double value, label_map labels = {}) {
    metric_sample x;
    x.name = std::move(name);
    x.labels = std::move(labels);
    x.timestamp_ms = now_ms;
    x.value = value;
    out->push_back(std::move(x));
  }

  void note(std::string problem) {
    if (problems != nullptr)
      problems->push_back(std::move(problem));
  }

  void report_malformed(const std::string& where, size_t bad) {
    if (bad > 0)
      note(where + ": skipped " + std::to_string(bad) + " malformed line(s)");
  }

  // -- collectors -----------------------------------------------------------

  enum class verdict { ok, malformed, stop };

  // Loads <proc>/`name` and hands `each` the fields of every line that has
  // some; malformed lines are counted and named with the file.
  template <class F>
  void each_line(const char* name, F each) {
    std::string_view text;
    if (load(proc(name), text) != load_status::ok)
      return;
    auto where = path;
    size_t bad = 0;
    for (auto line : split_lines(text)) {
      auto fields = split_fields(line);
      if (fields.empty())
        continue;
      auto v = each(fields);
      if (v == verdict::stop)
        break;
      bad += v == verdict::malformed ? 1 : 0;
    }
    report_malformed(where, bad);
  }

  // A key's first line in this file (a hostile file repeats lines, which
  // would be one series twice), and at most node_limits::devices keys.
  bool first_time(std::string_view key) {
    if (seen_keys.size() >= node_limits::devices
        || std::find(seen_keys.begin(), seen_keys.end(), key)
             != seen_keys.end())
      return false;
    seen_keys.push_back(key);
    return true;
  }

  // cpu and stat share /proc/stat: read once for both.
  void read_stat(bool cpu, bool stat) {
    std::string_view text;
    if (load(proc("stat"), text) != load_status::ok)
      return;
    auto where = path;
    size_t cpus = 0, bad = 0;
    bool seen[6] = {};
    constexpr const char* stat_keys[] = {"intr",      "ctxt",          "btime",
                                         "processes", "procs_running",
                                         "procs_blocked"};
    constexpr const char* stat_names[] = {
      "node_intr_total",        "node_context_switches_total",
      "node_boot_time_seconds", "node_forks_total",
      "node_procs_running",     "node_procs_blocked"};
    for (auto line : split_lines(text)) {
      auto sp = line.find(' ');
      auto key = line.substr(0, sp);
      if (key.size() > 3 && starts_with(key, "cpu")) {
        if (!cpu)
          continue;
        if (cpus >= node_limits::devices) {
          ++bad;
          continue;
        }
        auto id = key.substr(3);
        double v[10] = {};
        auto fields = split_fields(line);
        // Kernels without steal or guest columns: node_exporter shows 0.
        bool ok = fields.size() >= 5 && valid_name_part(id);
        for (size_t i = 1; ok && i < fields.size() && i <= 10; ++i)
          ok = parse_number(fields[i], v[i - 1]);
        if (!ok) {
          ++bad;
          continue;
        }
        std::string cpu_id{id};
        for (size_t i = 0; i < 8; ++i)
          add("node_cpu_seconds_total", v[i] / user_hz,
              {{"cpu", cpu_id}, {"mode", cpu_modes[i]}});
        // Guest time is also in user and nice; node_exporter shows it apart.
        add("node_cpu_guest_seconds_total", v[8] / user_hz,
            {{"cpu", cpu_id}, {"mode", "user"}});
        add("node_cpu_guest_seconds_total", v[9] / user_hz,
            {{"cpu", cpu_id}, {"mode", "nice"}});
        ++cpus;
        continue;
      }
      if (!stat)
        continue;
      for (size_t i = 0; i < 6; ++i) {
        if (key != stat_keys[i] || seen[i])
          continue;
        auto fields = split_fields(line);
        double v = 0;
        if (fields.size() < 2 || !parse_number(fields[1], v)) {
          ++bad;
          break;
        }
        seen[i] = true;
        add(stat_names[i], v);
      }
    }
    report_malformed(where, bad);
    if (cpu && cpus == 0 && bad == 0)
      note(where + ": no per-cpu lines");
    if (stat)
      for (size_t i = 0; i < 6; ++i)
        if (!seen[i])
          note(where + ": no " + stat_keys[i]);
  }

  void read_meminfo() {
    seen_keys.clear();
    each_line("meminfo", [this](const std::vector<std::string_view>& fields) {
      // "Active(anon): 123 kB" is node_memory_Active_anon_bytes.
      auto key = fields[0];
      double v = 0;
      if (key.size() < 2 || key.back() != ':'
          || (fields.size() != 2 && fields.size() != 3)
          || !parse_number(fields[1], v) || !first_time(key))
        return verdict::malformed;
      key.remove_suffix(1);
      std::string name = "node_memory_";
      auto open = key.find('(');
      auto close = key.rfind(')');
      if (open != std::string_view::npos && close != std::string_view::npos
          && open < close) {
        name.append(key.substr(0, open)).append("_");
        name.append(key.substr(open + 1, close - open - 1));
        name.append(key.substr(close + 1));
      } else {
        name.append(key);
      }
      if (!valid_name_part(std::string_view{name}.substr(12)))
        return verdict::malformed;
      // Any unit is kB (KiB) in meminfo; unitless fields are counts.
      if (fields.size() == 3) {
        v *= 1024;
        name += "_bytes";
      }
      add(std::move(name), v);
      return verdict::ok;
    });
  }

  void read_loadavg() {
    std::string_view text;
    if (load(proc("loadavg"), text) != load_status::ok)
      return;
    // "0.52 0.58 0.59 2/1234 56789": three averages, running/total, last pid.
    auto fields = split_fields(text.substr(0, text.find('\n')));
    double v[3];
    bool ok = fields.size() >= 3 && parse_number(fields[0], v[0])
              && parse_number(fields[1], v[1]) && parse_number(fields[2], v[2]);
    if (!ok) {
      report_malformed(path, 1);
      return;
    }
    add("node_load1", v[0]);
    add("node_load5", v[1]);
    add("node_load15", v[2]);
  }

  void read_filesystem() {
    std::string_view text;
    // PID 1's mounts are the host's when /proc is; /proc/mounts is the
    // fallback (hidepid), as node_exporter's.
    auto status = load(proc("1/mounts"), text, true);
    if (status == load_status::missing)
      status = load(proc("mounts"), text);
    if (status != load_status::ok)
      return;
    auto where = path;
    size_t bad = 0, n = 0;
    seen_mounts.clear();
    for (auto line : split_lines(text)) {
      auto fields = split_fields(line);
      if (fields.empty())
        continue;
      if (fields.size() < 4) {
        ++bad;
        continue;
      }
      if (++n > node_limits::mounts) {
        note(where + ": more than " + std::to_string(node_limits::mounts)
             + " mounts, the rest ignored");
        break;
      }
      auto device = fields[0], raw_mp = fields[1], fstype = fields[2];
      if (!fs_types_filter.accepts(fstype))
        continue;
      auto mp = unescape_mount(raw_mp);
      // node_exporter's rootfsStripPrefix.
      if (cfg.rootfs.size() > 1 && starts_with(mp, cfg.rootfs)) {
        mp.erase(0, cfg.rootfs.size());
        if (mp.empty())
          mp = "/";
      }
      if (!mounts_filter.accepts(mp))
        continue;
      // A mount seen twice (bind mounts, stacked mounts) is one series.
      auto key = std::make_tuple(device, raw_mp, fstype);
      if (std::find(seen_mounts.begin(), seen_mounts.end(), key)
          != seen_mounts.end())
        continue;
      seen_mounts.push_back(key);
      label_map labels{{"device", std::string{device}},
                       {"fstype", std::string{fstype}},
                       {"mountpoint", mp}};
      auto target = cfg.rootfs.size() > 1 ? cfg.rootfs + mp : mp;
      struct statfs fs {};
      if (::statfs(target.c_str(), &fs) != 0) {
        add("node_filesystem_device_error", 1, std::move(labels));
        continue;
      }
      bool ro = false;
      for (auto opt : split_list(fields[3], ','))
        ro = ro || opt == "ro";
      // node_exporter multiplies by f_bsize (statfs), not f_frsize.
      auto block = static_cast<double>(fs.f_bsize);
      add("node_filesystem_device_error", 0, labels);
      add("node_filesystem_size_bytes", block * fs.f_blocks, labels);
      add("node_filesystem_free_bytes", block * fs.f_bfree, labels);
      add("node_filesystem_avail_bytes", block * fs.f_bavail, labels);
      add("node_filesystem_files", static_cast<double>(fs.f_files), labels);
      add("node_filesystem_files_free", static_cast<double>(fs.f_ffree),
          labels);
      add("node_filesystem_readonly", ro ? 1 : 0, std::move(labels));
    }
    report_malformed(where, bad);
  }

  void read_netdev() {
    std::string_view text;
    if (load(proc("net/dev"), text) != load_status::ok)
      return;
    auto where = path;
    size_t bad = 0, n = 0;
    for (auto line : split_lines(text)) {
      // The two header lines have no colon; every interface line does.
      auto colon = line.find(':');
      if (colon == std::string_view::npos)
        continue;
      auto device = trim(line.substr(0, colon));
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
      if (++n > node_limits::devices) {
        note(where + ": more than " + std::to_string(node_limits::devices)
             + " devices, the rest ignored");
        break;
      }
      if (!netdev_filter.accepts(device))
        continue;
      std::string dev{device};
      for (size_t i = 0; i < 16; ++i)
        add(netdev_names[i], v[i], {{"device", dev}});
    }
    report_malformed(where, bad);
  }

  // udev's labels of a block device, read once: they do not change.
  const label_map& disk_info(std::string_view device, std::string_view major,
                             std::string_view minor) {
    auto i = disk_infos.find(device);
    if (i != disk_infos.end())
      return i->second;
    if (disk_infos.size() >= node_limits::devices)
      disk_infos.clear();
    label_map labels{{"device", std::string{device}},
                     {"major", std::string{major}},
                     {"minor", std::string{minor}}};
    std::string body;
    auto file = cfg.udev_data + "/b" + std::string{major} + ":"
                + std::string{minor};
    // A missing udev database (containers) leaves the labels empty.
    if (load_small(file, body)) {
      std::map<std::string_view, std::string_view> props;
      for (auto line : split_lines(body))
        if (starts_with(line, "E:")) {
          auto eq = line.find('=');
          if (eq != std::string_view::npos)
            props[line.substr(2, eq - 2)] = line.substr(eq + 1);
        }
      auto put = [&](const char* label, std::string_view value) {
        // An empty label is no label (Prometheus).
        if (!value.empty())
          labels[label] = printable(value, 256);
      };
      put("path", props["ID_PATH"]);
      put("wwn", props["ID_WWN"]);
      put("model", props["ID_MODEL"]);
      auto serial = props.count("SCSI_IDENT_SERIAL")
                      ? props["SCSI_IDENT_SERIAL"]
                      : props["ID_SERIAL_SHORT"];
      put("serial", serial);
      put("revision", props["ID_REVISION"]);
    }
    return disk_infos.emplace(std::string{device}, std::move(labels))
      .first->second;
  }

  void read_diskstats() {
    size_t n = 0;
    each_line("diskstats", [this, &n](const std::vector<std::string_view>& fields) {
      double v[17];
      bool ok = fields.size() >= 3 + 11 && valid_name_part(fields[0])
                && valid_name_part(fields[1]);
      auto columns = ok ? std::min(fields.size() - 3, std::size(v)) : 0;
      for (size_t i = 0; ok && i < columns; ++i)
        ok = parse_number(fields[3 + i], v[i]);
      if (!ok)
        return verdict::malformed;
      if (++n > node_limits::devices) {
        note(cfg.proc_root + "/diskstats: more than "
             + std::to_string(node_limits::devices)
             + " devices, the rest ignored");
        return verdict::stop;
      }
      auto device = fields[2];
      if (!disk_filter.accepts(device))
        return verdict::ok;
      add("node_disk_info", 1, disk_info(device, fields[0], fields[1]));
      std::string dev{device};
      for (size_t i = 0; i < columns; ++i)
        add(disk_columns[i].name,
            v[i] * disk_columns[i].factor / disk_columns[i].divisor,
            {{"device", dev}});
      return verdict::ok;
    });
  }

  void read_vmstat() {
    seen_keys.clear();
    each_line("vmstat", [this](const std::vector<std::string_view>& fields) {
      double v = 0;
      if (fields.size() != 2 || !valid_name_part(fields[0])
          || !parse_number(fields[1], v))
        return verdict::malformed;
      if (vmstat_filter.accepts(fields[0]) && first_time(fields[0]))
        add("node_vmstat_" + std::string{fields[0]}, v);
      return verdict::ok;
    });
  }

  void read_pressure() {
    // Kernels before 4.20 or without CONFIG_PSI have none: not a problem.
    struct resource {
      const char* file;
      const char* some;
      const char* full;
    };
    for (auto r : {resource{"pressure/cpu", "node_pressure_cpu_waiting_seconds_total", nullptr},
                   resource{"pressure/io", "node_pressure_io_waiting_seconds_total",
                            "node_pressure_io_stalled_seconds_total"},
                   resource{"pressure/memory",
                            "node_pressure_memory_waiting_seconds_total",
                            "node_pressure_memory_stalled_seconds_total"}}) {
      std::string_view text;
      auto status = load(proc(r.file), text, true);
      if (status == load_status::missing)
        return;
      if (status != load_status::ok)
        continue;
      size_t bad = 0;
      for (auto line : split_lines(text)) {
        auto fields = split_fields(line);
        if (fields.empty())
          continue;
        const char* name = fields[0] == "some"   ? r.some
                           : fields[0] == "full" ? r.full
                                                 : nullptr;
        double total = 0;
        bool ok = fields.size() == 5 && starts_with(fields[4], "total=")
                  && parse_number(fields[4].substr(6), total);
        if (!ok) {
          ++bad;
          continue;
        }
        // Totals are microseconds.
        if (name != nullptr)
          add(name, total / 1e6);
      }
      report_malformed(path, bad);
    }
  }

  struct hwmon_sensor {
    std::string type;
    std::map<std::string, std::string> props; // property -> value text
  };

  // node_exporter's explodeSensorFilename: <type><num>_<property>.
  static bool explode_sensor(std::string_view file, std::string_view& type,
                             std::string& sensor, std::string_view& prop) {
    auto digits = file.find_first_of("0123456789");
    type = file.substr(0, digits);
    if (type.empty())
      return false;
    std::string_view num;
    std::string_view rest;
    if (digits != std::string_view::npos) {
      auto end = file.find_first_not_of("0123456789", digits);
      num = file.substr(digits, end - digits);
      rest = end == std::string_view::npos ? std::string_view{}
                                           : file.substr(end);
    }
    if (!rest.empty() && (rest.size() < 2 || rest.front() != '_'))
      return false;
    prop = rest.empty() ? rest : rest.substr(1);
    int n = 0;
    if (!num.empty()) {
      auto [ptr, err] = std::from_chars(num.data(), num.data() + num.size(), n);
      if (err != std::errc{})
        return false;
    }
    sensor.assign(type).append(std::to_string(n));
    return true;
  }

  void collect_sensor_files(const std::string& dir,
                            std::map<std::string, hwmon_sensor>& sensors) {
    bool truncated = false;
    if (!list_dir(dir, entries, node_limits::hwmon_files, truncated))
      return;
    if (truncated)
      note(dir + ": more than " + std::to_string(node_limits::hwmon_files)
           + " files, the rest ignored");
    std::string value;
    for (auto& file : entries) {
      std::string_view type, prop;
      std::string sensor;
      if (!explode_sensor(file, type, sensor, prop))
        continue;
      if (std::find(std::begin(hwmon_types), std::end(hwmon_types), type)
          == std::end(hwmon_types))
        continue;
      if (!load_small(dir + "/" + file, value))
        continue;
      auto& s = sensors[sensor];
      s.type = std::string{type};
      s.props[std::string{prop}] = std::string{trim_newlines(value)};
    }
  }

  // node_exporter's hwmonName: the device's bus and name, else the name
  // file, else the hwmonN directory's own name.
  std::string hwmon_chip(const std::string& dir) {
    char real[4096];
    if (::realpath((dir + "/device").c_str(), real) != nullptr) {
      std::string_view p{real};
      auto slash = p.rfind('/');
      auto dev_name = clean_name(p.substr(slash + 1));
      auto parent = p.substr(0, slash);
      auto dev_type = clean_name(parent.substr(parent.rfind('/') + 1));
      if (!dev_type.empty() && !dev_name.empty())
        return dev_type + "_" + dev_name;
      if (!dev_name.empty())
        return dev_name;
    }
    std::string name;
    if (load_small(dir + "/name", name) && !clean_name(name).empty())
      return clean_name(name);
    if (::realpath(dir.c_str(), real) != nullptr) {
      std::string_view p{real};
      return clean_name(p.substr(p.rfind('/') + 1));
    }
    return {};
  }

  void emit_sensor(const std::string& chip, const std::string& sensor,
                   const hwmon_sensor& s) {
    auto labels = [&] { return label_map{{"chip", chip}, {"sensor", sensor}}; };
    auto& type = s.type;
    if (auto l = s.props.find("label"); l != s.props.end())
      add("node_hwmon_sensor_label", 1,
          {{"chip", chip}, {"sensor", sensor}, {"label", printable(l->second, 256)}});
    auto plain = s.props.find("");
    double v = 0;
    if (type == "beep_enable") {
      add("node_hwmon_beep_enabled",
          plain != s.props.end() && plain->second == "1" ? 1 : 0, labels());
      return;
    }
    if (type == "vrm" || type == "update_interval") {
      if (plain != s.props.end() && parse_number(plain->second, v))
        add(type == "vrm" ? "node_hwmon_voltage_regulator_version"
                          : "node_hwmon_update_interval_seconds",
            type == "vrm" ? v : v / 1000, labels());
      return;
    }
    auto prefix = "node_hwmon_" + type;
    for (auto& [element, text] : s.props) {
      if (element == "label" || !parse_number(text, v))
        continue;
      auto name = prefix;
      if (element == "input") {
        if (plain != s.props.end())
          name += "_input";
      } else if (!element.empty()) {
        name += "_" + clean_name(element);
      }
      if (element == "fault" || element == "alarm")
        add(name, v, labels());
      else if (element == "beep")
        add(name + "_enabled", v, labels());
      else if (type == "in" || type == "cpu")
        add(name + "_volts", v / 1000, labels());
      else if (type == "temp" && element != "type")
        add(name + "_celsius", v / 1000, labels());
      else if (type == "curr")
        add(name + "_amps", v / 1000, labels());
      else if (type == "energy")
        add(name + "_joule_total", v / 1e6, labels());
      else if (type == "power" && element == "accuracy")
        add(name, v / 1e6, labels());
      else if (type == "power"
               && (element == "average_interval"
                   || element == "average_interval_min"
                   || element == "average_interval_max"))
        add(name + "_seconds", v / 1000, labels());
      else if (type == "power")
        add(name + "_watt", v / 1e6, labels());
      else if (type == "humidity")
        add(name, v / 1e6, labels());
      else if (type == "fan"
               && (element == "input" || element == "min" || element == "max"
                   || element == "target"))
        add(name + "_rpm", v, labels());
      else
        add(name, v, labels());
    }
  }

  void read_hwmon() {
    auto root = cfg.sys_root + "/class/hwmon";
    std::vector<std::string> chips;
    bool truncated = false;
    // No hwmon class (VMs, containers): nothing to read, not a problem.
    if (!list_dir(root, chips, node_limits::hwmon_chips, truncated))
      return;
    if (truncated)
      note(root + ": more than " + std::to_string(node_limits::hwmon_chips)
           + " chips, the rest ignored");
    std::map<std::string, hwmon_sensor> sensors;
    for (auto& entry : chips) {
      auto dir = root + "/" + entry;
      if (!is_directory(dir))
        continue;
      auto chip = hwmon_chip(dir);
      if (chip.empty())
        continue;
      sensors.clear();
      collect_sensor_files(dir, sensors);
      if (is_directory(dir + "/device"))
        collect_sensor_files(dir + "/device", sensors);
      std::string name;
      if (load_small(dir + "/name", name) && !clean_name(name).empty())
        add("node_hwmon_chip_names", 1,
            {{"chip", chip}, {"chip_name", clean_name(name)}});
      for (auto& [sensor, s] : sensors)
        emit_sensor(chip, sensor, s);
    }
  }

  // Entries of `root` named <prefix><number>, with the number.
  void numbered(const std::string& root, std::string_view prefix,
                std::vector<std::pair<std::string, std::string>>& out) {
    out.clear();
    bool truncated = false;
    if (!list_dir(root, entries, 4 * node_limits::thermal_zones, truncated))
      return;
    for (auto& e : entries) {
      auto num = std::string_view{e}.substr(
        std::min(prefix.size(), e.size()));
      if (!starts_with(e, prefix) || num.empty()
          || num.find_first_not_of("0123456789") != std::string_view::npos)
        continue;
      if (out.size() >= node_limits::thermal_zones) {
        note(root + ": more than " + std::to_string(node_limits::thermal_zones)
             + " " + std::string{prefix} + " entries, the rest ignored");
        break;
      }
      out.emplace_back(e, std::string{num});
    }
  }

  void read_thermal_zone() {
    auto root = cfg.sys_root + "/class/thermal";
    std::vector<std::pair<std::string, std::string>> items;
    std::string type, value;
    double v = 0, max = 0;
    numbered(root, "thermal_zone", items);
    for (auto& [dir, zone] : items) {
      auto base = root + "/" + dir;
      if (!load_small(base + "/type", type) || !load_small(base + "/temp", value)
          || !parse_number(trim_newlines(value), v))
        continue;
      add("node_thermal_zone_temp", v / 1000,
          {{"type", std::string{trim_newlines(type)}}, {"zone", zone}});
    }
    numbered(root, "cooling_device", items);
    for (auto& [dir, name] : items) {
      auto base = root + "/" + dir;
      std::string max_text;
      if (!load_small(base + "/type", type)
          || !load_small(base + "/cur_state", value)
          || !load_small(base + "/max_state", max_text)
          || !parse_number(trim_newlines(value), v)
          || !parse_number(trim_newlines(max_text), max))
        continue;
      label_map labels{{"name", name}, {"type", std::string{trim_newlines(type)}}};
      add("node_cooling_device_cur_state", v, labels);
      add("node_cooling_device_max_state", max, std::move(labels));
    }
  }

  void read_time() {
    add("node_time_seconds", static_cast<double>(now_ms) / 1000);
    std::time_t t = static_cast<std::time_t>(now_ms / 1000);
    std::tm tm{};
    if (::localtime_r(&t, &tm) != nullptr && tm.tm_zone != nullptr)
      add("node_time_zone_offset_seconds", static_cast<double>(tm.tm_gmtoff),
          {{"time_zone", tm.tm_zone}});
    auto root = cfg.sys_root + "/devices/system/clocksource";
    std::vector<std::pair<std::string, std::string>> items;
    numbered(root, "clocksource", items);
    std::string text;
    for (auto& [dir, device] : items) {
      auto base = root + "/" + dir;
      if (load_small(base + "/available_clocksource", text))
        for (auto source : split_fields(trim_newlines(text)))
          add("node_time_clocksource_available_info", 1,
              {{"clocksource", std::string{source}}, {"device", device}});
      if (load_small(base + "/current_clocksource", text))
        add("node_time_clocksource_current_info", 1,
            {{"clocksource", std::string{trim(trim_newlines(text))}},
             {"device", device}});
    }
  }

  void read_uname() {
    struct utsname u {};
    if (::uname(&u) != 0) {
      note("uname failed: " + std::generic_category().message(errno));
      return;
    }
    add("node_uname_info", 1,
        {{"domainname", u.domainname},
         {"machine", u.machine},
         {"nodename", u.nodename},
         {"release", u.release},
         {"sysname", u.sysname},
         {"version", u.version}});
  }

  // cpu and stat share one read of /proc/stat, made by the first enabled.
  void read_cpu() {
    read_stat(true, on[1]);
  }

  void read_stat_alone() {
    if (!on[0])
      read_stat(false, true);
  }

  // The reader of each collector, in all_collectors' order.
  using collector_fn = void (impl::*)();
  static constexpr collector_fn readers[] = {
    &impl::read_cpu,       &impl::read_stat_alone, &impl::read_meminfo,
    &impl::read_loadavg,   &impl::read_filesystem, &impl::read_netdev,
    &impl::read_diskstats, &impl::read_vmstat,     &impl::read_pressure,
    &impl::read_hwmon,     &impl::read_thermal_zone, &impl::read_time,
    &impl::read_uname};

  void read(int64_t now, metric_samples& samples,
            std::vector<std::string>* probs) {
    now_ms = now;
    out = &samples;
    problems = probs;
    for (size_t i = 0; i < std::size(readers); ++i)
      if (on[i])
        (this->*readers[i])();
    out = nullptr;
    problems = nullptr;
  }

  node_metrics_config cfg;
  // Whether each collector runs, in all_collectors' order.
  bool on[std::size(readers)] = {};
  name_filter mounts_filter, fs_types_filter, netdev_filter, disk_filter,
    vmstat_filter;
  std::map<std::string, label_map, std::less<>> disk_infos;
  // Reused between rounds: no allocation once they are large enough.
  std::string buf;
  std::string path;
  std::vector<std::string> entries;
  std::vector<std::string_view> seen_keys;
  std::vector<std::tuple<std::string_view, std::string_view, std::string_view>>
    seen_mounts;
  // The round being read.
  int64_t now_ms = 0;
  metric_samples* out = nullptr;
  std::vector<std::string>* problems = nullptr;
};

node_metrics_reader::node_metrics_reader(node_metrics_config cfg)
  : impl_(std::make_unique<impl>(std::move(cfg))) {
  // nop
}

node_metrics_reader::~node_metrics_reader() = default;

void node_metrics_reader::read(int64_t now_ms, metric_samples& out,
                               std::vector<std::string>* problems) {
  impl_->read(now_ms, out, problems);
}

metric_samples read_system_metrics(const node_metrics_config& cfg,
                                   int64_t now_ms,
                                   std::vector<std::string>* problems) {
  metric_samples out;
  node_metrics_reader{cfg}.read(now_ms, out, problems);
  return out;
}

} // namespace fleetd
