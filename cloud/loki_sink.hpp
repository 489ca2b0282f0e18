#pragma once

// The Loki backend of the journal's sinks: log lines through Loki's push API
// (/loki/api/v1/push, JSON), one tenant per org (X-Scope-OrgID), one stream
// per device and source, entries ascending per stream, requests bounded in
// bytes. Idempotent through Loki's deduplication of an identical timestamp
// and line in a stream (docs/data-stack.md, Loki).

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/expected.hpp>

#include "cloud/sink_backend.hpp"

namespace fleetd {

class option_set;

struct loki_sink_config {
  /// Loki (or its gateway): http(s)://host[:port][/prefix]; empty: no sink.
  std::string url;
  /// Largest push body; a write is split into pushes of at most this.
  int64_t batch_bytes = 1 << 20;
  std::chrono::milliseconds timeout{10000};
  /// Longest line sent: Loki's max_line_size; longer lines are truncated.
  int64_t max_line_bytes = 256 * 1024;
  /// CA file for an https URL; empty: the system store.
  std::string ca;
};

/// Declares sinks.loki.*.
void declare(option_set& opts, loki_sink_config& x);

/// Counters of one loki_sink, for stats.
struct loki_sink_stats {
  int64_t pushes = 0;
  /// Entries in pushes Loki accepted whole.
  int64_t entries = 0;
  /// Pushes Loki refused (4xx): their valid entries are kept by Loki.
  int64_t refused_pushes = 0;
  /// Entries never sent: their org is not a valid Loki tenant ID.
  int64_t refused_tenant_entries = 0;
  /// Pushes halved after a 413.
  int64_t splits = 0;
  int64_t lines_truncated = 0;
  /// Lines or labels whose invalid UTF-8 was replaced by U+FFFD.
  int64_t lines_repaired = 0;
  /// The last refusal or error, for logs.
  std::string last_problem;
};

/// A sink_backend writing to Loki; blocking, one thread.
class loki_sink : public sink_backend {
public:
  std::string name() const override {
    return "loki";
  }
  virtual const loki_sink_stats& stats() const = 0;
};

/// A loki_sink for `cfg`; bad_config naming the option when it cannot work.
caf::expected<std::unique_ptr<loki_sink>>
make_loki_sink(const loki_sink_config& cfg);

} // namespace fleetd
