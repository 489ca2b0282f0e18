#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fleetd::bench {

/// One-paragraph description for `fleetd-bench --help`.
extern const char* fanout_summary;

/// Usage of `fleetd-bench fanout`.
std::string fanout_usage();

/// `fleetd-bench fanout [--devices N] [--series S] [--scrapes K]
/// [--entries-per-write E] [--rounds R] [--max-request-bytes B]`: prints one
/// `BENCH fanout ...` line. Returns the exit code (0 ok, 1 failure, 2 bad
/// arguments, 77 VictoriaMetrics not installed).
int run_fanout_bench(const std::vector<std::string>& args);

struct fanout_options {
  /// Devices, each one journal entry of S series x K scrapes per round.
  int64_t devices = 2000;
  int64_t series = 100;
  int64_t scrapes = 10;
  /// Orgs the devices are spread over.
  int64_t orgs = 10;
  /// Journal entries per vm_sink::write (what a sink actor reads at once).
  int64_t entries_per_write = 200;
  /// Rounds; each writes every point through the sink and raw once, the
  /// order alternating.
  int64_t rounds = 3;
  /// The sink's sinks.victoria.max-request-bytes.
  int64_t max_request_bytes = 4 << 20;
  bool progress = true;
};

struct fanout_result {
  std::string error;
  /// True when VictoriaMetrics is not installed (nothing measured).
  bool skipped = false;
  int64_t points_per_round = 0;
  int64_t series = 0;
  /// Medians over the rounds: journal entries through vm_sink (rendering
  /// and HTTP included), and the same lines pre-rendered, POSTed raw.
  double points_per_s = 0;
  double vm_import_points_per_s = 0;
  /// Median of the rounds' sink/raw ratios (each round's arms back to back).
  double ratio = 0;
  /// Per round, for stderr.
  std::vector<double> sink_rounds;
  std::vector<double> raw_rounds;
  /// CPU per point of each arm's timed parts, this process and the server
  /// together (steadier than wall time on a shared machine): medians, and
  /// per round.
  double sink_cpu_us_per_point = 0;
  double raw_cpu_us_per_point = 0;
  std::vector<double> sink_cpu_rounds;
  std::vector<double> raw_cpu_rounds;
  int64_t sink_requests = 0;
  /// vm_rows_invalid_total + vm_rows_ignored_total after the run (must be 0).
  double dropped_rows = 0;
  /// Series VictoriaMetrics holds after the run (must equal `series`).
  int64_t stored_series = 0;
};

fanout_result run_fanout(const fanout_options& opt);

std::string fanout_line(const fanout_options& opt, const fanout_result& r);

} // namespace fleetd::bench
