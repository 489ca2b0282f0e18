#pragma once

// The query API's first source: the points and log lines the embedded
// store keeps, aggregated per step in SQL (PostgreSQL: pg_query_source.hpp).

#include <string>

#include <caf/expected.hpp>

#include "cloud/query_source.hpp"

namespace fleetd {

/// Reads the embedded store's file (`path`, <data-dir>/cloud.db) on a
/// connection of its own (WAL: readers never block the store's writer).
caf::expected<query_source_ptr>
open_embedded_query_source(const std::string& path);

} // namespace fleetd
