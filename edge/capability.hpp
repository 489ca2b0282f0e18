#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/expected.hpp>

#include "messages/interfaces.hpp"
#include "messages/types.hpp"
#include "edge/local_config.hpp"
#include "runtime/clock.hpp"

namespace fleetd {

/// Reads MemTotal and MemAvailable from `<proc_root>/meminfo`, the CPU count
/// from the `cpuN` lines of `<proc_root>/stat` (sysconf when the file has
/// none), and statvfs of `data_dir` (or of its nearest existing parent while
/// it does not exist yet: that is the filesystem it will live on). Kernels
/// without MemAvailable (before 3.14) get MemFree + Buffers + Cached.
/// The cgroup (v2 `0::/path`, or v1's memory and cpu controllers) of
/// `<proc_root>/self/cgroup` lowers RAM and CPU count to its memory limit
/// and CPU quota under `<sys_root>/fs/cgroup`; `hw.notes` says so, and names
/// limit files that were unreadable or malformed (ignored).
/// Errors (ec::io_error) name the file and what is wrong with it.
caf::expected<hardware> read_hardware(const std::string& proc_root,
                                      const std::string& data_dir,
                                      const std::string& sys_root = "/sys");

/// What the operator pins; a zero or negative value (zstd: negative, since 0
/// means "uncompressed"; tier: 0) leaves the setting to the tier.
struct tier_overrides {
  int64_t tier = 0;
  int64_t storage_bytes = 0;
  std::chrono::milliseconds retention{0};
  std::chrono::milliseconds sync_interval{0};
  int64_t batch_size = 0;
  int64_t zstd_level = -1;
  /// storage.backend: "auto" (the tier's), "sqlite" or "memory".
  std::string backend = "auto";
  /// storage.rounds-file: "auto" (the tier's), "true" or "false".
  std::string rounds_file = "auto";
  /// storage.store-logs: false drops log lines instead of keeping them.
  bool store_logs = true;
};

/// The tier thresholds (docs/architecture.md section 5), decimal units, strict ">":
/// tier 1 when total disk > 1 GB and total RAM > 512 MB, tier 2 when
/// total disk > 10 MB and total RAM > 100 MB, tier 3 otherwise.
int64_t pick_tier(const hardware& hw);

/// The settings of a tier (1, 2 or 3) before any override.
tier_settings defaults_for_tier(int64_t tier);

/// Detected tier, then the pinned tier's defaults, then each override;
/// `reasons` says which rule or option decided what.
capability_report derive(const hardware& hw, const tier_overrides& ov);

/// read_hardware + derive that always gives a report: when the hardware
/// cannot be read it derives from zeros (tier 3 unless pinned) and the first
/// reason says why. For startup and `fleetd debug capabilities`.
capability_report detect(const std::string& proc_root,
                         const std::string& data_dir,
                         const tier_overrides& ov,
                         const std::string& sys_root = "/sys");

/// True when `now` is a capability change (an event, a report to the cloud):
/// the detected tier or any setting differs from `before`. Free RAM and disk
/// alone, or a cloud settings version that changes no setting, are none.
bool differs(const capability_report& before, const capability_report& now);

/// The start log line: "tier 2 constrained (pinned; detected tier 1): " and
/// every reason, "; "-separated.
std::string summary(const capability_report& x);

/// One line for the event log, e.g. "tier 1 -> 2, batch_size 1000 -> 100,
/// ...; tier 2: not tier 1 (RAM 200 MB is not > 512 MB); ...".
std::string describe_change(const capability_report& before,
                            const capability_report& now);

/// One JSON object with every field of the report (`--json`).
std::string to_json(const capability_report& x);

/// Human-readable: hardware, tier, settings, then the reasons.
std::string to_text(const capability_report& x);

struct capability_config {
  std::string proc_root = "/proc";
  /// Where the cgroup limits are read (`<sys_root>/fs/cgroup`).
  std::string sys_root = "/sys";
  /// The data directory; its filesystem is the disk that counts.
  std::string data_dir;
  tier_overrides overrides;
  std::chrono::milliseconds recheck_interval{60000};
  /// What the other actors were started with (normally `detect(...)` in
  /// main). Unset: the first check is sent to every listener.
  std::optional<capability_report> initial;
  /// Hear (capabilities_atom, capability_report) on every change; typed
  /// actors must include `capability_listener`'s signature.
  std::vector<caf::actor> listeners;
  /// Called on every change after the first report, in the actor's context:
  /// must not block (send a message, e.g. to storage's event_atom).
  std::function<void(const capability_report& before,
                     const capability_report& now)>
    on_change;
  /// The wall clock when unset.
  clock_ptr clock;
  /// The operator's settings from the cloud, as last persisted; they apply
  /// over the tier's defaults and the local overrides.
  cloud_settings cloud;
  /// Where new cloud settings are persisted (may be null in tests).
  storage_actor storage;
  /// What `fleetd config set` pinned (over the cloud's), as last read from
  /// the data directory; `debug "config reload"` reads it again.
  local_settings local;
  /// Where the options below it came from, for `config get`.
  setting_sources sources;
};

class option_set;

/// Declares host.*, tier.* and the tier overrides (sync.interval,
/// sync.batch-size, sync.zstd-level, storage.max-bytes, storage.retention,
/// storage.backend) into `x`; "0: the tier's" names come from the tier table.
void declare(option_set& opts, capability_config& x);

/// bad_config naming the option key when `x` cannot work; none otherwise.
caf::error validate(const capability_config& x);

/// `report` with the operator's settings from the cloud applied on top.
void apply_cloud(capability_report& report, const cloud_settings& cloud);

struct capability_state {
  capability_config cfg;
  /// Unset until the first report (or `initial`).
  std::optional<capability_report> current;
  int64_t checks = 0, changes = 0, read_failures = 0, notifications = 0;
  int64_t last_check_ms = 0, last_change_ms = 0;
  static inline const char* name = "capability";
};

/// Checks the hardware at spawn and then every `recheck_interval`; a `tick`
/// from another actor checks once more without a second timer. A failed
/// read keeps the last report (never downgrades on a glitch); only with no
/// report at all does it fall back to `detect`'s zero-hardware report.
/// Answers `debug "capabilities"` with to_text/to_json of the current report.
capability_actor::behavior_type
capability(capability_actor::stateful_pointer<capability_state> self,
           capability_config cfg);

} // namespace fleetd
