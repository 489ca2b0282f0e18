#pragma once

#include <chrono>
#include <map>
#include <string>

#include <caf/error.hpp>

#include "cloud/query_params.hpp"
#include "cloud/query_source.hpp"
#include "messages/interfaces.hpp"

namespace fleetd {

class option_set;

struct query_config {
  /// Where series and logs come from (the node's store unless wired
  /// otherwise).
  query_source_ptr source;
  std::chrono::milliseconds max_range{int64_t{400} * 24 * 3600 * 1000};
  int64_t max_points = 11000;
  int64_t max_log_lines = 5000;

  query_limits limits() const {
    return {max_points, max_range.count(), max_log_lines};
  }
};

/// Declares query.max-range, query.max-points and query.max-log-lines.
void declare(option_set& opts, query_config& x);

/// bad_config naming the option key when `x` cannot work.
caf::error validate(const query_config& x);

struct query_state {
  query_config cfg;
  std::map<std::string, int64_t> counters;
  static inline const char* name = "query";
};

/// The query API: parses and bounds a request for the org its caller's
/// token proved, asks the source, answers JSON (400 naming a bad parameter,
/// 413 past query.max-points, 503 when the source fails). Spawn detached:
/// sources block.
query_actor::behavior_type
query(query_actor::stateful_pointer<query_state> self, query_config cfg);

} // namespace fleetd
