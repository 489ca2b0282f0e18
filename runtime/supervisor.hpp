#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "messages/interfaces.hpp"
#include "runtime/clock.hpp"
#include "runtime/restart_policy.hpp"

namespace fleetd {

class stats_registry;

/// Spawns a fresh incarnation of a child (its state reloaded from its store),
/// or says why it cannot.
using child_factory =
  std::function<caf::expected<caf::actor>(caf::actor_system&)>;

/// One actor the supervisor keeps running.
struct supervised_child {
  std::string name;
  /// While an essential child is down or restarting too often, the node is
  /// unhealthy (GET /healthz answers 503).
  bool essential = false;
  child_factory make;
  /// The stable handle (runtime/relay) every other actor keeps.
  caf::actor relay;
  /// The incarnation add() started; none when it could not (first_error),
  /// and the supervisor tries again with backoff.
  caf::actor first;
  caf::error first_error;
};

/// The supervisor.* options (restart_limits) and the children, in start
/// order.
struct supervisor_config {
  restart_limits limits;
  clock_ptr clock;
  std::vector<supervised_child> children;
  /// The node's actor statistics (none when off): a relay answers for its
  /// child, so the child counts the error answers the relay passes on.
  stats_registry* registry = nullptr;

  /// Starts a child's first incarnation behind a new relay and returns the
  /// relay: give it to whoever talks to the child. A child that cannot start
  /// is down from the start (logged); the supervisor retries it.
  caf::actor add(caf::actor_system& sys, std::string name, bool essential,
                 child_factory make);
};

/// bad_config when the limits (see validate(restart_limits)), the clock or
/// a child cannot work.
caf::error validate(const supervisor_config& x);

struct supervisor_state {
  struct child {
    supervised_child spec;
    restart_policy policy;
    /// The running incarnation; none while down.
    caf::actor current;
    /// Bumped at each death: a restart timer of an older one does nothing.
    int64_t generation = 0;
    /// Steady ms of the pending restart (while down).
    int64_t restart_at_ms = 0;
    /// Stopped in order (normal, user_shutdown): not restarted.
    bool stopped = false;
  };
  clock_ptr clock;
  std::vector<child> children;
  static inline const char* name = "supervisor";
};

/// CAF 0.17 has no supervisors: this one monitors the children of `cfg`
/// (started by add()), restarts one that dies of anything but an orderly stop
/// after a doubling backoff, points its relay at the new incarnation, counts
/// and logs each death, and answers GET /healthz for the node. Stop it before
/// the relays (it restarts nothing once stopped).
supervisor_actor::behavior_type
supervisor(supervisor_actor::stateful_pointer<supervisor_state> self,
           supervisor_config cfg);

/// The test hook (node.test-hooks): a debug subject "kill NAME" per child,
/// answered by `sup`; says in the log that the hook is on.
void add_kill_hooks(std::map<std::string, caf::actor>& debug,
                    const supervisor_config& cfg, const supervisor_actor& sup);

} // namespace fleetd
