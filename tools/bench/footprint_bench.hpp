#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fleetd::bench {

/// One-paragraph description for `fleetd-bench --help`.
extern const char* footprint_summary;

/// Usage of `fleetd-bench footprint`.
std::string footprint_usage();

/// `fleetd-bench footprint [--window S] [--outage S] [--resume-limit S]
/// [--runs N] [--setting tier1|sync10s|collectors]...`: fleetd against fleetd-cloud and
/// vmagent + node_exporter against VictoriaMetrics, side by side, real
/// processes. Returns the exit code (0 ok, 1 failure or samples lost, 2 bad
/// arguments, 77 vmagent, node_exporter or VictoriaMetrics not installed).
int run_footprint_bench(const std::vector<std::string>& args);

struct footprint_options {
  /// Steady window the CPU figures cover, seconds.
  double window_s = 600;
  /// Both receivers cut (connections dropped, new ones refused) at least
  /// this long, and until fleetd has tried to send once (at tier 1 a sync
  /// falls due only every 5 min: an outage it never saw resumes nothing).
  double outage_s = 120;
  /// Longest wait for data to flow again, and then for the rest to arrive,
  /// each; a wait that runs out prints "timeout".
  double resume_limit_s = 300;
  /// Series each agent sends per 10 s round.
  int64_t series = 100;
  /// fleetd settings to measure, in order: "tier1" (tier-1 defaults),
  /// "sync10s" (tier 1 with sync.interval=10s), "collectors" (tier 1 with
  /// every collector: the system collector's full breadth, a scrape target
  /// and a followed log file; vmagent keeps node_exporter's whole page).
  std::vector<std::string> settings{"tier1", "sync10s"};
  /// Where fleetd, fleetd-cloud and fleetctl are; empty: beside this program.
  std::string bin_dir;
  /// The fleetd that runs (e.g. build-device/fleetd, what a device
  /// installs); empty: bin_dir's.
  std::string fleetd_program;
  /// The fleetd whose install size is reported (e.g. the device build's
  /// build-device/fleetd); empty: the one that runs.
  std::string install_program;
  /// fleetd's cloud.sync-version; 0: its default.
  int64_t sync_version = 0;
  /// Prints a line per fleetd request: when, its size, its items.
  bool trace_requests = false;
  bool progress = true;
};

/// What one run at one setting measured.
struct footprint_result {
  std::string error;
  /// True when a program the bench needs is not installed.
  bool skipped = false;
  std::string setting;
  /// CPU seconds of each process over the steady window.
  double fleetd_cpu_s = 0;
  double vmagent_cpu_s = 0;
  double node_exporter_cpu_s = 0;
  /// VmHWM at the end.
  int64_t fleetd_hwm_kib = 0;
  int64_t vmagent_hwm_kib = 0;
  /// fleetd's write_bytes (/proc/PID/io) from its first round to the end,
  /// and the samples it stored meanwhile.
  int64_t fleetd_disk_bytes = 0;
  int64_t fleetd_disk_samples = 0;
  /// Relay bytes, both directions, headers included: fleetd's exchanges
  /// split by what the request carried (metrics, logs, anything else:
  /// events, health probes, connections cut mid-request).
  int64_t fleetd_metrics_wire_bytes = 0;
  int64_t fleetd_log_wire_bytes = 0;
  int64_t fleetd_other_wire_bytes = 0;
  int64_t vmagent_wire_bytes = 0;
  /// fleetd's relay bytes over the steady window alone (no outage, no
  /// drain), and that window's seconds: a day of steady syncs.
  int64_t fleetd_window_wire_bytes = 0;
  double window_s = 0;
  /// Seconds of data collected (rounds x 10 s): what mb_per_day scales.
  double data_span_s = 0;
  int64_t fleetd_install_bytes = 0;
  /// Seconds from the receiver's return until data flows again (fleetd:
  /// the cloud answers a batch; vmagent: VictoriaMetrics stores rows); -1:
  /// not within resume_limit_s.
  double fleetd_resume_s = -1;
  double vmagent_resume_s = -1;
  /// How long the receivers were cut (outage_s, or longer until fleetd
  /// had tried to send into the outage).
  double outage_actual_s = 0;
  /// Samples each agent stored (fleetd) or pushed after relabelling
  /// (vmagent), and what its receiver holds at the end.
  int64_t fleetd_samples = 0;
  int64_t fleetd_arrived = 0;
  int64_t fleetd_doubled = 0;
  int64_t fleetd_log_lines = 0;
  int64_t fleetd_log_lines_arrived = 0;
  int64_t vmagent_samples = 0;
  int64_t vmagent_arrived = 0;
};

/// One run at `setting`: start everything, window, outage, resume, drain.
footprint_result run_footprint(const footprint_options& opt,
                               const std::string& setting);

/// The `BENCH footprint setting=... run=...` line of `r` (`run` "median"
/// for the medians line).
std::string footprint_line(const footprint_options& opt,
                           const footprint_result& r, const std::string& run);

/// The lower of both agents' arrival (receiver holds / agent sent), percent.
double samples_arrived_pct(const footprint_result& r);

/// Figure by figure medians of `runs` (all of one setting).
footprint_result median_result(const std::vector<footprint_result>& runs);

} // namespace fleetd::bench
