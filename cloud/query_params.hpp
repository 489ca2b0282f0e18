#pragma once

// The query API's request text: parsed, validated and bounded before any
// source sees it; and its JSON answers.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "cloud/query_source.hpp"

namespace fleetd {

/// The query API's bounds (query.* options).
struct query_limits {
  /// Points one answer may hold, over all its series.
  int64_t max_points = 11000;
  /// Longest time range of one request.
  int64_t max_range_ms = int64_t{400} * 24 * 3600 * 1000;
  /// Log lines one answer may hold (and the default limit).
  int64_t max_log_lines = 5000;
};

/// Which aggregate a series' points carry (agg=...).
enum class step_agg { avg, sum, count, min, max };

struct parsed_series_query {
  series_query q;
  step_agg agg = step_agg::avg;
};

/// Steps of whole hours start on whole hours, as the hourly rollups do, so
/// every source answers the same steps: `from` rounded down, `to` up.
void align_hour_steps(series_query& q);

/// `target` ("/v1/query?metric=..&device=..&from=..&to=..&step=..[&agg=..]")
/// for `org`; ec::conflict naming the bad parameter otherwise.
caf::expected<parsed_series_query>
parse_series_query(const std::string& org, const std::string& target,
                   const query_limits& lim);

/// `target` ("/v1/logs?device=..&from=..&to=..[&limit=..]") for `org`.
caf::expected<logs_query> parse_logs_query(const std::string& org,
                                           const std::string& target,
                                           const query_limits& lim);

/// {"org","device","metric","step_ms","agg","series":[{"labels":{..},
/// "points":[[ts_ms, value],...]}]}; NaN and infinities as the strings
/// "NaN", "+Inf", "-Inf".
std::string series_json(const parsed_series_query& p,
                        const std::vector<query_series>& series);

/// {"org","device","from","to","limit","truncated","streams":[{"labels":{..},
/// "lines":[[ts_ns, "line"],...]}]}, streams in order of first line.
std::string logs_json(const logs_query& q,
                      const std::vector<query_log_line>& lines);

/// A value of the answer: a JSON number, or "NaN"/"+Inf"/"-Inf".
std::string json_value(double x);

} // namespace fleetd
