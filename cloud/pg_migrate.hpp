#pragma once

// The cloud's PostgreSQL schema: versioned migrations (cloud/migrations/
// NNNN_name.sql, built into the binary), the runner that applies them at
// start, the partition helpers and the check of the node's role. The
// schema's contract (roles, RLS, partitions) is in docs/postgresql.md.
//
// BLOCKING, like runtime/pg.hpp: call it from detached actors or a
// program's main thread only.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "runtime/pg.hpp"

namespace fleetd {

/// One schema step; applied once, in its own transaction, in version order.
struct pg_migration {
  int version = 0;
  std::string name;
  std::string sql;
};

/// The migrations of cloud/migrations, in version order (1..n). Built in at
/// build time: a node runs exactly the schema its queries were written for,
/// with no file to find or lose at run time.
const std::vector<pg_migration>& builtin_migrations();

struct migrate_report {
  /// The schema's version before and after.
  int from_version = 0;
  int to_version = 0;
  /// Migrations this call applied (another node may have applied the rest).
  int applied = 0;
};

/// Brings the database of `owner` (a connection of the role that owns the
/// schema; direct or through PgBouncer) to the last of `migrations`. Each
/// step takes pg_advisory_xact_lock first, so nodes starting together apply
/// each migration once; the applied ones are recorded, with a checksum, in
/// fleetd_schema_migrations. Refuses a database whose applied migrations
/// were changed since, or that is newer than `migrations`.
caf::expected<migrate_report>
migrate(pg::connection& owner,
        const std::vector<pg_migration>& migrations = builtin_migrations());

/// The schema version of the database (0: none applied).
caf::expected<int> schema_version(pg::connection& conn);

/// Refuses a node connection whose role could see past Row Level Security:
/// a superuser, a BYPASSRLS role, or one that owns (or inherits the owner
/// of) a table with row security.
caf::error verify_app_role(pg::connection& app);

/// A node's connection to `url`, checked before use: verify_app_role, and
/// a schema at least at the version of builtin_migrations().
caf::expected<pg::connection> open_node_connection(const std::string& url,
                                                   pg::connect_options opts);

/// Makes the partitions of points, logs and events for `days` days from
/// the UTC day of `day_ms`; the number it made. Call it ahead of the
/// writes, in a transaction of its own (it locks the parent tables).
caf::expected<int64_t> ensure_partitions(pg::connection& conn, int64_t day_ms,
                                         int days);

/// Drops the partitions wholly before the UTC day of `cutoff_ms` (never
/// today's); the names it dropped.
caf::expected<std::vector<std::string>>
drop_partitions_before(pg::connection& conn, int64_t cutoff_ms);

/// The settings the schema's policies read beside pg::org_setting: the
/// hex HMAC of a device key or enrollment token being looked up.
constexpr const char* key_hash_setting = "app.key_hash";
constexpr const char* token_hash_setting = "app.token_hash";

namespace detail {

// The text of one migration file, as the build embeds it.
struct migration_text {
  int version;
  const char* name;
  const char* sql;
};

extern const migration_text builtin_migration_texts[];
extern const int builtin_migration_count;

} // namespace detail

} // namespace fleetd
