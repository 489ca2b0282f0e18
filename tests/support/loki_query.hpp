#pragma once

// The Loki stand-in's read side: GET /loki/api/v1/query_range with a LogQL
// stream selector, parsed as strictly as Loki parses it; what the stand-in
// does not model (pipelines, regex matchers, metric queries, times other
// than nanosecond epochs) is refused 400 naming it, never guessed.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace fleetd::test {

/// One matcher of a stream selector: name, "=" or "!=", value.
struct logql_matcher {
  std::string name;
  bool equal = true;
  std::string value;
};

/// `{name="value", name!="value", ...}`; nullopt with `why` otherwise.
/// Strings: Go's double-quoted (\\ \" \n \t \r \xHH) or `raw`.
std::optional<std::vector<logql_matcher>>
parse_selector(const std::string& text, std::string& why);

/// The parameters of one query_range request, validated.
struct range_request {
  std::vector<logql_matcher> matchers;
  int64_t start_ns = 0;
  int64_t end_ns = 0;
  int64_t limit = 100;
  bool forward = false;
};

/// The query string of `target` read as Loki reads it (limit at most
/// `max_limit`: max_entries_limit_per_query); nullopt with `why` (a 400).
std::optional<range_request> parse_range_request(const std::string& target,
                                                 int64_t max_limit,
                                                 int64_t now_ns,
                                                 std::string& why);

/// True when `labels` satisfy every matcher.
bool selects(const std::vector<logql_matcher>& ms,
             const std::map<std::string, std::string>& labels);

} // namespace fleetd::test
