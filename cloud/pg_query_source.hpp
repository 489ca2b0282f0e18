#pragma once

#include <string>

#include <caf/expected.hpp>

#include "cloud/query_source.hpp"
#include "runtime/pg.hpp"

namespace fleetd {

/// The query API's source over the PostgreSQL store's points and logs,
/// aggregated per step in SQL, as the node's role: every query runs in a
/// transaction scoped to its org, so Row Level Security holds whatever
/// the query says.
caf::expected<query_source_ptr>
open_pg_query_source(const std::string& url, pg::connect_options opts);

} // namespace fleetd
