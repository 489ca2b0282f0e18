#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include <caf/error.hpp>

#include "cloud/tenancy_backend.hpp"
#include "messages/interfaces.hpp"
#include "runtime/clock.hpp"

namespace fleetd {

class option_set;

struct tenancy_config {
  std::shared_ptr<tenancy_backend> store;
  clock_ptr clock;
  /// How long an answer about a key (or an org's quota) is reused: bounds
  /// how late a revocation made on another node takes effect.
  std::chrono::milliseconds cache_ttl{2000};
  /// Answers kept at most; beyond, the cache starts afresh.
  int64_t max_cache_entries = 100000;
  /// File of the node's key-hashing secret ("": <data-dir>/tenancy.secret).
  std::string secret_file;
};

/// Declares tenancy.cache-ttl and tenancy.secret-file.
void declare(option_set& opts, tenancy_config& x);

/// bad_config naming the option key when `x` cannot work.
caf::error validate(const tenancy_config& x);

struct tenancy_state {
  tenancy_config cfg;
  struct cached {
    caf::expected<device_identity> who{caf::error{}};
    int64_t at_ms = 0;
  };
  /// By SHA-256 of the Authorization header: no raw key stays in memory.
  std::map<std::string, cached> keys;
  struct org_usage {
    org_quota quota;
    int64_t quota_at_ms = -1;
    // Token bucket of points: may go into debt by one batch.
    double tokens = 0;
    int64_t tokens_at_ms = -1;
    int64_t day = -1;
    int64_t bytes_today = 0;
  };
  std::map<std::string, org_usage> orgs;
  std::map<std::string, int64_t> counters;
  static inline const char* name = "tenancy";
};

/// The tenancy actor: authenticates device keys with a short cache, runs
/// enrollments and operators' commands, and charges orgs' quotas. Spawn
/// detached: every miss reads SQLite.
tenancy_actor::behavior_type
tenancy(tenancy_actor::stateful_pointer<tenancy_state> self,
        tenancy_config cfg);

} // namespace fleetd
