#pragma once

#include <functional>

#include <caf/stateful_actor.hpp>
#include <caf/typed_actor.hpp>

#include "messages/interfaces.hpp"

namespace fleetd {

/// Reads a non-actor part's statistics (the console front, an HTTP server)
/// when asked, so the inspector can list them beside the actors'.
using stats_reader_actor = caf::typed_actor<stats_handler>;

struct stats_reader_state {
  std::function<actor_stats()> read;
  static inline const char* name = "stats_reader";
};

/// Answers `stats` with `read()`, which must be thread-safe and not block.
stats_reader_actor::behavior_type
stats_reader(stats_reader_actor::stateful_pointer<stats_reader_state> self,
             std::function<actor_stats()> read);

} // namespace fleetd
