#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fleetd::bench {

/// One-paragraph description for `fleetd-bench --help`.
extern const char* ingest_summary;

/// Usage of `fleetd-bench ingest`.
std::string ingest_usage();

/// `fleetd-bench ingest --store embedded|postgresql [--devices N]
/// [--seconds S] [--senders C] [--scrapes-per-batch K] [--dir DIR]
/// [--cloud PROGRAM] [--postgresql-url URL --postgresql-owner-url URL]`:
/// drives one fleetd-cloud node over HTTPS from many simulated devices and
/// prints one `BENCH ingest ...` line. `args` excludes the subcommand.
/// Returns the exit code (0 ok, 1 failure, 2 bad arguments).
int run_ingest_bench(const std::vector<std::string>& args);

struct ingest_options {
  /// embedded or postgresql.
  std::string store = "embedded";
  /// With postgresql: the node's role on an existing, empty database
  /// (through PgBouncer in production) and its schema owner's URL; both
  /// empty: a throwaway PostgreSQL 15 + PgBouncer started by the bench.
  std::string postgresql_url;
  std::string postgresql_owner_url;
  /// With postgresql: the node's store.postgresql-writers, and as many
  /// threads (each its own connection) for the raw insert.
  int64_t writers = 2;
  /// Simulated devices, each with its own key and series session.
  int64_t devices = 200;
  /// Length of the measured end-to-end phase.
  double seconds = 15;
  /// Concurrent keep-alive HTTPS connections; each carries the batches of
  /// its share of the devices, one request at a time.
  int64_t senders = 8;
  /// Scrapes of a device's 100 series per batch (10: 1000 points, tier 1).
  int64_t scrapes_per_batch = 10;
  /// Where the node's and the raw store's files go; must exist.
  std::string dir;
  /// The fleetd-cloud program ("": the one beside this program).
  std::string cloud_program;
  /// Progress lines on stderr.
  bool progress = true;
};

/// What one run measured; `error` is empty when it ran to the end.
struct ingest_result {
  std::string error;
  /// The measured end-to-end phase: acked points and requests, wall time.
  int64_t points = 0;
  int64_t requests = 0;
  double seconds = 0;
  double points_per_s = 0;
  double requests_per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  /// Request body bytes per point of the measured phase.
  double bytes_per_point = 0;
  /// CPU the node process used over the measured phase, in cores.
  double node_cpu_cores = 0;
  double node_cpu_us_per_point = 0;
  /// CPU of the bench's own PostgreSQL and PgBouncer over the measured
  /// phase (0 with the embedded store or an existing server).
  double server_cpu_cores = 0;
  double server_cpu_us_per_point = 0;
  /// The same batches decoded and validated on one thread (CPU time), as
  /// the store decodes them (series by session index)
  double decode_points_per_s_per_core = 0;
  /// and as decode_columnar does, a name and labels copied into each point.
  double decode_named_points_per_s_per_core = 0;
  /// The same rows written by the store class itself, no node in front.
  double raw_points_per_s = 0;
  /// CPU time of those writes per point (steadier than wall time on a
  /// shared machine), to set beside node_cpu_us_per_point.
  double raw_cpu_us_per_point = 0;
  double ratio = 0;
  double devices_supported = 0;
  /// Every point the node acked (all phases) and the rows its store holds
  /// after it stopped: the run fails unless they are equal.
  int64_t acked_points = 0;
  int64_t stored_points = 0;
};

/// One run: enroll, start the node, warm up, measure, replay, compare.
ingest_result run_ingest(const ingest_options& opt);

/// The `BENCH ingest ...` line of a run.
std::string ingest_line(const ingest_options& opt, const ingest_result& r);

} // namespace fleetd::bench
