#pragma once

#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "cloud/tenancy_backend.hpp"
#include "cloud/tenancy_keys.hpp"
#include "runtime/clock.hpp"
#include "runtime/pg.hpp"

namespace fleetd {

/// Orgs, devices, device keys, enrollment tokens and quotas in PostgreSQL
/// (cloud/migrations: orgs, quotas, devices, device_keys, enroll_tokens),
/// shared by every node of the database, with the same operations and
/// errors as embedded_tenancy. Keys and tokens are stored as HMAC-SHA256
/// under the node's secret: every node of one database must hold the same
/// (tenancy.secret-file). Each transaction is scoped to its org (Row Level
/// Security); a request finds its key or token row by the hash alone
/// (app.key_hash / app.token_hash) before it knows the org. No session
/// state: safe behind PgBouncer in transaction pooling.
/// BLOCKING: only a detached actor calls it.
class pg_tenancy : public tenancy_backend {
public:
  /// Connects as the node's role (refused when it could bypass RLS); the
  /// schema must be migrated already (pg_migrate).
  static caf::expected<pg_tenancy> open(const std::string& url,
                                        std::string secret, clock_ptr clock,
                                        pg::connect_options opts = {});

  caf::expected<device_identity>
  authenticate(const std::string& authorization) override;
  /// The token's last use goes to exactly one of the nodes enrolling with
  /// it at once (a conditional UPDATE of uses_left).
  caf::expected<std::pair<device_identity, std::string>>
  enroll(const std::string& authorization, const std::string& device) override;
  caf::expected<org_quota> quota(const std::string& org) override;
  caf::expected<std::string>
  authenticate_api(const std::string& authorization) override;

protected:
  caf::error create_org(const std::string& org) override;
  caf::expected<rows> list_orgs() override;
  caf::expected<std::string> add_device(const std::string& org,
                                        const std::string& device) override;
  caf::expected<rows> list_devices(const std::string& org) override;
  caf::expected<std::string> rotate_key(const std::string& org,
                                        const std::string& device,
                                        int64_t overlap_ms) override;
  caf::error revoke(const std::string& org, const std::string& device) override;
  caf::expected<std::string> create_token(const std::string& org,
                                          int64_t uses,
                                          int64_t ttl_ms) override;
  caf::expected<int64_t> revoke_tokens(const std::string& org) override;
  caf::error set_quota(const std::string& org, org_quota q) override;
  std::string hash_of(const std::string& secret) const override {
    return keyed_hash(secret_, secret);
  }
  caf::expected<std::string> create_api_token(const std::string& org,
                                              int64_t ttl_ms) override;
  caf::expected<rows> list_api_tokens(const std::string& org) override;
  caf::error revoke_api_token(const std::string& org,
                              const std::string& id) override;

private:
  pg_tenancy(std::string secret, clock_ptr clock, pg::connection conn)
    : secret_(std::move(secret)),
      clock_(std::move(clock)),
      conn_(std::move(conn)) {
  }
  // Runs `fn` in a transaction scoped to `org` ("": none yet), on a
  // connection made again first when the last one was lost.
  template <class F>
  caf::error in_org(const std::string& org, F&& fn);
  // in_org, once more when the connection was lost: reads only, which are
  // safe to repeat (a change whose commit went unanswered is not).
  template <class F>
  caf::error reading(const std::string& org, F&& fn);
  // One statement of the current transaction.
  caf::expected<pg::result> exec(const char* sql, const pg::params& ps = {});
  // The rows `sql` changed; `none` when it changed none.
  caf::error changing(const char* sql, const pg::params& ps, caf::error none);
  caf::error require_org(const std::string& org);
  // Inside the caller's transaction: the device (a valid name) and its
  // first key.
  caf::error insert_device(const std::string& org, const std::string& device,
                           std::string& key);
  caf::error insert_key(const std::string& org, const std::string& device,
                        std::string& key);
  // The row `sql` (hash as $1) finds, made readable by `setting` before the
  // org is known; `missing` when there is none.
  caf::expected<pg::result> row_by_hash(const char* setting, const char* sql,
                                        const std::string& hash,
                                        caf::error missing);
  // Inside the caller's transaction: expires the device's keys after the
  // overlap and makes a new one.
  caf::error renew_keys(const std::string& org, const std::string& device,
                        int64_t overlap_ms, std::string& key);
  caf::error use_token(const std::string& hash, const std::string& org);
  // The registry of orgs (not tenant rows: readable without an org).
  caf::expected<std::vector<std::string>> org_names();
  std::string hash(const std::string& text) const {
    return keyed_hash(secret_, text);
  }

  std::string secret_;
  clock_ptr clock_;
  pg::connection conn_;
};

} // namespace fleetd
