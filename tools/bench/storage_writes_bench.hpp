#pragma once

#include <string>
#include <vector>

namespace fleetd::bench {

/// One-paragraph description for `fleetd-bench --help`.
extern const char* storage_writes_summary;

/// Usage of `fleetd-bench storage-writes`.
std::string storage_writes_usage();

/// `fleetd-bench storage-writes [--rounds N] [--runs R] [--sync-ms MS]
/// [--commit-interval MS] [--dir DIR]`: drives a real sqlite_store through
/// what the storage and sync actors ask of it per round, on an injected
/// clock, counting the bytes the process writes (/proc/self/io) per sample,
/// against the same run with the store's former write layout. Returns the
/// exit code (0 ok, 1 failure, 2 bad arguments).
int run_storage_writes_bench(const std::vector<std::string>& args);

} // namespace fleetd::bench
