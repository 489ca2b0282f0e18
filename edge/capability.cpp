#include "edge/capability.hpp"

#include "runtime/json.hpp"
#include "runtime/options.hpp"
#include "runtime/text.hpp"

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <algorithm>
#include <sstream>
#include <string_view>
#include <system_error>
#include <utility>

#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "runtime/config_check.hpp"
#include "runtime/logger.hpp"
#include "runtime/result.hpp"

namespace fleetd {

namespace {

constexpr const char* component = "capability";

// The tier table's thresholds (docs/architecture.md section 5), decimal units (1 GB = 1e9 bytes).
constexpr int64_t kilo = 1000;
constexpr int64_t mega = kilo * kilo;
constexpr int64_t giga = kilo * mega;
constexpr int64_t tier1_disk = 1 * giga;
constexpr int64_t tier1_ram = 512 * mega;
constexpr int64_t tier2_disk = 10 * mega;
constexpr int64_t tier2_ram = 100 * mega;

constexpr int64_t minute_ms = 60 * 1000;
constexpr int64_t day_ms = 24 * 60 * minute_ms;

// -- parsing (the same rules as edge/system_collector) ------------------------

bool parse_int(std::string_view x, int64_t& out) {
  auto last = x.data() + x.size();
  auto [ptr, err] = std::from_chars(x.data(), last, out);
  return !x.empty() && err == std::errc{} && ptr == last;
}

caf::error io_error(const std::string& what) {
  return make_error(ec::io_error, what);
}

/// /proc files we read are a few kB; a bigger one is not what we expect.
constexpr size_t max_proc_file = 1 << 20;
/// cgroup limit files hold one short line.
constexpr size_t max_cgroup_file = 4096;

/// At most `max` bytes of a file into `text`; the error names the path.
caf::error load(const std::string& path, std::string& text,
                size_t max = max_proc_file) {
  std::ifstream in{path};
  if (!in)
    return io_error(path + ": cannot open: "
                    + std::generic_category().message(errno));
  // Grown as read, not sized to the cap: 1 MiB zeroed per file each recheck
  // stayed resident in the heap (and raised glibc's mmap threshold).
  text.clear();
  char chunk[4096];
  while (in.read(chunk, sizeof(chunk)) || in.gcount() > 0) {
    text.append(chunk, static_cast<size_t>(in.gcount()));
    if (text.size() > max)
      return io_error(path + ": larger than " + std::to_string(max)
                      + " bytes");
  }
  if (in.bad())
    return io_error(path + ": read failed");
  return caf::none;
}

/// MemTotal and MemAvailable in bytes.
caf::error read_meminfo(const std::string& proc_root, hardware& hw) {
  auto path = proc_root + "/meminfo";
  std::string text;
  if (auto err = load(path, text))
    return err;
  std::map<std::string_view, int64_t, std::less<>> bytes;
  for (auto line : split_lines(text)) {
    auto colon = line.find(':');
    if (colon == std::string_view::npos)
      continue;
    auto key = trim(line.substr(0, colon));
    if (key != "MemTotal" && key != "MemAvailable" && key != "MemFree"
        && key != "Buffers" && key != "Cached")
      continue;
    auto fields = split_fields(line.substr(colon + 1));
    int64_t value = 0;
    if (fields.empty() || !parse_int(fields[0], value) || value < 0)
      return io_error(path + ": " + std::string{key} + ": cannot read '"
                      + std::string{trim(line.substr(colon + 1))} + "'");
    // Every field we read is in kB (KiB) in meminfo.
    if (fields.size() > 1 && fields[1] == "kB") {
      if (value > std::numeric_limits<int64_t>::max() / 1024)
        return io_error(path + ": " + std::string{key} + ": too large");
      value *= 1024;
    }
    bytes[key] = value;
  }
  auto get = [&](const char* key) -> std::optional<int64_t> {
    auto i = bytes.find(std::string_view{key});
    if (i == bytes.end())
      return std::nullopt;
    return i->second;
  };
  auto total = get("MemTotal");
  if (!total)
    return io_error(path + ": no MemTotal");
  hw.total_ram = *total;
  if (auto avail = get("MemAvailable")) {
    hw.available_ram = *avail;
    return caf::none;
  }
  // Before Linux 3.14: what `free` showed as free + buffers/cache.
  auto free = get("MemFree");
  if (!free)
    return io_error(path + ": neither MemAvailable nor MemFree");
  hw.available_ram = *free + get("Buffers").value_or(0)
                     + get("Cached").value_or(0);
  return caf::none;
}

/// Number of "cpuN" lines (online CPUs); sysconf when there are none.
int64_t read_cpu_cores(const std::string& proc_root) {
  std::string text;
  int64_t cpus = 0;
  // A missing or unreadable stat is no error: sysconf knows the count, too.
  if (auto err = load(proc_root + "/stat", text); !err) {
    for (auto line : split_lines(text)) {
      auto fields = split_fields(line);
      // "cpu " is the sum of the others.
      if (fields.empty() || fields[0].size() <= 3
          || fields[0].substr(0, 3) != "cpu")
        continue;
      int64_t id = 0;
      if (parse_int(fields[0].substr(3), id))
        ++cpus;
    }
  }
  if (cpus > 0)
    return cpus;
  auto n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int64_t>(n) : 1;
}

std::string human_bytes(int64_t x);

// -- cgroup limits (v2 and v1) -------------------------------------------------

/// The process's cgroup paths from `<proc_root>/self/cgroup`: the v2 one
/// ("0::/path") and the v1 ones per controller ("4:memory:/path").
struct cgroup_paths {
  std::optional<std::string> unified;
  std::optional<std::string> memory;
  std::optional<std::string> cpu;
};

bool missing(const std::string& path) {
  return ::access(path.c_str(), F_OK) != 0 && errno == ENOENT;
}

cgroup_paths read_cgroup_paths(const std::string& proc_root,
                               std::vector<std::string>& notes) {
  cgroup_paths out;
  std::string text;
  auto path = proc_root + "/self/cgroup";
  // No such file: no cgroups (an old kernel or a fixture); nothing to say.
  if (missing(path))
    return out;
  if (auto err = load(path, text, max_proc_file)) {
    notes.push_back("cgroup limits ignored: " + render(err));
    return out;
  }
  for (auto line : split_lines(text)) {
    auto first = line.find(':');
    auto second = first == std::string_view::npos
                    ? std::string_view::npos
                    : line.find(':', first + 1);
    if (second == std::string_view::npos)
      continue;
    auto id = line.substr(0, first);
    auto controllers = line.substr(first + 1, second - first - 1);
    std::string cg{trim(line.substr(second + 1))};
    if (id == "0" && controllers.empty()) {
      out.unified = cg;
      continue;
    }
    // "cpu,cpuacct" names several controllers mounted together.
    size_t pos = 0;
    while (pos <= controllers.size()) {
      auto comma = controllers.find(',', pos);
      auto name = controllers.substr(pos, comma == std::string_view::npos
                                            ? std::string_view::npos
                                            : comma - pos);
      if (name == "memory")
        out.memory = cg;
      else if (name == "cpu")
        out.cpu = cg;
      if (comma == std::string_view::npos)
        break;
      pos = comma + 1;
    }
  }
  return out;
}

/// The first line of `<dir><cg>/<file>`, or of `<dir>/<file>` when the
/// process's path is not mounted there (a container without a cgroup
/// namespace sees its own cgroup at the root). Nullopt when neither exists
/// (no limit at this level) or the file is unreadable (noted).
struct limit_file {
  std::string path;
  std::string text;
};

std::optional<limit_file> read_limit_file(const std::string& dir,
                                          const std::string& cg,
                                          const char* file,
                                          std::vector<std::string>& notes) {
  for (auto& path : {dir + cg + "/" + file, dir + "/" + file}) {
    std::string text;
    if (missing(path))
      continue;
    if (auto err = load(path, text, max_cgroup_file)) {
      notes.push_back("cgroup limit ignored: " + render(err));
      return std::nullopt;
    }
    auto lines = split_lines(text);
    return limit_file{path, lines.empty() ? std::string{}
                                          : std::string{trim(lines[0])}};
  }
  return std::nullopt;
}

std::string malformed(const limit_file& x) {
  return "cgroup limit ignored: " + x.path + ": cannot read '"
         + x.text.substr(0, 64) + "'";
}

/// Lowers total and available RAM to the cgroup's memory limit.
void apply_memory_limit(int64_t limit, const std::string& source,
                        hardware& hw) {
  // "max", -1 and v1's page-rounded 2^63 all mean unlimited.
  if (limit <= 0 || limit >= hw.total_ram)
    return;
  hw.notes.push_back("RAM limited to " + human_bytes(limit) + " by " + source
                     + " (host " + human_bytes(hw.total_ram) + ")");
  hw.total_ram = limit;
  hw.available_ram = std::min(hw.available_ram, limit);
}

/// Lowers the CPU count to the cgroup's quota (rounded up: 1.5 CPUs is 2).
void apply_cpu_quota(int64_t quota, int64_t period, const std::string& source,
                     hardware& hw) {
  if (quota <= 0 || period <= 0)
    return;
  auto cpus = std::max<int64_t>(1, quota / period + (quota % period != 0));
  if (cpus >= hw.cpu_cores)
    return;
  hw.notes.push_back("CPU cores limited to " + std::to_string(cpus) + " by "
                     + source + " (quota " + std::to_string(quota) + "/"
                     + std::to_string(period) + ", host "
                     + std::to_string(hw.cpu_cores) + ")");
  hw.cpu_cores = cpus;
}

void read_cgroup_limits(const std::string& proc_root,
                        const std::string& sys_root, hardware& hw) {
  auto paths = read_cgroup_paths(proc_root, hw.notes);
  auto root = sys_root + "/fs/cgroup";
  int64_t value = 0;
  // v1 controllers first: on a hybrid host they hold the limits.
  if (paths.memory) {
    auto dir = root + "/memory";
    if (auto x = read_limit_file(dir, *paths.memory, "memory.limit_in_bytes",
                                 hw.notes)) {
      if (parse_int(x->text, value))
        apply_memory_limit(value, "cgroup v1 " + x->path, hw);
      else
        hw.notes.push_back(malformed(*x));
    }
  } else if (paths.unified) {
    if (auto x = read_limit_file(root, *paths.unified, "memory.max",
                                 hw.notes)) {
      if (parse_int(x->text, value))
        apply_memory_limit(value, "cgroup v2 " + x->path, hw);
      else if (x->text != "max")
        hw.notes.push_back(malformed(*x));
    }
  }
  int64_t period = 0;
  if (paths.cpu) {
    auto dir = root + "/cpu";
    auto quota = read_limit_file(dir, *paths.cpu, "cpu.cfs_quota_us",
                                 hw.notes);
    auto per = read_limit_file(dir, *paths.cpu, "cpu.cfs_period_us",
                               hw.notes);
    if (quota && per) {
      if (!parse_int(quota->text, value))
        hw.notes.push_back(malformed(*quota));
      else if (!parse_int(per->text, period))
        hw.notes.push_back(malformed(*per));
      else
        apply_cpu_quota(value, period, "cgroup v1 " + quota->path, hw);
    }
  } else if (paths.unified) {
    if (auto x = read_limit_file(root, *paths.unified, "cpu.max",
                                 hw.notes)) {
      auto fields = split_fields(x->text);
      if (fields.size() == 2 && fields[0] == "max"
          && parse_int(fields[1], period)) {
        // No quota.
      } else if (fields.size() == 2 && parse_int(fields[0], value)
                 && parse_int(fields[1], period)) {
        apply_cpu_quota(value, period, "cgroup v2 " + x->path, hw);
      } else {
        hw.notes.push_back(malformed(*x));
      }
    }
  }
}

std::string parent_of(const std::string& path) {
  auto end = path.find_last_not_of('/');
  if (end == std::string::npos)
    return "/";
  auto slash = path.find_last_of('/', end);
  if (slash == std::string::npos)
    return ".";
  auto parent = path.substr(0, slash);
  auto trimmed = parent.find_last_not_of('/');
  return trimmed == std::string::npos ? "/" : parent.substr(0, trimmed + 1);
}

/// statvfs of `data_dir`, or of its nearest existing parent.
caf::error read_disk(const std::string& data_dir, hardware& hw) {
  if (data_dir.empty())
    return io_error("data directory: empty path");
  auto path = data_dir;
  struct statvfs fs {};
  while (::statvfs(path.c_str(), &fs) != 0) {
    auto code = errno;
    auto parent = parent_of(path);
    if (code != ENOENT || parent == path)
      return io_error(path + ": statvfs failed: "
                      + std::generic_category().message(code));
    path = std::move(parent);
  }
  // Block counts are in f_frsize units, not f_bsize.
  auto block = static_cast<int64_t>(fs.f_frsize);
  hw.total_disk = block * static_cast<int64_t>(fs.f_blocks);
  hw.available_disk = block * static_cast<int64_t>(fs.f_bavail);
  return caf::none;
}

// -- rendering -----------------------------------------------------------------

/// Decimal units with at most one decimal: "250 GB", "1.5 GB", "512 MB".
std::string human_bytes(int64_t x) {
  static constexpr const char* units[] = {"kB", "MB", "GB", "TB", "PB", "EB"};
  if (x < kilo && x > -kilo)
    return std::to_string(x) + " B";
  auto value = static_cast<double>(x);
  size_t unit = 0;
  value /= kilo;
  // 999.96 would print as "1000.0": move up a unit before rounding does.
  while ((value >= 999.95 || value <= -999.95)
         && unit + 1 < std::size(units)) {
    value /= kilo;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", value);
  std::string out = buf;
  if (out.size() > 2 && out.compare(out.size() - 2, 2, ".0") == 0)
    out.resize(out.size() - 2);
  return out + " " + units[unit];
}

/// "disk 250 GB > 1 GB" or "disk 1 GB is not > 1 GB". When rounding makes
/// the two look equal although they differ, the exact bytes follow.
struct comparison {
  bool passed;
  std::string text;
};

comparison compare(const char* what, int64_t value, int64_t threshold) {
  auto shown = human_bytes(value);
  if (shown == human_bytes(threshold) && value != threshold)
    shown += " (" + std::to_string(value) + " bytes)";
  auto passed = value > threshold;
  return {passed, std::string{what} + " " + shown + (passed ? "" : " is not")
                    + " > " + human_bytes(threshold)};
}

std::string failed_of(const comparison& x, const comparison& y) {
  std::string out;
  for (auto* c : {&x, &y}) {
    if (c->passed)
      continue;
    if (!out.empty())
      out += " and ";
    out += c->text;
  }
  return out;
}

std::string tier_reason(const hardware& hw, int64_t tier) {
  auto d1 = compare("disk", hw.total_disk, tier1_disk);
  auto r1 = compare("RAM", hw.total_ram, tier1_ram);
  auto d2 = compare("disk", hw.total_disk, tier2_disk);
  auto r2 = compare("RAM", hw.total_ram, tier2_ram);
  switch (tier) {
    case 1:
      return "tier 1: " + d1.text + " and " + r1.text;
    case 2:
      return "tier 2: not tier 1 (" + failed_of(d1, r1) + "); " + d2.text
             + " and " + r2.text;
    default:
      return "tier 3: not tier 2 (" + failed_of(d2, r2) + ")";
  }
}

const char* tier_name(int64_t tier) {
  switch (tier) {
    case 1: return "full";
    case 2: return "constrained";
    case 3: return "minimal";
    default: return "unknown";
  }
}

/// The largest whole unit an option would accept: "168h", "5min", "10s".
std::string duration_text(int64_t ms) {
  if (ms > 0 && ms % (60 * minute_ms) == 0)
    return std::to_string(ms / (60 * minute_ms)) + "h";
  if (ms > 0 && ms % minute_ms == 0)
    return std::to_string(ms / minute_ms) + "min";
  if (ms > 0 && ms % 1000 == 0)
    return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

/// Applies one override; `applies` false when the tier has no such setting.
void apply(std::vector<std::string>& reasons, const char* name,
           int64_t& setting, int64_t wanted, bool applies,
           const char* why_not = "") {
  if (!applies) {
    reasons.push_back(std::string{name} + " " + std::to_string(wanted)
                      + " from config ignored: " + why_not);
    return;
  }
  auto derived = setting;
  setting = wanted;
  reasons.push_back(std::string{name} + " " + std::to_string(wanted)
                    + " pinned by config ("
                    + (derived == wanted ? std::string{"same as derived"}
                                         : "derived " + std::to_string(derived))
                    + ")");
}

capability_report fallback_report(const caf::error& err,
                                  const tier_overrides& ov) {
  auto out = derive(hardware{}, ov);
  out.reasons.insert(out.reasons.begin(),
                     "hardware unreadable (" + render(err)
                       + "): assuming none");
  return out;
}

} // namespace

// -- library ---------------------------------------------------------------------

caf::expected<hardware> read_hardware(const std::string& proc_root,
                                      const std::string& data_dir,
                                      const std::string& sys_root) {
  hardware hw;
  if (auto err = read_meminfo(proc_root, hw))
    return err;
  if (auto err = read_disk(data_dir, hw))
    return err;
  hw.cpu_cores = read_cpu_cores(proc_root);
  read_cgroup_limits(proc_root, sys_root, hw);
  return hw;
}

int64_t pick_tier(const hardware& hw) {
  if (hw.total_disk > tier1_disk && hw.total_ram > tier1_ram)
    return 1;
  if (hw.total_disk > tier2_disk && hw.total_ram > tier2_ram)
    return 2;
  return 3;
}

tier_settings defaults_for_tier(int64_t tier) {
  tier_settings x;
  x.tier = tier;
  switch (tier) {
    case 1:
      x.sqlite = true;
      x.storage_bytes = 100 * mega;
      x.memory_points = 0;
      x.retention_ms = 7 * day_ms;
      x.sync_interval_ms = 5 * minute_ms;
      // A 5-min sync of a few hundred series is one batch a stream, so one
      // request: at 1000 it took three (sinks bound their chunks by points).
      x.batch_size = 5000;
      x.zstd_level = 3;
      // A page a round, not a dozen: SD cards and eMMC wear by what is written.
      x.rounds_file = true;
      break;
    case 2:
      // The ring of 1000 metrics is for storage.backend=memory.
      x.sqlite = true;
      x.storage_bytes = 5 * mega;
      x.memory_points = 1000;
      x.retention_ms = 1 * day_ms;
      x.sync_interval_ms = 1 * minute_ms;
      x.batch_size = 100;
      x.zstd_level = 1;
      break;
    default:
      // Memory only: the current reading plus the last 10 per series.
      x.tier = 3;
      x.sqlite = false;
      x.storage_bytes = 0;
      x.memory_points = 10;
      x.retention_ms = 0;
      x.sync_interval_ms = 10 * 1000;
      x.batch_size = 10;
      x.zstd_level = 0;
      break;
  }
  return x;
}

capability_report derive(const hardware& hw, const tier_overrides& ov) {
  capability_report out;
  out.hw = hw;
  out.detected_tier = pick_tier(hw);
  auto& reasons = out.reasons;
  reasons.push_back(tier_reason(hw, out.detected_tier));
  reasons.insert(reasons.end(), hw.notes.begin(), hw.notes.end());
  auto tier = out.detected_tier;
  if (ov.tier >= 1 && ov.tier <= 3) {
    tier = ov.tier;
    reasons.push_back("tier " + std::to_string(tier) + " pinned by config ("
                      + (tier == out.detected_tier
                           ? std::string{"same as detected"}
                           : "detected tier "
                               + std::to_string(out.detected_tier))
                      + ")");
  } else if (ov.tier != 0) {
    reasons.push_back("tier " + std::to_string(ov.tier)
                      + " from config ignored: must be 1, 2 or 3 "
                        "(0 detects)");
  }
  auto& s = out.settings;
  s = defaults_for_tier(tier);
  if (ov.backend == "memory" && s.sqlite) {
    s.sqlite = false;
    // A ring of points, as big as tier 2's.
    s.memory_points = std::max<int64_t>(s.memory_points, 1000);
    reasons.push_back("storage.backend=memory: readings stay in memory, "
                      "nothing survives a restart");
  } else if (ov.backend == "sqlite" && !s.sqlite) {
    s.sqlite = true;
    reasons.push_back("storage.backend=sqlite: an SQLite store on tier "
                      + std::to_string(tier));
  }
  constexpr const char* no_store = "tier 3 keeps no SQLite store";
  if (ov.storage_bytes > 0)
    apply(reasons, "storage_bytes", s.storage_bytes, ov.storage_bytes,
          s.sqlite, no_store);
  if (ov.retention.count() > 0)
    apply(reasons, "retention_ms", s.retention_ms, ov.retention.count(),
          s.sqlite, no_store);
  if (ov.sync_interval.count() > 0)
    apply(reasons, "sync_interval_ms", s.sync_interval_ms,
          ov.sync_interval.count(), true);
  if (ov.batch_size > 0)
    apply(reasons, "batch_size", s.batch_size, ov.batch_size, true);
  if (ov.zstd_level >= 0)
    apply(reasons, "zstd_level", s.zstd_level, ov.zstd_level, true);
  if (ov.rounds_file != "auto") {
    auto on = ov.rounds_file == "true";
    if (!s.sqlite)
      reasons.push_back("storage.rounds-file=" + ov.rounds_file
                        + " ignored: no SQLite store");
    else if (on != s.rounds_file)
      reasons.push_back("rounds_file " + std::string(on ? "on" : "off")
                        + " (storage.rounds-file)");
    s.rounds_file = on;
  }
  s.rounds_file = s.rounds_file && s.sqlite;
  if (!ov.store_logs) {
    s.store_logs = false;
    reasons.push_back("storage.store-logs=false: log lines are not kept");
  }
  // The tier looks at the total; the store cannot use more than is free.
  if (s.sqlite && hw.total_disk > 0 && hw.available_disk < s.storage_bytes)
    reasons.push_back("warning: " + human_bytes(hw.available_disk)
                      + " available on the data disk, less than the "
                      + human_bytes(s.storage_bytes) + " storage cap");
  return out;
}

capability_report detect(const std::string& proc_root,
                         const std::string& data_dir,
                         const tier_overrides& ov,
                         const std::string& sys_root) {
  auto hw = read_hardware(proc_root, data_dir, sys_root);
  if (!hw)
    return fallback_report(hw.error(), ov);
  return derive(*hw, ov);
}

bool differs(const capability_report& before, const capability_report& now) {
  return before.detected_tier != now.detected_tier
         || before.settings != now.settings;
}

std::string summary(const capability_report& x) {
  std::string out = "tier " + std::to_string(x.settings.tier) + " "
                    + tier_name(x.settings.tier);
  if (x.settings.tier != x.detected_tier)
    out += " (pinned; detected tier " + std::to_string(x.detected_tier) + ")";
  out += ": ";
  for (size_t i = 0; i < x.reasons.size(); ++i)
    out += (i > 0 ? "; " : "") + x.reasons[i];
  return out;
}

void apply_cloud(capability_report& report, const cloud_settings& cloud) {
  report.cloud = cloud;
  if (cloud.version <= 0)
    return;
  auto& s = report.settings;
  if (cloud.batch_size > 0)
    s.batch_size = cloud.batch_size;
  if (cloud.sync_interval_ms > 0)
    s.sync_interval_ms = cloud.sync_interval_ms;
  if (cloud.retention_ms > 0 && s.retention_ms > 0)
    s.retention_ms = cloud.retention_ms;
  if (cloud.zstd_level >= 0)
    s.zstd_level = cloud.zstd_level;
  report.reasons.push_back("cloud settings version "
                           + std::to_string(cloud.version)
                           + " from the operator apply over the above");
}

std::string describe_change(const capability_report& before,
                            const capability_report& now) {
  std::string out;
  auto field = [&](const char* name, int64_t x, int64_t y) {
    if (x == y)
      return;
    if (!out.empty())
      out += ", ";
    out += std::string{name} + " " + std::to_string(x) + " -> "
           + std::to_string(y);
  };
  auto& x = before.settings;
  auto& y = now.settings;
  field("tier", x.tier, y.tier);
  field("detected_tier", before.detected_tier, now.detected_tier);
  field("sqlite", x.sqlite, y.sqlite);
  field("storage_bytes", x.storage_bytes, y.storage_bytes);
  field("memory_points", x.memory_points, y.memory_points);
  field("retention_ms", x.retention_ms, y.retention_ms);
  field("sync_interval_ms", x.sync_interval_ms, y.sync_interval_ms);
  field("batch_size", x.batch_size, y.batch_size);
  field("zstd_level", x.zstd_level, y.zstd_level);
  field("rounds_file", x.rounds_file, y.rounds_file);
  field("metric_interval_ms", x.metric_interval_ms, y.metric_interval_ms);
  field("store_logs", x.store_logs, y.store_logs);
  if (out.empty())
    out = "no change";
  for (auto& reason : now.reasons)
    out += "; " + reason;
  return out;
}

std::string to_json(const capability_report& x) {
  std::ostringstream out;
  auto& hw = x.hw;
  auto& s = x.settings;
  out << "{\"hardware\":{\"total_ram\":" << hw.total_ram
      << ",\"available_ram\":" << hw.available_ram
      << ",\"total_disk\":" << hw.total_disk
      << ",\"available_disk\":" << hw.available_disk
      << ",\"cpu_cores\":" << hw.cpu_cores << "}"
      << ",\"detected_tier\":" << x.detected_tier
      << ",\"settings\":{\"tier\":" << s.tier
      << ",\"sqlite\":" << (s.sqlite ? "true" : "false")
      << ",\"storage_bytes\":" << s.storage_bytes
      << ",\"memory_points\":" << s.memory_points
      << ",\"retention_ms\":" << s.retention_ms
      << ",\"sync_interval_ms\":" << s.sync_interval_ms
      << ",\"batch_size\":" << s.batch_size
      << ",\"zstd_level\":" << s.zstd_level
      << ",\"rounds_file\":" << (s.rounds_file ? "true" : "false")
      << ",\"metric_interval_ms\":" << s.metric_interval_ms
      << ",\"store_logs\":" << (s.store_logs ? "true" : "false") << "}"
      << ",\"reasons\":[";
  for (size_t i = 0; i < x.reasons.size(); ++i)
    out << (i > 0 ? "," : "") << json_quote(x.reasons[i]);
  out << "]}";
  return out.str();
}

std::string to_text(const capability_report& x) {
  std::ostringstream out;
  auto& hw = x.hw;
  auto& s = x.settings;
  out << "hardware\n"
      << "  RAM          " << human_bytes(hw.total_ram) << " total, "
      << human_bytes(hw.available_ram) << " available\n"
      << "  disk         " << human_bytes(hw.total_disk) << " total, "
      << human_bytes(hw.available_disk)
      << " available (filesystem of the data directory)\n"
      << "  CPU cores    " << hw.cpu_cores << "\n"
      << "tier           " << s.tier << " " << tier_name(s.tier);
  if (s.tier != x.detected_tier)
    out << " (detected " << x.detected_tier << " "
        << tier_name(x.detected_tier) << ")";
  out << "\nsettings\n  storage      ";
  if (s.sqlite) {
    out << "SQLite, cap " << human_bytes(s.storage_bytes) << " ("
        << s.storage_bytes << " bytes); a database that cannot be opened "
        << "stops the node, a corrupt one is salvaged into a fresh file";
  } else if (s.tier == 3) {
    out << "memory only, current + last " << s.memory_points
        << " readings per series";
  } else {
    out << "memory only, a ring of the last " << s.memory_points
        << " points; nothing survives a restart";
  }
  out << "\n  retention    ";
  if (s.retention_ms > 0)
    out << duration_text(s.retention_ms) << " (" << s.retention_ms
        << " ms)";
  else
    out << "last readings only";
  out << "\n  sync every   " << duration_text(s.sync_interval_ms) << " ("
      << s.sync_interval_ms << " ms)\n"
      << "  batch size   " << s.batch_size << " points\n"
      << "  compression  ";
  if (s.zstd_level > 0)
    out << "zstd level " << s.zstd_level;
  else
    out << "none";
  if (s.sqlite)
    out << "\n  rounds file  "
        << (s.rounds_file ? "on: a page a round, acked records kept in "
                            "folded files until retention"
                          : "off: every round commits to the tables");
  if (s.metric_interval_ms > 0)
    out << "\n  metrics      every " << duration_text(s.metric_interval_ms)
        << " (fleetd config set metric_interval)";
  if (!s.store_logs)
    out << "\n  logs         not kept (store_logs false)";
  out << "\nwhy\n";
  for (auto& reason : x.reasons)
    out << "  " << reason << "\n";
  return out.str();
}

// -- actor -----------------------------------------------------------------------

namespace {

void notify(capability_actor::stateful_pointer<capability_state> self) {
  auto& st = self->state;
  for (auto& listener : st.cfg.listeners) {
    // Typed actors may only send() to typed ones; listeners are not.
    caf::anon_send(listener, capabilities_atom::value, *st.current);
    ++st.notifications;
  }
}

void check(capability_actor::stateful_pointer<capability_state> self) {
  auto& st = self->state;
  ++st.checks;
  st.last_check_ms = st.cfg.clock->now_ms();
  auto hw = read_hardware(st.cfg.proc_root, st.cfg.data_dir,
                          st.cfg.sys_root);
  capability_report next;
  if (!hw) {
    ++st.read_failures;
    // The same file stays unreadable every check: warn once, then debug.
    if (st.read_failures == 1)
      log_warning(component, "cannot read the hardware: ", render(hw.error()));
    else
      log_debug(component, "cannot read the hardware: ", render(hw.error()));
    // A glitch must not downgrade a device that was fine a minute ago.
    next = st.current ? derive(st.current->hw, st.cfg.overrides)
                      : fallback_report(hw.error(), st.cfg.overrides);
  } else {
    next = derive(*hw, st.cfg.overrides);
  }
  apply_cloud(next, st.cfg.cloud);
  apply_local(next, st.cfg.local);
  if (!st.current) {
    log_info(component, summary(next));
    st.current = std::move(next);
    notify(self);
    return;
  }
  auto changed = differs(*st.current, next);
  // Sync actors report the applied version, even when nothing else moved.
  auto new_cloud = st.current->cloud.version != next.cloud.version;
  auto before = std::move(*st.current);
  // Keep the fresh readings for the console either way.
  st.current = std::move(next);
  if (!changed) {
    if (new_cloud) {
      log_info(component, "cloud settings version ", st.current->cloud.version,
               " applied: the settings stay as they were");
      notify(self);
    }
    return;
  }
  ++st.changes;
  st.last_change_ms = st.last_check_ms;
  log_info(component, "capabilities changed: ",
           describe_change(before, *st.current));
  notify(self);
  if (st.cfg.on_change)
    st.cfg.on_change(before, *st.current);
}

} // namespace

namespace {

// "5min, 1min, 10s": one setting on tiers 1, 2 and 3 (those that have it).
std::string per_tier(int64_t tiers,
                     const std::function<std::string(const tier_settings&)>& f) {
  std::string out;
  for (int64_t t = 1; t <= tiers; ++t)
    out += (t > 1 ? ", " : "") + f(defaults_for_tier(t));
  return out;
}

std::string ms_text(int64_t ms) {
  return to_duration_text(std::chrono::milliseconds{ms});
}

bool is_directory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

} // namespace

void declare(option_set& opts, capability_config& x) {
  using namespace std::chrono_literals;
  auto& ov = x.overrides;
  opts.add("tier.pin", ov.tier, 0, "tier",
           "Use this tier (1, 2 or 3) instead of detecting it (0: detect)", 0,
           3);
  opts.add("tier.recheck-interval", x.recheck_interval, 1min,
           "How often RAM and disk are read again to re-derive the tier", 1s);
  opts.add("host.proc", x.proc_root, "/proc",
           "Where procfs is mounted: a containerised agent reads the host's "
           "through a bind mount (e.g. /host/proc)");
  opts.add("host.sys", x.sys_root, "/sys",
           "Where sysfs is mounted; the cgroup limits are read under "
           "<host.sys>/fs/cgroup, the system collector's hwmon, thermal "
           "zones and clock sources under it too");
  opts.add("sync.interval", ov.sync_interval, 0s,
           "How often the sync actor looks for new data when idle (0: the tier's: "
             + per_tier(3, [](auto& t) { return ms_text(t.sync_interval_ms); })
             + ")");
  opts.add("sync.batch-size", ov.batch_size, 0, "points",
           "Most points in one batch (0: the tier's: "
             + per_tier(3, [](auto& t) { return std::to_string(t.batch_size); })
             + ")",
           0, 1000000);
  opts.add("sync.zstd-level", ov.zstd_level, -1, "level",
           "zstd level for batches (0: uncompressed, -1: the tier's: "
             + per_tier(3, [](auto& t) { return std::to_string(t.zstd_level); })
             + ")",
           -1, 19);
  opts.add_size("storage.max-bytes", ov.storage_bytes, 0,
                "Cap of the SQLite store (0: the tier's: "
                  + per_tier(2, [](auto& t) {
                      return to_size_text(t.storage_bytes);
                    })
                  + ")");
  opts.add("storage.retention", ov.retention, 0s,
           "Drop metrics older than this (0: the tier's: "
             + per_tier(2, [](auto& t) { return ms_text(t.retention_ms); })
             + ")");
  opts.add_auto_bool("storage.rounds-file", ov.rounds_file,
           "Append each commit of samples and log lines to <database>-rounds "
           "(one synced frame, one 4 KiB page a round, written with O_DIRECT "
           "where the file system takes it) instead of the tables, which "
           "take what is not acked when the file passes 256 KiB; acked "
           "records stay in the folded files until storage.retention. "
           "false = every commit writes the tables (two or more pages, "
           "again when checkpointed); auto = the tier's (on for tier 1)");
  opts.add("storage.store-logs", ov.store_logs, true,
           "Keep the log lines of log.paths and the local ingest (false: "
           "drop them as they arrive; metrics and events are kept)");
  opts.add("storage.backend", ov.backend, "auto",
           "Where readings live: \"sqlite\", \"memory\" (nothing survives a "
           "restart) or \"auto\" (the tier's: SQLite on tiers 1 and 2)");
}

caf::error validate(const capability_config& x) {
  auto& ov = x.overrides;
  if (ov.tier < 0 || ov.tier > 3)
    return bad_config("tier.pin: must be 0, 1, 2 or 3, got "
                      + std::to_string(ov.tier));
  if (x.recheck_interval.count() <= 0)
    return bad_config("tier.recheck-interval: must be positive");
  if (ov.backend != "auto" && ov.backend != "sqlite" && ov.backend != "memory")
    return bad_config("storage.backend: '" + ov.backend
                      + "' is not one of auto, sqlite, memory");
  if (ov.rounds_file != "auto" && ov.rounds_file != "true"
      && ov.rounds_file != "false")
    return bad_config("storage.rounds-file: '" + ov.rounds_file
                      + "' is not one of auto, true, false");
  for (auto [key, path] : {std::pair{"host.proc", &x.proc_root},
                           std::pair{"host.sys", &x.sys_root}})
    if (!is_directory(*path))
      return bad_config(std::string{key} + ": '" + *path
                        + "' is not a directory");
  return caf::none;
}

namespace {

using capability_ptr = capability_actor::stateful_pointer<capability_state>;

// New operator settings from the cloud: persisted first (a restart applies
// what the cloud last said), then applied by a check.
void apply_settings(capability_ptr self, const cloud_settings& x) {
  auto& st = self->state;
  if (x.version <= st.cfg.cloud.version)
    return;
  log_info(component, "cloud settings version ", x.version, " received");
  st.cfg.cloud = x;
  if (st.cfg.storage)
    self->request(st.cfg.storage, std::chrono::seconds(30), config_atom::value,
                  x)
      .then([](bool) {},
            [](caf::error& err) {
              log_warning(component, "cannot persist cloud settings: ",
                          render(err));
            });
  check(self);
}

// `fleetd config set/unset` wrote settings.local: read, applied at once
// (the listeners hear the change), answered with the settings as they are.
caf::expected<debug_report> reload_local(capability_ptr self) {
  auto& st = self->state;
  auto local = load_local_settings(st.cfg.data_dir);
  if (!local)
    return local.error();
  st.cfg.local = std::move(*local);
  log_info(component, "settings of fleetd config set reloaded");
  check(self);
  return config_table(*st.current, st.cfg.overrides, st.cfg.sources,
                      st.cfg.local, "");
}

actor_stats stats_of(const capability_state& st) {
  auto& x = *st.current;
  actor_stats out;
  out.name = capability_state::name;
  out.state = "tier " + std::to_string(x.settings.tier);
  if (x.settings.tier != x.detected_tier)
    out.state += " (pinned; detected " + std::to_string(x.detected_tier) + ")";
  out.counters = {{"tier", x.settings.tier},
                  {"cloud_settings_version", x.cloud.version},
                  {"detected_tier", x.detected_tier},
                  {"checks", st.checks},
                  {"changes", st.changes},
                  {"read_failures", st.read_failures},
                  {"notifications", st.notifications},
                  {"listeners", static_cast<int64_t>(st.cfg.listeners.size())},
                  {"storage_bytes", x.settings.storage_bytes},
                  {"memory_points", x.settings.memory_points},
                  {"retention_ms", x.settings.retention_ms},
                  {"sync_interval_ms", x.settings.sync_interval_ms},
                  {"batch_size", x.settings.batch_size},
                  {"zstd_level", x.settings.zstd_level},
                  {"rounds_file", x.settings.rounds_file ? 1 : 0},
                  {"metric_interval_ms", x.settings.metric_interval_ms},
                  {"store_logs", x.settings.store_logs ? 1 : 0},
                  {"total_ram", x.hw.total_ram},
                  {"available_ram", x.hw.available_ram},
                  {"total_disk", x.hw.total_disk},
                  {"available_disk", x.hw.available_disk},
                  {"cpu_cores", x.hw.cpu_cores},
                  {"last_check_ms", st.last_check_ms},
                  {"last_change_ms", st.last_change_ms}};
  return out;
}

} // namespace

capability_actor::behavior_type
capability(capability_actor::stateful_pointer<capability_state> self,
           capability_config cfg) {
  if (stop_on_bad_config(self, "capability", validate(cfg)))
    return capability_actor::behavior_type::make_empty_behavior();
  if (!cfg.clock)
    cfg.clock = make_system_clock();
  auto& st = self->state;
  st.current = std::move(cfg.initial);
  cfg.initial.reset();
  st.cfg = std::move(cfg);
  // The first check runs now, so every request finds a report.
  check(self);
  self->delayed_send(self, st.cfg.clock->real(st.cfg.recheck_interval),
                     tick_atom::value);
  // A restarted sync actor registers again: its dead incarnation goes.
  self->set_down_handler([self](const caf::down_msg& dm) {
    auto& ls = self->state.cfg.listeners;
    ls.erase(std::remove_if(ls.begin(), ls.end(),
                            [&](const caf::actor& x) {
                              return x.address() == dm.source;
                            }),
             ls.end());
  });
  return {
    [self](tick_atom) {
      // Only our own ticks re-arm the timer; a tick from another actor is
      // one extra check and must not start a second timer chain.
      auto own_tick = self->current_sender() == self->ctrl();
      check(self);
      if (own_tick)
        self->delayed_send(self,
                           self->state.cfg.clock->real(
                             self->state.cfg.recheck_interval),
                           tick_atom::value);
    },
    [self](capabilities_atom) { return *self->state.current; },
    [self](capabilities_atom, const caf::actor& listener) {
      auto& st = self->state;
      self->monitor(listener);
      st.cfg.listeners.push_back(listener);
      caf::anon_send(listener, capabilities_atom::value, *st.current);
      ++st.notifications;
    },
    [self](config_atom, const cloud_settings& x) { apply_settings(self, x); },
    [self](debug_atom,
           const std::string& what) -> caf::result<debug_report> {
      auto& st = self->state;
      if (what == "config reload")
        return to_result(reload_local(self));
      if (what.rfind("config get", 0) == 0) {
        auto key = std::string(trim(std::string_view(what).substr(10)));
        return to_result(config_table(*st.current, st.cfg.overrides,
                                      st.cfg.sources, st.cfg.local, key));
      }
      // What the last check found; `tick` first for a fresh reading.
      if (what != "capabilities")
        return make_error(ec::bad_config, "debug: the capability actor "
                                          "answers 'capabilities', 'config "
                                          "get [KEY]' and 'config reload', "
                                          "not '"
                                            + what + "'");
      auto& x = *st.current;
      return debug_report{to_text(x), to_json(x)};
    },
    [self](stats_atom) { return stats_of(self->state); },
  };
}

} // namespace fleetd
