#include "runtime/console_stats.hpp"

#include <caf/typed_event_based_actor.hpp>

#include "runtime/console_front.hpp"
#include "runtime/console_guard.hpp"

namespace fleetd {

console_stats_actor::behavior_type
console_stats(console_stats_actor::stateful_pointer<console_stats_state> self,
              console_stats_config cfg) {
  self->state.cfg = std::move(cfg);
  return {
    [self](stats_atom) {
      auto& cfg = self->state.cfg;
      auto c = cfg.front->counters();
      auto* guard = static_cast<console_guard*>(cfg.guard->get());
      actor_stats out;
      out.name = "console";
      out.state = cfg.mode;
      out.counters = {{"accepted", c.accepted},
                      {"rejected", c.rejected},
                      {"handshake_timeouts", c.handshake_timeouts},
                      {"handshake_failures", c.handshake_failures},
                      {"frames_refused", c.frames_refused},
                      {"frames_dropped", c.frames_dropped},
                      {"accept_errors", c.accept_errors},
                      {"messages_dropped", guard->dropped()}};
      return out;
    },
  };
}

} // namespace fleetd
