#pragma once

#include <deque>
#include <map>
#include <string>

#include "edge/store_backend.hpp"
#include "runtime/clock.hpp"

namespace fleetd {

/// How a memory store bounds itself (docs/architecture.md section 5).
struct memory_limits {
  /// Tier 2: most points held in all (a ring); 0 = no total bound.
  int64_t max_points = 1000;
  /// Tier 3: most readings kept per series (current + history); 0 = none.
  int64_t per_series = 0;
  /// Most encoded batches kept while the cloud is away.
  int64_t max_batches = 100;
};

/// A store in RAM for devices without room for SQLite: the same contract as
/// sqlite_store, except that nothing survives a restart. Every point pushed
/// out by a bound is counted by drop kind, like the SQLite store does.
class memory_store : public store_backend {
public:
  memory_store(memory_limits limits, clock_ptr clock);

  caf::expected<int64_t> store(const metric_samples& xs) override;
  using store_backend::store_logs;
  caf::expected<int64_t> store_logs(const log_lines& xs,
                                    const source_cursors& cursors) override;
  caf::expected<source_cursors> cursors() override;
  caf::expected<unbatched_points>
  fetch(const std::string& stream, int64_t max,
        int64_t max_bytes = std::numeric_limits<int64_t>::max()) override;
  caf::expected<int64_t> enqueue(const queued_batch& batch) override;
  caf::expected<queued_batches> pending(const std::string& stream,
                                        int64_t max) override;
  caf::expected<int64_t> ack(const std::string& stream, int64_t sequence,
                             int64_t base, const metric_samples& defs,
                             const std::string& history) override;
  caf::expected<int64_t> discard(const std::string& stream,
                                 int64_t sequence) override;
  caf::expected<wire_session> session(const std::string& stream) override;
  caf::expected<cloud_settings> load_settings() override;
  caf::error save_settings(const cloud_settings& x) override;
  caf::error note_retry(const std::string& stream, int64_t sequence,
                        int64_t next_retry_ms) override;
  caf::error checkpoint() override;
  caf::error record_event(const std::string& kind,
                          const std::string& message) override;
  std::map<std::string, int64_t> drops() override;
  caf::error count_refused(const std::string& kind, int64_t n) override;
  /// Kept for the process's life: a restarted storage actor on this store
  /// (same epoch) goes on from its counts instead of declaring less.
  flow_counts load_flow() override {
    return flow_;
  }
  caf::error save_flow(const flow_counts& x) override {
    flow_ = x;
    return caf::none;
  }
  const std::string& epoch() const override {
    return epoch_;
  }
  actor_stats stats() override;
  caf::expected<debug_report> debug(const std::string& what) override;
  void apply(const tier_settings& settings) override;

  int64_t points_held() const {
    return static_cast<int64_t>(points_.size());
  }

private:
  flow_counts flow_;
  struct cursor {
    int64_t next_sequence = 1;
    int64_t batched_upto = 0;
    int64_t acked_upto = 0;
  };

  // Drops the point with this id, counting it by what it means for delivery.
  void drop_point(int64_t id);

  memory_limits limits_;
  clock_ptr clock_;
  std::string epoch_;
  int64_t next_id_ = 1;
  std::map<int64_t, metric_sample> points_;
  std::map<std::string, std::deque<int64_t>> by_series_;
  std::map<std::string, cursor> cursors_;
  // Where log sources read up to; lost with the records at a restart.
  source_cursors source_cursors_;
  std::map<std::pair<std::string, int64_t>, queued_batch> queue_;
  // When each queued batch that failed is tried next (wall-clock ms).
  std::map<std::pair<std::string, int64_t>, int64_t> next_retry_;
  std::map<int64_t, log_line> logs_;
  std::map<int64_t, event_record> events_;
  std::map<std::string, wire_session> sessions_;
  cloud_settings settings_;
  std::map<std::string, int64_t> drops_;
  int64_t points_stored_ = 0;
};

} // namespace fleetd
