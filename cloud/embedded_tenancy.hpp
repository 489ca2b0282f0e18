#pragma once

#include <string>

#include <caf/expected.hpp>

#include "cloud/tenancy_backend.hpp"
#include "cloud/tenancy_keys.hpp"
#include "messages/types.hpp"
#include "runtime/clock.hpp"
#include "runtime/sqlite.hpp"

namespace fleetd {

/// Orgs, devices, device keys, enrollment tokens and quotas in the cloud
/// node's embedded SQLite file (tenancy.db), behind the tenancy actor.
/// Keys and tokens are 256 random bits, returned once and stored only as
/// HMAC-SHA256 under the node's secret (tenancy.secret-file), so a copy of
/// the database alone proves nothing. The PostgreSQL implementation (with
/// Row Level Security) takes the same operations.
class embedded_tenancy : public tenancy_backend {
public:
  /// Opens (creating) the database at `path`; `secret` keys the hashes.
  static caf::expected<embedded_tenancy>
  open(const std::string& path, std::string secret, clock_ptr clock);

  caf::expected<device_identity>
  authenticate(const std::string& authorization) override;
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
  caf::error require_org(const std::string& org);
  // Inside the caller's transaction: the device (a valid name) and its
  // first key.
  caf::error insert_device(const std::string& org, const std::string& device,
                           std::string& key);
  // Runs `st`; `none` when it changed no row (a name taken or missing).
  caf::error run_changing(sqlite::statement& st, caf::error none);
  // The row `sql` (hash as ?1) finds for `secret`, stepped; `missing` when
  // there is none.
  caf::expected<sqlite::statement> row_by_hash(const char* sql,
                                               const std::string& secret,
                                               caf::error missing);
  // HMAC-SHA256 of a key or token under the node's secret.
  std::string hash(const std::string& secret) const {
    return keyed_hash(secret_, secret);
  }
  caf::error insert_key(const std::string& org, const std::string& device,
                        std::string& key);

  std::string secret_;
  clock_ptr clock_;
  sqlite::database db_;
};

} // namespace fleetd
