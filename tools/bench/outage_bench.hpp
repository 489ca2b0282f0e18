#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fleetd::bench {

/// One-paragraph description for `fleetd-bench --help`.
extern const char* outage_summary;

/// Usage of `fleetd-bench outage`.
std::string outage_usage();

/// `fleetd-bench outage [--hours H] [--series N] [--log-lines-per-round L]
/// [--rounds R] [--dir DIR] [--plain]`: runs an in-process device through a
/// simulated outage, reconnects it to an in-process cloud (HTTPS with the
/// device's key unless --plain) and prints one `BENCH outage ...` line.
/// `args` excludes the subcommand. Returns the exit code (0 ok, 1 failure
/// or records lost/duplicated, 2 bad arguments).
int run_outage_bench(const std::vector<std::string>& args);

struct outage_options {
  /// Length of the outage in (injected) clock time.
  double hours = 24;
  /// Series scraped every 10 s.
  int64_t series = 100;
  /// Log lines per 10 s round (10: one a second).
  int64_t log_lines_per_round = 10;
  /// Tier 1 sync settings.
  int64_t batch_size = 1000;
  int zstd_level = 3;
  /// Where the databases go; must exist. Each round uses its own files.
  std::string dir;
  /// Give up when the backlog is not drained after this many seconds.
  double drain_timeout_s = 900;
  /// Also send the backlog as a naive sender would (see outage_usage).
  bool baseline = true;
  /// Plain HTTP and no device key (ingest.anonymous), instead of HTTPS with
  /// the device's key; the naive sender goes the same way.
  bool plain = false;
  /// The org's points-per-second quota (HTTPS only); 0: none, as an org is
  /// created.
  int64_t quota_pps = 0;
  /// Progress lines on stderr.
  bool progress = true;
};

/// What one round measured. `error` is empty when the round ran to the end
/// (records_lost and records_duplicated may still be non-zero).
struct outage_result {
  std::string error;
  int64_t rounds_of_data = 0;
  int64_t points = 0;
  int64_t log_lines = 0;
  /// Events the device recorded (link offline/online, ...), all synced.
  int64_t events = 0;
  /// Events that existed when the cloud came back (part of the backlog).
  int64_t backlog_events = 0;
  /// Batches the cloud acked, all streams.
  int64_t batches = 0;
  int64_t metrics_batches = 0;
  double fill_s = 0;
  /// Wall time from the reconnect tick until every record stored before the
  /// reconnect was acked.
  double drain_s = 0;
  /// Request bodies that reached the cloud (cloud link), all streams.
  int64_t bytes_sent = 0;
  int64_t metrics_bytes_sent = 0;
  int64_t requests = 0;
  /// Failed sends while the cloud was away (sync actors).
  int64_t outage_send_failures = 0;
  int64_t went_offline = 0;
  int64_t device_drops = 0;
  int64_t records_lost = 0;
  int64_t records_duplicated = 0;
  /// Cloud rows the device never stored.
  int64_t records_unexpected = 0;
  /// The device id the cloud stored the records under.
  std::string stored_as;
  /// Requests the cloud's tenancy authenticated by the device's key.
  int64_t authenticated = 0;
  /// Requests the cloud refused because the org was over its quota.
  int64_t over_quota = 0;
  // The naive sender (baseline), same records, its own fresh cloud.
  double naive_drain_s = 0;
  int64_t naive_bytes_sent = 0;
  int64_t naive_metrics_bytes_sent = 0;
  int64_t naive_requests = 0;
  int64_t naive_records_lost = 0;
  int64_t naive_records_duplicated = 0;
};

/// One round: fill, outage, reconnect, drain, compare; then the baseline.
outage_result run_outage_round(const outage_options& opt);

} // namespace fleetd::bench
