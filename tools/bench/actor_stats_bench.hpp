#pragma once

#include <string>
#include <vector>

namespace fleetd::bench {

/// One-paragraph description for `fleetd-bench --help`.
extern const char* actor_stats_summary;

/// Usage of `fleetd-bench actor-stats`.
std::string actor_stats_usage();

/// `fleetd-bench actor-stats [--rounds R] [--messages N] [--pairs P]
/// [--in-flight W]`: a message-heavy workload (ping-pong pairs, each with
/// W messages in flight) with actors spawned plainly (CAF as is), measured
/// (runtime/counted.hpp with a registry) and counted but switched off
/// (node.actor-stats = false), alternating; prints one `BENCH actor_stats
/// ...` line with median throughputs and ratio = measured / plain.
/// Returns the exit code (0 ok, 1 failure, 2 bad arguments).
int run_actor_stats_bench(const std::vector<std::string>& args);

} // namespace fleetd::bench
