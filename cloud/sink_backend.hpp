#pragma once

#include <chrono>

#include <string>

#include <caf/error.hpp>

#include "messages/journal.hpp"

namespace fleetd {

/// One backend a sink actor writes the journal to (VictoriaMetrics, Loki,
/// ClickHouse, PostgreSQL or the embedded store). The contract, for every
/// implementation: write() returns no error only once the backend has
/// accepted every record of `entries` (the sink then advances its cursor
/// past them); a write repeated after a crash adds nothing (idempotent);
/// an error says whether a retry can help: ec::unreachable, ec::timeout and
/// ec::remote_error (5xx, 429) are retried with backoff; ec::invalid_record
/// (the backend refuses the records as sent, a 4xx) is counted and skipped,
/// so a sink never blocks the journal forever. Calls block: only a detached
/// actor makes them.
class sink_backend {
public:
  virtual ~sink_backend() = default;

  /// The sink's name in stats, logs and the cursor table ("victoria", ...).
  virtual std::string name() const = 0;
  virtual caf::error write(const journal_entries& entries) = 0;
  /// How long after accepting a write the backend may still lose it in a
  /// crash (it acks rows it holds in memory); 0: durable once accepted.
  virtual std::chrono::milliseconds durable_after() const {
    return std::chrono::milliseconds{0};
  }
  /// Notes which server process takes the writes that follow (called
  /// before the first write not yet durable); most backends need nothing.
  virtual void watch() {
  }
  /// Whether the process watch() noted still holds every write since (no
  /// restart lost them); false also when it cannot tell. Notes the current
  /// process for the next call. Called before the cursor is saved.
  virtual bool unchanged() {
    return true;
  }
};

} // namespace fleetd
