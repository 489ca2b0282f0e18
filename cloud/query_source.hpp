#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "messages/types.hpp"

namespace fleetd {

/// One metric of one device of one org, aggregated per step over
/// [from_ms, to_ms). Every field is validated by the query actor before a
/// source sees it: `org` comes from the caller's API token, never from the
/// query text; `device` is a valid name; `metric` is 1..256 bytes of text.
struct series_query {
  std::string org;
  std::string device;
  std::string metric;
  int64_t from_ms = 0;
  int64_t to_ms = 0;
  int64_t step_ms = 1000;
};

/// The aggregates of one step: NaN samples are left out (count counts the
/// others); avg, min and max are NaN when none is left.
struct step_point {
  int64_t ts_ms = 0; // the step's start
  double avg = 0;
  double sum = 0;
  int64_t count = 0;
  double min = 0;
  double max = 0;
};

struct query_series {
  label_map labels;
  std::vector<step_point> points; // by ts_ms, steps without samples left out
};

/// The log lines of one device of one org stamped in [from_ms, to_ms),
/// oldest first, at most `limit`.
struct logs_query {
  std::string org;
  std::string device;
  int64_t from_ms = 0;
  int64_t to_ms = 0;
  int64_t limit = 1000;
};

struct query_log_line {
  int64_t ts_ns = 0; // as the device stamped it
  label_map labels;
  std::string line;
};

/// Where the query API reads from. Implementations: the node's store
/// (embedded_query_source.hpp, pg_query_source.hpp); VictoriaMetrics for
/// fine steps and ClickHouse rollups for steps of an hour or more plug in
/// here. Calls block: only a detached actor makes them. A source must
/// return only rows of `org` whatever the other fields hold.
class query_source {
public:
  virtual ~query_source() = default;
  virtual std::string name() const = 0;
  /// Series of `q.metric` (one per label set), at most `max_points` points
  /// in all (ec::conflict beyond, naming the limit).
  virtual caf::expected<std::vector<query_series>>
  series(const series_query& q, int64_t max_points) = 0;
  virtual caf::expected<std::vector<query_log_line>>
  logs(const logs_query& q) = 0;
};

using query_source_ptr = std::shared_ptr<query_source>;

} // namespace fleetd
