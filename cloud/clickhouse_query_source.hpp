#pragma once

// The query API's source for steps of whole hours: the hourly rollups the
// ClickHouse sink keeps, summed into steps in ClickHouse. The org is a
// value of the WHERE clause the node writes (escaped: ClickHouse 18.16 has
// no query parameters), never text of the caller's.

#include <caf/expected.hpp>

#include "cloud/clickhouse_sink.hpp"
#include "cloud/query_source.hpp"

namespace fleetd {

constexpr int64_t ms_per_rollup = 3600 * 1000;

/// True when the rollups answer `q` exactly: from, to and step whole hours.
bool rollups_answer(const series_query& q);

/// Series from the rollups of the ClickHouse the sink of `cfg` writes
/// (bad_config for a query rollups_answer() refuses); no log lines
/// (bad_config).
caf::expected<query_source_ptr>
open_clickhouse_query_source(const clickhouse_config& cfg);

} // namespace fleetd
