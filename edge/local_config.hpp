#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <caf/expected.hpp>

#include "messages/types.hpp"

namespace fleetd {

/// The settings `fleetd config set` pins on one device (those the seed's
/// troubleshooting guide names); unset ones leave the value to the layers
/// below: default < tier < file < flag < cloud < local set.
struct local_settings {
  /// "compression": 0 uncompressed, 1..19 zstd level.
  std::optional<int64_t> zstd_level;
  std::optional<int64_t> sync_interval_ms;
  /// "metric_interval": the system collector's.
  std::optional<int64_t> metric_interval_ms;
  std::optional<int64_t> retention_ms;
  std::optional<bool> store_logs;

  bool empty() const {
    return !zstd_level && !sync_interval_ms && !metric_interval_ms
           && !retention_ms && !store_logs;
  }
};

/// Where the values below `cloud` came from, for `config get`: each option's
/// source ("file", "flag" or "" for its default) and the collector's interval.
struct setting_sources {
  std::string zstd_level;
  std::string sync_interval;
  std::string retention;
  std::string metric_interval;
  std::string store_logs;
  int64_t metric_interval_ms = 10000;
};

/// `<data_dir>/settings.local`: `key = value` lines, written by `config set`.
std::string local_settings_path(const std::string& data_dir);

/// The file's settings (none when it does not exist); bad_config naming
/// the file and line for anything that is not a known `key = value`.
caf::expected<local_settings> load_local_settings(const std::string& data_dir);

/// Writes the file atomically and durably (temp file, fsync, rename).
caf::error save_local_settings(const std::string& data_dir,
                               const local_settings& x);

/// Applies "KEY=VALUE" to `x`; bad_config naming the keys or the values
/// the key takes when it cannot.
caf::error set_local(local_settings& x, const std::string& assignment);

/// Unsets KEY; bad_config for an unknown key.
caf::error unset_local(local_settings& x, const std::string& key);

/// `report` with the local settings applied over everything else (a
/// retention only where the store keeps one, as the cloud's).
void apply_local(capability_report& report, const local_settings& x);

struct tier_overrides;

/// `config get [KEY]`: each setting's value and the layer it comes from
/// (default, tier, file, flag, cloud, local set) in `now`, as text and JSON;
/// bad_config for an unknown KEY.
caf::expected<debug_report> config_table(const capability_report& now,
                                         const tier_overrides& ov,
                                         const setting_sources& src,
                                         const local_settings& local,
                                         const std::string& key);

} // namespace fleetd
