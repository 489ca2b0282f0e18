#pragma once

// A throwaway PostgreSQL 15 server per test binary, and PgBouncer in front
// of it in transaction pooling when a test asks (tools/pg_server): real
// servers from Debian's packages (tools/install-deps), never mocks.

#include <optional>
#include <string>

#include "runtime/pg.hpp"
#include "tools/pg_server/pg_server.hpp"

namespace fleetd::test {

// Tests name them test::pg_database, test::pg_server.
using fleetd::pg_database;
using fleetd::pg_server;

/// This binary's server (tools/pg_server), started on first call; nullptr
/// when it cannot run here, `why` then says why: the case skips. A server
/// that should start and does not fails the calling case.
pg_server* shared_pg_server(std::string& why);

/// A fresh database of the shared server (PgBouncer started too when
/// `pooled`); nullopt with `why` when the case must skip.
std::optional<pg_database> fresh_pg_database(const std::string& prefix,
                                             std::string& why,
                                             bool pooled = false);

/// A connection to `url`; a failed check when there is none.
pg::connection pg_connect(const std::string& url,
                          pg::connect_options opts = {});

/// The result of `sql`; a failed check (naming the SQL) when it fails.
pg::result pg_must(pg::connection& c, const std::string& sql,
                   const pg::params& ps = {});

} // namespace fleetd::test
