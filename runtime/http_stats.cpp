#include "runtime/http_stats.hpp"

#include <caf/typed_event_based_actor.hpp>

#include "runtime/http_server.hpp"

namespace fleetd {

http_stats_actor::behavior_type
http_stats(http_stats_actor::stateful_pointer<http_stats_state> self,
           http_stats_config cfg) {
  self->state.cfg = std::move(cfg);
  return {
    [self](stats_atom) {
      auto& cfg = self->state.cfg;
      actor_stats out;
      out.name = cfg.name;
      out.state = cfg.mode;
      for (auto& [name, value] : named_counters(cfg.server->counters()))
        out.counters[name] = value;
      return out;
    },
  };
}

} // namespace fleetd
