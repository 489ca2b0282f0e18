#include "edge/local_config.hpp"

#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "edge/capability.hpp"
#include "messages/error.hpp"
#include "runtime/config_check.hpp"
#include "runtime/json.hpp"
#include "runtime/node.hpp"
#include "runtime/options.hpp"
#include "runtime/text.hpp"

namespace fleetd {

namespace {

// The file holds five short lines; anything bigger is not ours.
constexpr int64_t max_file_bytes = 4096;

constexpr const char* keys_text
  = "compression, sync_interval, metric_interval, retention, store_logs";

// The shortest interval a setting takes: faster is a typo, not a setting.
constexpr int64_t min_interval_ms = 10;

caf::error bad_value(const std::string& key, const std::string& value,
                     const std::string& wanted) {
  return bad_config(key + ": '" + printable(value, 64) + "' is not " + wanted);
}

caf::expected<int64_t> parse_interval(const std::string& key,
                                      const std::string& value, int64_t min) {
  auto d = parse_duration(value);
  if (!d || d->count() < min || d->count() > max_setting_ms)
    return bad_value(key, value,
                     "a duration from "
                       + to_duration_text(std::chrono::milliseconds{min})
                       + " to 24855d (e.g. 10m, 60s, 24h)");
  return d->count();
}

// "zstd" (level 3), "zstd:N", "none"/"off" or a level 0..19.
caf::expected<int64_t> parse_compression(const std::string& value) {
  auto wanted = "zstd, zstd:N (N 1..19), none, or a level 0..19";
  if (value == "zstd")
    return int64_t{3};
  if (value == "none" || value == "off")
    return int64_t{0};
  auto digits = value.rfind("zstd:", 0) == 0 ? value.substr(5) : value;
  if (digits.empty() || digits.size() > 2
      || digits.find_first_not_of("0123456789") != std::string::npos)
    return bad_value("compression", value, wanted);
  auto level = std::stoll(digits);
  if (level > max_setting_zstd_level || (value != digits && level == 0))
    return bad_value("compression", value, wanted);
  return level;
}

caf::expected<bool> parse_bool(const std::string& key,
                               const std::string& value) {
  if (value == "true" || value == "on" || value == "yes" || value == "1")
    return true;
  if (value == "false" || value == "off" || value == "no" || value == "0")
    return false;
  return bad_value(key, value, "true or false");
}

caf::error set_one(local_settings& x, const std::string& key,
                   const std::string& value) {
  if (key == "compression") {
    auto v = parse_compression(value);
    if (!v)
      return v.error();
    x.zstd_level = *v;
  } else if (key == "sync_interval" || key == "metric_interval"
             || key == "retention") {
    auto v = parse_interval(key, value,
                            key == "retention" ? 60000 : min_interval_ms);
    if (!v)
      return v.error();
    (key == "sync_interval"     ? x.sync_interval_ms
     : key == "metric_interval" ? x.metric_interval_ms
                                : x.retention_ms)
      = *v;
  } else if (key == "store_logs") {
    auto v = parse_bool(key, value);
    if (!v)
      return v.error();
    x.store_logs = *v;
  } else {
    return bad_config("unknown setting '" + printable(key, 64)
                      + "'; the settings are " + keys_text);
  }
  return caf::none;
}

std::string ms_text(int64_t ms) {
  return to_duration_text(std::chrono::milliseconds{ms});
}

std::string compression_text(int64_t level) {
  return level > 0 ? "zstd:" + std::to_string(level) : "none";
}

// One setting as `config get` shows it.
struct row {
  std::string key;
  std::string value;
  std::string source;
  std::string note;
};

// Where an option's value came from, when the option moved it.
std::string option_source(const std::string& src) {
  return src.empty() ? "flag" : src;
}

} // namespace

std::string local_settings_path(const std::string& data_dir) {
  return data_dir + "/settings.local";
}

caf::expected<local_settings> load_local_settings(const std::string& data_dir) {
  local_settings out;
  auto path = local_settings_path(data_dir);
  struct stat st;
  if (stat(path.c_str(), &st) != 0)
    return out;
  if (!S_ISREG(st.st_mode) || st.st_size > max_file_bytes)
    return bad_config(path + ": not a settings file (a regular file of at most "
                      + std::to_string(max_file_bytes) + " bytes)");
  std::ifstream in(path);
  if (!in)
    return make_error(ec::io_error, "cannot read " + path);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    auto text = trim(line);
    if (text.empty() || text.front() == '#')
      continue;
    auto eq = text.find('=');
    if (eq == std::string_view::npos)
      return bad_config(path + " line " + std::to_string(n)
                        + ": not key = value");
    if (auto err = set_one(out, std::string(trim(text.substr(0, eq))),
                           std::string(trim(text.substr(eq + 1)))))
      return bad_config(path + " line " + std::to_string(n) + ": "
                        + render(err).substr(sizeof("bad_config: ") - 1));
  }
  return out;
}

caf::error save_local_settings(const std::string& data_dir,
                               const local_settings& x) {
  std::ostringstream out;
  out << "# fleetd config set: these win over every other source until "
         "fleetd config unset KEY\n";
  if (x.zstd_level)
    out << "compression = " << compression_text(*x.zstd_level) << "\n";
  if (x.sync_interval_ms)
    out << "sync_interval = " << ms_text(*x.sync_interval_ms) << "\n";
  if (x.metric_interval_ms)
    out << "metric_interval = " << ms_text(*x.metric_interval_ms) << "\n";
  if (x.retention_ms)
    out << "retention = " << ms_text(*x.retention_ms) << "\n";
  if (x.store_logs)
    out << "store_logs = " << (*x.store_logs ? "true" : "false") << "\n";
  return write_file_atomically(local_settings_path(data_dir), out.str(), true);
}

caf::error set_local(local_settings& x, const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos)
    return bad_config("config set: want KEY=VALUE, got '"
                      + printable(assignment, 64) + "'");
  return set_one(x, std::string(trim(assignment.substr(0, eq))),
                 std::string(trim(assignment.substr(eq + 1))));
}

caf::error unset_local(local_settings& x, const std::string& key) {
  if (key == "compression")
    x.zstd_level.reset();
  else if (key == "sync_interval")
    x.sync_interval_ms.reset();
  else if (key == "metric_interval")
    x.metric_interval_ms.reset();
  else if (key == "retention")
    x.retention_ms.reset();
  else if (key == "store_logs")
    x.store_logs.reset();
  else
    return bad_config("unknown setting '" + printable(key, 64)
                      + "'; the settings are " + keys_text);
  return caf::none;
}

void apply_local(capability_report& report, const local_settings& x) {
  auto& s = report.settings;
  bool any = false;
  if (x.zstd_level) {
    s.zstd_level = *x.zstd_level;
    any = true;
  }
  if (x.sync_interval_ms) {
    s.sync_interval_ms = *x.sync_interval_ms;
    any = true;
  }
  if (x.metric_interval_ms) {
    s.metric_interval_ms = *x.metric_interval_ms;
    any = true;
  }
  if (x.retention_ms && s.sqlite) {
    s.retention_ms = *x.retention_ms;
    any = true;
  }
  if (x.store_logs) {
    s.store_logs = *x.store_logs;
    any = true;
  }
  if (any)
    report.reasons.push_back("settings of fleetd config set (settings.local) "
                             "apply over the above");
}

caf::expected<debug_report> config_table(const capability_report& now,
                                         const tier_overrides& ov,
                                         const setting_sources& src,
                                         const local_settings& local,
                                         const std::string& key) {
  auto tier = defaults_for_tier(now.settings.tier);
  auto& cloud = now.cloud;
  bool has_cloud = cloud.version > 0;
  auto tier_note = "tier " + std::to_string(now.settings.tier);
  std::vector<row> rows;
  {
    row r{"compression", compression_text(tier.zstd_level), "tier", tier_note};
    if (ov.zstd_level >= 0)
      r = {r.key, compression_text(ov.zstd_level),
           option_source(src.zstd_level), "sync.zstd-level"};
    if (has_cloud && cloud.zstd_level >= 0)
      r = {r.key, compression_text(cloud.zstd_level), "cloud",
           "version " + std::to_string(cloud.version)};
    rows.push_back(r);
  }
  {
    row r{"sync_interval", ms_text(tier.sync_interval_ms), "tier", tier_note};
    if (ov.sync_interval.count() > 0)
      r = {r.key, ms_text(ov.sync_interval.count()),
           option_source(src.sync_interval), "sync.interval"};
    if (has_cloud && cloud.sync_interval_ms > 0)
      r = {r.key, ms_text(cloud.sync_interval_ms), "cloud",
           "version " + std::to_string(cloud.version)};
    rows.push_back(r);
  }
  {
    row r{"metric_interval", ms_text(src.metric_interval_ms), "default",
          "collector.interval"};
    if (!src.metric_interval.empty())
      r = {r.key, ms_text(src.metric_interval_ms), src.metric_interval,
           "collector.interval"};
    rows.push_back(r);
  }
  {
    row r{"retention",
          tier.retention_ms > 0 ? ms_text(tier.retention_ms) : "none", "tier",
          tier_note};
    if (ov.retention.count() > 0 && now.settings.sqlite)
      r = {r.key, ms_text(ov.retention.count()), option_source(src.retention),
           "storage.retention"};
    if (has_cloud && cloud.retention_ms > 0 && now.settings.retention_ms > 0)
      r = {r.key, ms_text(cloud.retention_ms), "cloud",
           "version " + std::to_string(cloud.version)};
    rows.push_back(r);
  }
  {
    row r{"store_logs", "true", "default", "storage.store-logs"};
    if (!src.store_logs.empty())
      r = {r.key, ov.store_logs ? "true" : "false", src.store_logs,
           "storage.store-logs"};
    rows.push_back(r);
  }
  // The local layer last: it wins (documented in docs/collectors.md).
  auto& s = now.settings;
  for (auto& r : rows) {
    std::string value;
    if (r.key == "compression" && local.zstd_level)
      value = compression_text(s.zstd_level);
    else if (r.key == "sync_interval" && local.sync_interval_ms)
      value = ms_text(s.sync_interval_ms);
    else if (r.key == "metric_interval" && local.metric_interval_ms)
      value = ms_text(s.metric_interval_ms);
    else if (r.key == "retention" && local.retention_ms && s.sqlite)
      value = ms_text(s.retention_ms);
    else if (r.key == "store_logs" && local.store_logs)
      value = s.store_logs ? "true" : "false";
    else if (r.key == "retention" && local.retention_ms)
      r.note = "local set ignored: the store keeps no history";
    if (!value.empty()) {
      // The layer below it stays visible: unset goes back to it.
      r.note = "over " + r.source + " " + r.value;
      r.value = value;
      r.source = "local set";
    }
  }
  if (!key.empty()) {
    std::vector<row> one;
    for (auto& r : rows)
      if (r.key == key)
        one.push_back(r);
    if (one.empty())
      return bad_config("unknown setting '" + printable(key, 64)
                        + "'; the settings are " + keys_text);
    rows.swap(one);
  }
  std::ostringstream text;
  std::string json = "[";
  for (auto& r : rows) {
    text << r.key << " = " << r.value << "  (" << r.source;
    if (!r.note.empty())
      text << ": " << r.note;
    text << ")\n";
    json += (json.size() > 1 ? "," : "")
            + json_object{}
                .add("key", r.key)
                .add("value", r.value)
                .add("source", r.source)
                .add("note", r.note)
                .str();
  }
  json += "]";
  return debug_report{text.str(), json};
}

} // namespace fleetd
