#pragma once

#include <memory>
#include <vector>

#include <caf/error.hpp>

#include "cloud/cloud_store_backend.hpp"
#include "messages/interfaces.hpp"

namespace fleetd {

struct cloud_store_state {
  std::shared_ptr<cloud_store_backend> store;
  /// The store's other writers (more_writers), each a cloud_store itself.
  std::vector<cloud_store_actor> writers;
  static inline const char* name = "cloud_store";
};

/// bad_config when the actor has no store to drive.
caf::error validate(const std::shared_ptr<cloud_store_backend>& store);

/// The cloud's store actor over a store backend (embedded SQLite or
/// PostgreSQL). Spawn detached: every handler blocks on the database. When
/// the backend has more writers, each runs in a linked cloud_store of its
/// own and takes the writes of its devices (writer_of); stats sum them all.
cloud_store_actor::behavior_type
cloud_store(cloud_store_actor::stateful_pointer<cloud_store_state> self,
            std::shared_ptr<cloud_store_backend> store);

} // namespace fleetd
