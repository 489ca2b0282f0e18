#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "messages/interfaces.hpp"
#include "messages/text_lines.hpp"
#include "runtime/clock.hpp"
#include "runtime/metrics_page.hpp"

namespace fleetd {

/// Applications on the device push data into the store (ingest.* options,
/// docs/collectors.md "Local ingest"): over HTTP on a loopback port and/or
/// a Unix socket; off unless one is set.
struct local_ingest_config {
  /// host:port to listen on (loopback unless allow_remote); empty: none.
  std::string listen;
  /// Unix socket path; empty: none.
  std::string socket;
  /// Lets `listen` name a non-loopback address (no authentication!).
  bool allow_remote = false;
  int64_t max_body_bytes = 256 << 10;
  int64_t max_lines = 10000;
  /// Requests (and their body bytes) waiting for storage; past either a
  /// request is answered 429.
  int64_t max_pending_requests = 8;
  int64_t max_pending_bytes = 1 << 20;
  int64_t max_connections = 64;
  /// A store not answered within this is answered 503 to the client.
  std::chrono::milliseconds store_timeout{30000};
  // Set by the node, not options:
  clock_ptr clock;
  storage_actor storage;
  /// Told (store_atom) after each commit, as collectors tell them.
  std::vector<caf::actor> on_stored;
  /// Serves GET /metrics (the node's self-metrics) when set.
  metrics_endpoint_ptr metrics;
};

class option_set;

/// Declares the ingest.* options.
void declare(option_set& opts, local_ingest_config& x);

/// bad_config naming the option when `x` cannot work.
caf::error validate(const local_ingest_config& x);

/// The formats, one per endpoint.
enum class ingest_format : uint8_t { influx, prom, logs, events };

/// The format a POST to `path` carries (/write, /metrics/import, /logs,
/// /events); false for any other path.
bool ingest_format_of(std::string_view path, ingest_format& out);

/// The endpoint's name in counters: write, metrics_import, logs, events.
const char* to_string(ingest_format x);

/// One request body as the endpoint makes it records.
struct ingest_body : line_verdicts {
  metric_samples samples;
  log_lines logs;
  event_records events;

  size_t records() const {
    return samples.size() + logs.size() + events.size();
  }
};

/// Parses and converts one request body (`query`: what follows '?' in the
/// target), bounded by `x`; ec::bad_request for a bad query, ec::too_large
/// past max_lines or the decode budget (nothing of it is to be stored).
caf::expected<ingest_body> parse_ingest_body(ingest_format f,
                                             std::string_view body,
                                             std::string_view query,
                                             int64_t now_ms,
                                             const local_ingest_config& x);

/// The answer to a request whose records (if any) are committed: 204 all
/// good, 200 with the bad lines listed (JSON) when some are good, 400 so
/// when none is.
http_reply ingest_answer(const ingest_body& b);

/// Binds what `cfg` names, then spawns the actor that serves it (console
/// name "local_ingest"); an error names the option that cannot be served.
caf::expected<local_ingest_actor> spawn_local_ingest(caf::actor_system& sys,
                                                     local_ingest_config cfg);

} // namespace fleetd
