#pragma once

#include <map>
#include <memory>
#include <string>

#include <caf/expected.hpp>

#include "messages/interfaces.hpp"
#include "runtime/clock.hpp"
#include "runtime/sqlite.hpp"

namespace fleetd {

struct storage_config {
  /// SQLite file; its WAL and SHM files sit beside it.
  std::string path;
  clock_ptr clock;
};

/// The device's SQLite store: metrics, the sync queue and per-stream cursors.
/// Everything a reply reports as committed is in the database file.
class edge_store {
public:
  /// Opens or creates the store; a corrupt file is moved aside, never fatal.
  static caf::expected<edge_store> open(const storage_config& cfg);

  caf::expected<int64_t> store(const metric_samples& xs);
  caf::expected<unbatched_points> fetch(const std::string& stream,
                                        int64_t max);
  caf::expected<int64_t> enqueue(const queued_batch& batch);
  caf::expected<queued_batches> pending(const std::string& stream,
                                        int64_t max);
  caf::expected<int64_t> ack(const std::string& stream, int64_t sequence);
  caf::error checkpoint();
  actor_stats stats();

private:
  caf::error prepare();
  caf::expected<int64_t> series_id(const metric_sample& x);

  storage_config cfg_;
  sqlite::database db_;
  sqlite::statement insert_metric_;
  sqlite::statement insert_series_;
  sqlite::statement select_unbatched_;
  sqlite::statement select_state_;
  sqlite::statement insert_queue_;
  sqlite::statement update_batched_;
  sqlite::statement select_pending_;
  sqlite::statement delete_acked_;
  sqlite::statement update_acked_;
  std::map<std::string, int64_t> series_;
  std::map<int64_t, std::pair<std::string, label_map>> series_by_id_;
  int64_t points_stored_ = 0;
  int64_t store_failures_ = 0;
  int64_t batches_enqueued_ = 0;
  int64_t batches_acked_ = 0;
  int64_t moved_aside_ = 0;
  std::string last_error_;
};

struct storage_state {
  std::shared_ptr<edge_store> store;
  static inline const char* name = "storage";
};

/// Spawn detached: every handler blocks on SQLite.
storage_actor::behavior_type
storage(storage_actor::stateful_pointer<storage_state> self,
        std::shared_ptr<edge_store> store);

} // namespace fleetd
