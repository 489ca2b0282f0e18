#pragma once

#include <memory>

#include <caf/error.hpp>

#include "cloud/embedded_store.hpp"
#include "messages/interfaces.hpp"

namespace fleetd {

struct cloud_store_state {
  std::shared_ptr<embedded_store> store;
  static inline const char* name = "cloud_store";
};

/// bad_config when the actor has no store to drive.
caf::error validate(const std::shared_ptr<embedded_store>& store);

/// The cloud's store actor over the embedded SQLite store. Spawn detached:
/// every handler blocks on SQLite.
cloud_store_actor::behavior_type
cloud_store(cloud_store_actor::stateful_pointer<cloud_store_state> self,
            std::shared_ptr<embedded_store> store);

} // namespace fleetd
