#pragma once

#include <string>
#include <vector>

namespace fleetd::bench {

/// One-paragraph description for `fleetd-bench --help`.
extern const char* install_size_summary;

/// Usage of `fleetd-bench install-size`.
std::string install_size_usage();

/// `fleetd-bench install-size [--device PROGRAM] [--baseline PROGRAM]`:
/// measures the device build's fleetd and the normal build's fleetd the same
/// way (measure_install_size) and prints one `BENCH install_size ...` line.
/// Returns the exit code (0 ok, 1 failure, 2 bad arguments).
int run_install_size_bench(const std::vector<std::string>& args);

} // namespace fleetd::bench
