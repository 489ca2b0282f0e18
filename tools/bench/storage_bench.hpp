#pragma once

#include <string>
#include <vector>

namespace fleetd::bench {

/// One-paragraph description for `fleetd-bench --help`.
extern const char* storage_summary;

/// Usage of `fleetd-bench storage`.
std::string storage_usage();

/// `fleetd-bench storage [--points N] [--rounds R] [--dir DIR]
/// [--bare-ids map|precomputed]`: inserts the same rows through the storage
/// actor and through a bare SQLite loop, alternating, and prints one
/// `BENCH storage ...` line of medians. `args` excludes the subcommand.
/// Returns the exit code (0 ok, 1 failure, 2 bad arguments).
int run_storage_bench(const std::vector<std::string>& args);

} // namespace fleetd::bench
