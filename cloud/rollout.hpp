#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

#include <caf/error.hpp>

#include "cloud/rollout_book.hpp"
#include "cloud/rollout_plan.hpp"
#include "messages/interfaces.hpp"
#include "runtime/clock.hpp"

namespace fleetd {

class option_set;

/// The rollout actor's settings (rollout.*) and parts.
struct rollout_config {
  /// How often a bake is checked for its end (rollout.check-interval), in
  /// the clock's time.
  std::chrono::milliseconds check_interval{1000};
  /// Most devices one rollout takes (rollout.max-devices): more are refused.
  int64_t max_devices = 100000;
  /// Where settings are read and pushed, and the org's devices listed.
  cloud_store_actor store;
  /// Where rollouts persist; required.
  std::shared_ptr<rollout_book> book;
  clock_ptr clock;
};

/// Declares rollout.check-interval and rollout.max-devices.
void declare(option_set& opts, rollout_config& x);

/// bad_config naming the option that cannot work.
caf::error validate(const rollout_config& x);

/// What the actor keeps of each device of an org under rollout.
struct rollout_track {
  /// Last sequence seen per stream: a jump counts missing batches.
  std::map<std::string, int64_t> last_sequence;
  /// The bake window's figures.
  device_window window;
};

struct rollout_state {
  rollout_config cfg;
  /// By org.
  std::map<std::string, rollout_record> rollouts;
  /// By device, only of orgs with an active rollout.
  std::map<std::string, rollout_track> tracks;
  int64_t outcomes = 0;
  int64_t outcomes_ignored = 0;
  int64_t pushes = 0;
  int64_t push_failures = 0;
  int64_t auto_halts = 0;
  int64_t save_failures = 0;
  std::string last_error;
  static inline const char* name = "rollout";
};

/// Staged rollout of device settings with auto-halt (fleetctl rollout):
/// one rollout per org, persisted in `book`. Spawn detached: it saves to
/// SQLite on every change of phase.
rollout_actor::behavior_type
rollout(rollout_actor::stateful_pointer<rollout_state> self,
        rollout_config cfg);

} // namespace fleetd
