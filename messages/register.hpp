#pragma once

#include <caf/fwd.hpp>

namespace fleetd {

/// Registers every message type and the error category of the project.
void register_messages(caf::actor_system_config& cfg);

} // namespace fleetd
