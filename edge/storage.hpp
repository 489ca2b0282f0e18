#pragma once

#include <memory>
#include <utility>
#include <vector>

#include <caf/typed_response_promise.hpp>

#include "edge/store_backend.hpp"
#include "messages/interfaces.hpp"

namespace fleetd {

struct storage_state {
  storage_state() = default;
  storage_state(const storage_state&) = delete;
  storage_state& operator=(const storage_state&) = delete;
  /// Hands the store the counts not declared yet (it commits them with its
  /// last commit), so a clean stop or restart loses none.
  ~storage_state();

  std::shared_ptr<store_backend> store;
  // A commit timer is pending (storage.commit-interval).
  bool commit_armed = false;
  // A store of the open group (storage.group-window), answered at its
  // commit with how many records it stored.
  struct grouped_reply {
    caf::typed_response_promise<int64_t> promise;
    int64_t records = 0;
    bool samples = false;
    /// The stream its records count as stored in once committed.
    const char* stream = nullptr;
  };
  std::vector<grouped_reply> grouped;
  bool group_open = false;
  /// The settings' store_logs: false drops log lines (their cursors move).
  bool store_logs = true;
  int64_t log_lines_not_kept = 0;
  /// Records handed to storage and accepted, by stream (declared with the
  /// drops); `flow_saved`: as last kept by the store, what is declared.
  flow_counts flow;
  flow_counts flow_saved;
  static inline const char* name = "storage";
};

/// bad_config when the actor has no store to drive.
caf::error validate(const std::shared_ptr<store_backend>& store);

/// The storage actor over any backend. Spawn detached: handlers block on I/O.
storage_actor::behavior_type
storage(storage_actor::stateful_pointer<storage_state> self,
        std::shared_ptr<store_backend> store);

} // namespace fleetd
