#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/fwd.hpp>

#include "runtime/options.hpp"

namespace fleetd {

/// scheduler.*: CAF's scheduler of a node, applied to its actor-system
/// config before the system starts (CAF reads it only then).
struct scheduler_options {
  /// "sharing": idle workers block on a condition variable (no wakeups);
  /// "stealing": idle workers poll, then sleep relaxed_sleep between polls.
  std::string policy;
  /// Worker threads; 0: the program's default (on a device, the tier's).
  int64_t threads = 0;
  /// Stealing only: polls of the own queue, back to back, before slowing.
  int64_t poll_attempts = 0;
  /// Stealing only: polls 50 us apart after those, before relaxing.
  int64_t moderate_attempts = 0;
  /// Stealing only: an idle worker wakes this often to look for work.
  option_set::duration relaxed_sleep{0};
};

/// A program's scheduler unless configured: its policy, and its worker
/// threads by tier (index 0: tier 1; one entry for a program without tiers).
struct scheduler_defaults {
  std::string policy;
  std::vector<int64_t> threads;
};

/// fleetd: work-sharing (a device sleeps between rounds); 2, 1, 1 threads.
scheduler_defaults device_scheduler();

/// fleetd-cloud: work-stealing on 2 threads (throughput under load; a
/// cloud node is seldom idle).
scheduler_defaults cloud_scheduler();

void declare(option_set& opts, scheduler_options& x,
             const scheduler_defaults& defaults);

/// Policy names and stealing knobs set under the sharing policy (where
/// they would do nothing) are bad_config errors naming the option.
caf::error validate(const scheduler_options& x);

/// Worker threads to start: scheduler.threads when set, else the default
/// of `tier` (1-3), at most `cores` (when known, > 0).
int64_t worker_threads(const scheduler_options& x,
                       const scheduler_defaults& defaults, int64_t tier,
                       int64_t cores);

/// Sets scheduler.policy, scheduler.max-threads and, with stealing,
/// work-stealing.* in `cfg`, in the types CAF 0.17 reads (a value of the
/// wrong type is dropped by CAF with a line on stderr).
void apply(caf::actor_system_config& cfg, const scheduler_options& x,
           int64_t threads);

/// "sharing, 1 thread" / "stealing, 2 threads, relaxed sleep 10ms".
std::string describe(const scheduler_options& x, int64_t threads);

} // namespace fleetd
