#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor.hpp>

#include "messages/interfaces.hpp"
#include "runtime/actor_counters.hpp"
#include "runtime/clock.hpp"

namespace fleetd {

/// What the inspector reports on and whom it asks.
struct inspector_config {
  std::string role;
  std::string node_id;
  clock_ptr clock;
  /// Actors whose statistics `status` gathers, in start order.
  std::vector<std::pair<std::string, caf::actor>> actors;
  /// Answers `devices` (the cloud store); none on a device.
  caf::actor devices;
  /// Answers tenancy commands (the tenancy actor); none on a device.
  caf::actor tenancy;
  /// Answers rollout commands (the rollout actor); none on a device.
  caf::actor rollout;
  /// Who answers `debug` for each subject ("storage", "capabilities", ...);
  /// "config get KEY" goes to the owner of "config get" when no subject is
  /// the whole text (the longest subject the text starts with, word-wise).
  std::map<std::string, caf::actor> debug;
  /// The runtime's figures of each actor, by the names above (and the
  /// inspector's own); none when node.actor-stats is off.
  std::shared_ptr<stats_registry> runtime;
};

/// bad_config naming the field when `x` cannot work (the inspector has no
/// options of its own: console.* are the node's, in runtime/node).
caf::error validate(const inspector_config& x);

struct inspector_state {
  inspector_config cfg;
  int64_t started_ms = 0;
  /// Per registered actor (same order): its last answer and when (-1:
  /// none), served while it is stuck past the ask deadline.
  std::vector<std::pair<int64_t, actor_stats>> last;
  static inline const char* name = "inspector";
};

/// The console's door into a node. Published over BASP, so it ignores exit
/// and error messages from remote peers (docs/architecture.md section 6).
inspector_actor::behavior_type
inspector(inspector_actor::stateful_pointer<inspector_state> self,
          inspector_config cfg);

} // namespace fleetd
