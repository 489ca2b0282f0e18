#pragma once

#include <string>
#include <vector>

namespace fleetd::bench {

/// One-paragraph description for `fleetd-bench --help`.
extern const char* journal_lag_summary;

/// Usage of `fleetd-bench journal-lag`.
std::string journal_lag_usage();

/// `fleetd-bench journal-lag [--store embedded|postgresql] [--rows N]
/// [--rounds R]`: fills a journal with N unread rows, then times a sink's
/// lag read (the stats call) against the count(*) it replaced, alternating
/// rounds, and prints one `BENCH journal_lag ...` line of medians.
int run_journal_lag_bench(const std::vector<std::string>& args);

} // namespace fleetd::bench
