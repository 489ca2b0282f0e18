#pragma once

// JSON lines that local applications push as logs and events
// (docs/collectors.md, "Local ingest"): one JSON object per line.
//   logs:   {"line": "...", "timestamp": ..., "labels": {"k": "v"}}
//           (`message` may stand for `line`; timestamp and labels optional)
//   events: {"kind": "...", "message": "..."}
//
// Every line is its own verdict, as in prom_text.hpp: a bad line gets a
// line-numbered error and the good lines around it are kept; what a request
// may make the parser materialise is bounded before it is allocated.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "messages/text_lines.hpp"
#include "messages/types.hpp"

namespace fleetd {

struct json_lines_limits : text_limits {
  /// Labels of one log line.
  size_t max_labels = 64;
  /// Bytes of an event's kind.
  size_t max_kind_bytes = 64;
};

struct log_batch : line_verdicts {
  log_lines lines;
};

struct event_batch : line_verdicts {
  event_records events;
};

/// What an application's event kind is stored under, so that no application
/// can pass for one of fleetd's own events ("app." + kind).
constexpr const char* app_event_prefix = "app.";

/// Parses log lines; a line without a timestamp gets `now_ns`. A timestamp
/// is an RFC 3339 string (any offset, up to nanoseconds) or an integer of
/// nanoseconds since the Unix epoch.
log_batch parse_log_lines(std::string_view text, int64_t now_ns,
                          const json_lines_limits& limits = {});

/// Parses events, each timed `now_ms`, its kind prefixed app_event_prefix.
event_batch parse_event_lines(std::string_view text, int64_t now_ms,
                              const json_lines_limits& limits = {});

/// An RFC 3339 date-time (`2026-12-07T06:38:17.5Z`, `...+02:00`) as
/// nanoseconds since the Unix epoch; false for anything else or a time
/// beyond int64's nanoseconds.
bool parse_rfc3339_ns(std::string_view x, int64_t& out);

} // namespace fleetd
