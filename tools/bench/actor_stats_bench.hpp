#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fleetd::bench {

struct actor_stats_options {
  /// Rounds of each kind, after one warm-up round of plain and measured.
  int64_t rounds = 7;
  /// Messages a round.
  int64_t messages = 2000000;
  int64_t pairs = 4;
  /// Messages in flight per pair.
  int64_t in_flight = 8;
  /// Scheduler threads; 0: CAF's default (one per core).
  int64_t threads = 0;
  /// CAF's scheduler: "stealing" (its default, the cloud's) or "sharing"
  /// (the device's).
  std::string policy = "stealing";
  /// Per-round lines on stderr.
  bool progress = true;
};

/// Median throughputs (messages per second) of each kind, and the medians
/// of each round's ratios to its plain run (wall time; CPU time for
/// cpu_ratio): off runs the same code as plain, so off_ratio is the noise.
struct actor_stats_result {
  double plain = 0;
  double on = 0;
  double off = 0;
  double ratio = 0;
  double off_ratio = 0;
  double cpu_ratio = 0;
  /// The messages the measured rounds' counters saw, and were sent: each
  /// actor may also have counted its exit message.
  int64_t counted = 0;
  int64_t sent = 0;
  int64_t actors = 0;
};

/// Runs the rounds (see run_actor_stats_bench).
actor_stats_result run_actor_stats(const actor_stats_options& opt);

/// The `BENCH actor_stats ...` line of a run.
std::string actor_stats_line(const actor_stats_options& opt,
                             const actor_stats_result& r);

/// One-paragraph description for `fleetd-bench --help`.
extern const char* actor_stats_summary;

/// Usage of `fleetd-bench actor-stats`.
std::string actor_stats_usage();

/// `fleetd-bench actor-stats [--rounds R] [--messages N] [--pairs P]
/// [--in-flight W]`: a message-heavy workload (ping-pong pairs, each with
/// W messages in flight) with actors spawned plainly (CAF as is), measured
/// (runtime/counted.hpp with a registry) and counted but switched off
/// (node.actor-stats = false, the same code as plain), alternating; prints
/// one `BENCH actor_stats ...` line with median throughputs and ratio = the
/// median of each round's measured / plain.
/// Returns the exit code (0 ok, 1 failure, 2 bad arguments).
int run_actor_stats_bench(const std::vector<std::string>& args);

} // namespace fleetd::bench
