#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "messages/types.hpp"

namespace fleetd {

/// What the cloud_store actor drives: the embedded SQLite store
/// (embedded_store) or PostgreSQL. The contract, for every implementation:
/// a batch and its stream's acked sequence are written in one transaction,
/// so a sequence is stored at most once; a batch already held is answered as
/// a duplicate; a sequence held with other content is ec::bad_sequence.
/// Calls block: only a detached actor makes them.
class cloud_store_backend {
public:
  virtual ~cloud_store_backend() = default;

  virtual caf::expected<ingest_outcome> write(const ingest_batch& batch) = 0;
  virtual caf::expected<device_infos> devices() = 0;
  virtual caf::expected<metric_samples> points(const std::string& device_id) = 0;
  virtual caf::expected<log_lines> logs(const std::string& device_id) = 0;
  virtual caf::expected<event_records> events(const std::string& device_id) = 0;
  /// Applies an operator's change to a device's settings and stores the
  /// result under the next version; refuses a device never seen unless the
  /// change says `create`, and a value SyncConfig cannot carry.
  virtual caf::expected<cloud_settings>
  set_config(const std::string& device_id, const settings_change& change) = 0;
  /// Delivery per device, stream and hour from `since_ms` (device empty:
  /// every device), ordered by device, stream, hour.
  virtual caf::expected<delivery_rows> delivery(const std::string& device_id,
                                                int64_t since_ms) = 0;
  virtual actor_stats stats() = 0;
  /// More backends over the same data, each writing on its own connection
  /// alongside this one (empty: this one writes alone). Batches of one
  /// device always go to the same writer (writer_of), so its session cache
  /// stays warm; the contract holds between writers as between nodes.
  virtual caf::expected<std::vector<std::shared_ptr<cloud_store_backend>>>
  more_writers() {
    return std::vector<std::shared_ptr<cloud_store_backend>>{};
  }
};

/// Which of `writers` writers takes the batches of `device_id` (FNV-1a:
/// the same in every process, so a benchmark can split work alike).
size_t writer_of(const std::string& device_id, size_t writers);

/// What every backend counts of its writes, reported as the cloud_store
/// actor's stats.
struct store_counters {
  int64_t batches_stored = 0;
  int64_t points_stored = 0;
  int64_t duplicates = 0;
  int64_t failures = 0;
  std::string last_error;

  /// Counts one write's outcome.
  void count(const caf::expected<ingest_outcome>& out);
  /// The stats of the cloud_store actor with these counters.
  actor_stats report() const;
};

/// Whether batch `b` is held already (`held`: the checksum stored under its
/// sequence, nullptr when none); bad_sequence when held with other content
/// or too far ahead of the acked `last`.
caf::expected<bool> held_verdict(const ingest_batch& b, int64_t last,
                                 const std::string* held);

/// A change the device could not apply exactly is refused (bad_config), not
/// clipped; every backend checks it before storing.
caf::error check_settings_change(const settings_change& c);

/// `x` with the fields `c` names set, under the next version.
void apply_settings_change(cloud_settings& x, const settings_change& c);

} // namespace fleetd
