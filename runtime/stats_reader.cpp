#include "runtime/stats_reader.hpp"

#include <caf/typed_event_based_actor.hpp>

namespace fleetd {

stats_reader_actor::behavior_type
stats_reader(stats_reader_actor::stateful_pointer<stats_reader_state> self,
             std::function<actor_stats()> read) {
  self->state.read = std::move(read);
  return {
    [self](stats_atom) { return self->state.read(); },
  };
}

} // namespace fleetd
