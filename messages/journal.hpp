#pragma once

// The ingest journal's unit: one accepted batch, decoded and stamped with
// its org and device, as every sink (VictoriaMetrics, Loki, ClickHouse,
// PostgreSQL/embedded) receives it. Self-contained: no device session or
// series table is needed to read it.

#include <cstdint>
#include <string>
#include <vector>

#include "messages/types.hpp"

namespace fleetd {

struct journal_entry {
  /// Position in the journal: sinks read in increasing order and persist
  /// the last one they wrote as their cursor.
  int64_t id = 0;
  std::string org;
  /// The device's name within its org.
  std::string device;
  std::string stream;
  std::string epoch;
  int64_t sequence = 0;
  /// When the cloud accepted the batch (ms since the epoch, node clock).
  int64_t received_ms = 0;
  metric_samples samples;
  log_lines logs;
  event_records events;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, journal_entry& x) {
  return f(caf::meta::type_name("journal_entry"), x.id, x.org, x.device,
           x.stream, x.epoch, x.sequence, x.received_ms, x.samples, x.logs,
           x.events);
}

using journal_entries = std::vector<journal_entry>;

} // namespace fleetd
