#pragma once

// The fleet sink: from the journal into the node's own store (PostgreSQL or
// the embedded cloud.db), per org, device and series, the latest value and
// hourly aggregates (sum, count, min, max) for the fleet view, each batch
// added exactly once. docs/data-stack.md, "The fleet sink".

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "cloud/sink_backend.hpp"

namespace fleetd {

class option_set;

struct fleet_sink_config {
  bool enabled = true;
  /// Where the store is, set by the node from store.* (not options):
  /// "postgresql" (postgresql_url) or "embedded" (db_path, its cloud.db).
  std::string backend = "embedded";
  std::string postgresql_url;
  std::string db_path;
  int64_t statement_timeout_ms = 30000;
  /// Applied-batch markers older than this are pruned: the journal keeps
  /// no entry longer, so none can be replayed after (journal.retention).
  std::chrono::milliseconds marker_retention{std::chrono::hours(48)};
};

/// Declares sinks.fleet.enabled.
void declare(option_set& opts, fleet_sink_config& x);

/// One series' hour as stored: avg = sum / count (finite samples only).
struct fleet_hour {
  std::string device;
  std::string metric;
  /// canonical_labels (cloud/clickhouse_text.hpp).
  std::string labels;
  int64_t hour_s = 0;
  double sum = 0;
  int64_t count = 0;
  double min = 0;
  double max = 0;
};

/// One series' latest sample (NaN and infinities included, exact).
struct fleet_latest {
  std::string device;
  std::string metric;
  std::string labels;
  int64_t ts_ms = 0;
  double value = 0;
};

/// The fleet sink over either store. write() adds, in one transaction, the
/// entries whose batch key (org, device, stream, epoch, sequence) it marks
/// newly: a replay adds nothing. Blocking: a detached actor's.
class fleet_sink : public sink_backend {
public:
  std::string name() const override {
    return "fleet";
  }

  /// The org's hours, by device, metric, labels, hour.
  virtual caf::expected<std::vector<fleet_hour>>
  hours(const std::string& org) = 0;
  /// The org's latest values, by device, metric, labels.
  virtual caf::expected<std::vector<fleet_latest>>
  latest(const std::string& org) = 0;
};

/// The fleet sink of `cfg`'s store (connected on first use: a store down at
/// start is a retried write, not a failed start); nullptr when disabled.
caf::expected<std::unique_ptr<fleet_sink>>
make_fleet_sink(const fleet_sink_config& cfg);

} // namespace fleetd
