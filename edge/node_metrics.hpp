#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>

#include "messages/types.hpp"
#include "runtime/pattern.hpp"

namespace fleetd {

class option_set;

/// Debian's node_exporter 1.5.0 defaults, \\d written as [0-9] (ERE).
namespace node_defaults {
inline constexpr const char* enabled
  = "cpu,stat,meminfo,loadavg,filesystem,netdev,diskstats,vmstat,pressure,"
    "hwmon,thermal_zone,time,uname";
inline constexpr const char* mount_points_exclude
  = "^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|"
    "var/lib/containers/storage/.+)($|/)";
inline constexpr const char* fs_types_exclude
  = "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|"
    "fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|"
    "rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$";
inline constexpr const char* netdev_device_exclude = "^lo$";
inline constexpr const char* diskstats_device_exclude
  = "^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme[0-9]+n[0-9]+p)[0-9]+$";
inline constexpr const char* vmstat_fields = "^(oom_kill|pgpg|pswp|pg.*fault).*";
} // namespace node_defaults

/// What the system collector reads and how it filters, as node_exporter's
/// flags say it (names in brackets).
struct node_metrics_config {
  /// Comma-separated node_exporter collectors to run (node_collectors()).
  std::string enabled = node_defaults::enabled;
  /// procfs and sysfs (--path.procfs, --path.sysfs): host.proc, host.sys.
  std::string proc_root = "/proc";
  std::string sys_root = "/sys";
  /// Where the host's root file system is seen (--path.rootfs): mount
  /// points are statfs'd under it and shown without it.
  std::string rootfs = "/";
  /// udev's database (--path.udev.data), for node_disk_info's labels.
  std::string udev_data = "/run/udev/data";
  /// POSIX ERE filters; unanchored, as node_exporter's.
  std::string mount_points_exclude = node_defaults::mount_points_exclude;
  std::string fs_types_exclude = node_defaults::fs_types_exclude;
  std::string netdev_device_include;
  std::string netdev_device_exclude = node_defaults::netdev_device_exclude;
  std::string diskstats_device_exclude = node_defaults::diskstats_device_exclude;
  std::string vmstat_fields = node_defaults::vmstat_fields;
};

/// The node_exporter collectors we have, in reading order; all on by default.
const std::vector<std::string_view>& node_collectors();

/// Declares collector.enabled, the collector.<name>.* filters and host.rootfs
/// (host.proc and host.sys belong to the capability actor).
void declare(option_set& opts, node_metrics_config& x);

/// bad_config naming the option: an unknown collector, a pattern that does
/// not compile (with regerror's text).
caf::error validate(const node_metrics_config& x);

/// Reads node_exporter's series for the enabled collectors, one round per
/// read(). Holds what does not change between rounds: compiled patterns,
/// each device's and mount's filter verdict, udev labels, read buffers.
/// Every input is bounded (file size, mounts, devices, sensors); what is
/// cut or malformed is named in `problems`.
class node_metrics_reader {
public:
  /// `cfg` validated; a pattern that does not compile filters nothing.
  explicit node_metrics_reader(node_metrics_config cfg);
  ~node_metrics_reader();

  node_metrics_reader(const node_metrics_reader&) = delete;
  node_metrics_reader& operator=(const node_metrics_reader&) = delete;

  /// Appends one round to `out`, every sample stamped `now_ms`.
  void read(int64_t now_ms, metric_samples& out,
            std::vector<std::string>* problems);

  struct impl;

private:
  std::unique_ptr<impl> impl_;
};

/// One round with a fresh reader: tests and benches.
metric_samples read_system_metrics(const node_metrics_config& cfg,
                                   int64_t now_ms,
                                   std::vector<std::string>* problems);

/// Caps on what a round materialises from /proc and /sys.
namespace node_limits {
constexpr size_t file_bytes = 1 << 20;
constexpr size_t mounts = 4096;
constexpr size_t devices = 1024;
constexpr size_t hwmon_chips = 64;
constexpr size_t hwmon_files = 512;
constexpr size_t thermal_zones = 256;
} // namespace node_limits

} // namespace fleetd
