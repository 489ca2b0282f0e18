#pragma once

#include <string>
#include <vector>

namespace fleetd::bench {

/// One-paragraph description for `fleetd-bench --help`.
extern const char* round_summary;

/// Usage of `fleetd-bench round-bytes`.
std::string round_usage();

/// `fleetd-bench round-bytes [--rounds R] [--series N] [--log-lines L]
/// [--events E] [--dir DIR]`: tier-3 sync rounds (metrics, logs and events
/// all due) through the real cloud link to an in-process cloud, once one
/// batch per POST /v1/sync and once POST /v2/sync, counting every byte on
/// the wire (headers included); prints one `BENCH round-bytes ...` line.
/// Returns the exit code (0 ok, 1 failure, 2 bad arguments).
int run_round_bench(const std::vector<std::string>& args);

} // namespace fleetd::bench
