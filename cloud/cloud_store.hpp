#pragma once

#include <memory>

#include <caf/error.hpp>

#include "cloud/cloud_store_backend.hpp"
#include "messages/interfaces.hpp"

namespace fleetd {

struct cloud_store_state {
  std::shared_ptr<cloud_store_backend> store;
  static inline const char* name = "cloud_store";
};

/// bad_config when the actor has no store to drive.
caf::error validate(const std::shared_ptr<cloud_store_backend>& store);

/// The cloud's store actor over a store backend (embedded SQLite or
/// PostgreSQL). Spawn detached: every handler blocks on the database.
cloud_store_actor::behavior_type
cloud_store(cloud_store_actor::stateful_pointer<cloud_store_state> self,
            std::shared_ptr<cloud_store_backend> store);

} // namespace fleetd
