#pragma once

#include <memory>
#include <string>

#include <caf/stateful_actor.hpp>
#include <caf/typed_actor.hpp>

#include "messages/interfaces.hpp"

namespace fleetd {

class console_front;
class console_guard;

/// What the console's statistics are read from.
struct console_stats_config {
  std::shared_ptr<const console_front> front;
  caf::strong_actor_ptr guard;
  /// "tls" or "insecure".
  std::string mode;
};

using console_stats_actor = caf::typed_actor<stats_handler>;

struct console_stats_state {
  console_stats_config cfg;
  static inline const char* name = "console_stats";
};

/// Answers `stats` for the console (shown by `fleetctl status` as
/// "console"): connections accepted and refused, handshake timeouts and
/// failures, frames refused and dropped, messages the guard dropped.
console_stats_actor::behavior_type
console_stats(console_stats_actor::stateful_pointer<console_stats_state> self,
              console_stats_config cfg);

} // namespace fleetd
