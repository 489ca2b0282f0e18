#pragma once

// Retention of the cloud's rows in PostgreSQL: whole days of points, logs
// and events (one partition each per UTC day received) past
// store.retention-days are dropped, at start and every hour.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "messages/interfaces.hpp"
#include "runtime/clock.hpp"
#include "runtime/options.hpp"
#include "runtime/pg.hpp"

namespace fleetd {

struct store_config;

struct retention_config {
  /// Days kept besides today (0: keep forever, the actor is not started).
  int64_t days = 0;
  /// Time between passes (not an option: a day is the unit dropped).
  std::chrono::milliseconds interval = std::chrono::hours{1};
  /// The node's role, as the store connects (from store_config).
  std::string postgresql_url;
  pg::connect_options connect;
  clock_ptr clock;
};

/// Declares store.retention-days.
void declare(option_set& opts, retention_config& x);

/// bad_config naming store.retention-days when it is set on the embedded
/// store: it keeps every row (deleting by day there is not implemented),
/// and a setting that silently drops nothing would mislead.
caf::error validate(const retention_config& x, const store_config& store);

/// Drops the partitions of the days before today minus `days` (UTC, today
/// by `now_ms`); their names. The server refuses a cutoff past its own
/// today, whatever the node's clock says.
caf::expected<std::vector<std::string>>
drop_expired_days(pg::connection& conn, int64_t now_ms, int64_t days);

struct retention_state {
  retention_config cfg;
  pg::connection conn;
  int64_t passes = 0;
  int64_t dropped = 0;
  int64_t failures = 0;
  static inline const char* name = "retention";

  // One pass: connects when needed, drops, logs what went.
  void pass();
  actor_stats stats() const;
};

/// Drops expired days at start and every `interval` on its own connection.
/// Spawn detached: each pass blocks on PostgreSQL.
retention_actor::behavior_type
retention(retention_actor::stateful_pointer<retention_state> self,
          retention_config cfg);

} // namespace fleetd
