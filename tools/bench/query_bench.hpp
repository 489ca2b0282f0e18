#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fleetd::bench {

/// One-paragraph description for `fleetd-bench --help`.
extern const char* query_summary;

/// Usage of `fleetd-bench query`.
std::string query_usage();

/// `fleetd-bench query [--devices N] [--metrics M] [--days D] [--queries Q]`:
/// starts a throwaway ClickHouse 18.16, loads D days of hourly rollups for
/// N devices x M metrics, times Q queries of one device and metric over
/// the D days through the HTTP query API (in-process endpoint, API token,
/// query actor, ClickHouse query source) against the direct
/// clickhouse_rollup_query and a bare ClickHouse count of the same rows,
/// and prints one `BENCH query ...` line.
int run_query_bench(const std::vector<std::string>& args);

struct query_options {
  int64_t devices = 1000;
  int64_t metrics = 100;
  int64_t days = 30;
  int64_t queries = 200;
};

/// What one run measured; `error` is empty when it ran to the end.
struct query_result {
  std::string error;
  int64_t rows = 0;
  /// Points the queries returned, all together.
  int64_t points = 0;
  /// Through the HTTP query API.
  double p50_ms = 0;
  double p99_ms = 0;
  /// clickhouse_rollup_query, the same series and hours.
  double direct_p50_ms = 0;
  double direct_p99_ms = 0;
  double bare_p50_ms = 0;
  double bare_p99_ms = 0;
  double load_s = 0;
};

/// Starts its own ClickHouse, loads, queries; stopped before returning.
query_result run_query(const query_options& opt);

} // namespace fleetd::bench
