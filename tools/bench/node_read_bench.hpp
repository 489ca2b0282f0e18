#pragma once

#include <string>
#include <vector>

namespace fleetd::bench {

/// One-paragraph description for `fleetd-bench --help`.
extern const char* node_read_summary;

/// Usage of `fleetd-bench node-read`.
std::string node_read_usage();

/// `fleetd-bench node-read [--rounds R] [--collectors LIST]`: one round of
/// the system collector's reader against node_exporter's scrape of the same
/// collectors on this machine, alternating, R times; prints one
/// `BENCH node-read ...` line of medians with the series of each
/// collector. Returns the exit code (0 ok, 1 failure, 2 bad arguments).
int run_node_read_bench(const std::vector<std::string>& args);

} // namespace fleetd::bench
