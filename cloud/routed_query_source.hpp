#pragma once

// The query API's source when sinks run: each query goes to the backend
// built for it, the node's store answering what no configured backend does.

#include <caf/expected.hpp>

#include "cloud/query_source.hpp"

namespace fleetd {

/// The readers a routed source picks from; each but `store` may be null.
struct query_backends {
  /// The node's store (embedded or PostgreSQL).
  query_source_ptr store;
  /// Series at any step (VictoriaMetrics).
  query_source_ptr series;
  /// Series at steps of whole hours (ClickHouse rollups).
  query_source_ptr hourly_series;
  /// Log lines (Loki).
  query_source_ptr logs;
};

/// Series: from, to and step whole hours -> hourly_series; else series;
/// else the store. Logs: logs, else the store. Counts nothing itself: the
/// query actor logs the name of a failing source ("routed(...)").
query_source_ptr make_routed_query_source(query_backends b);

/// Which of `b` answers `q` (for tests and logs).
const query_source_ptr& route(const query_backends& b, const series_query& q);

} // namespace fleetd
