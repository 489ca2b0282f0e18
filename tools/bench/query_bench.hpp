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
/// the D days through clickhouse_rollup_query against a bare ClickHouse
/// count of the same rows, and prints one `BENCH query ...` line.
int run_query_bench(const std::vector<std::string>& args);

} // namespace fleetd::bench
