#pragma once

// What the tests of the cloud's PostgreSQL backends start from: a fresh
// database of the test server with the node's schema applied, reached
// through PgBouncer in transaction pooling.

#include <optional>
#include <string>

#include <doctest/doctest.h>

#include "cloud/pg_migrate.hpp"
#include "messages/error.hpp"
#include "pg_fixture.hpp"

namespace fleetd::test {

/// A fresh, migrated database `<prefix>_<n>` with PgBouncer in front;
/// nullopt with `why` when the case must skip.
inline std::optional<pg_database>
migrated_pg_database(const std::string& prefix, std::string& why) {
  auto db = fresh_pg_database(prefix, why, true);
  if (!db)
    return db;
  auto owner = pg_connect(db->owner_url);
  auto done = migrate(owner);
  REQUIRE_MESSAGE(done, render(done.error()));
  return db;
}

/// A node's connection options: the statement timeout fleetd-cloud sets
/// (per transaction, as PgBouncer in transaction pooling needs).
inline pg::connect_options pooled_options() {
  pg::connect_options opts;
  opts.statement_timeout_ms = 30000;
  return opts;
}

} // namespace fleetd::test
