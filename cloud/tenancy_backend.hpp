#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <caf/expected.hpp>

#include "messages/types.hpp"

namespace fleetd {

/// Quota of one org; 0 = unlimited.
struct org_quota {
  int64_t points_per_second = 0;
  int64_t bytes_per_day = 0;
};

/// What the tenancy actor drives: orgs, devices, device keys (stored only
/// as keyed hashes), enrollment tokens and quotas, in the embedded SQLite
/// store (embedded_tenancy) or PostgreSQL (pg_tenancy). Calls block: only a
/// detached actor makes them.
class tenancy_backend {
public:
  using rows = std::vector<std::vector<std::string>>;

  virtual ~tenancy_backend() = default;

  /// Who the key in `authorization` ("Bearer fdk_...") belongs to.
  virtual caf::expected<device_identity>
  authenticate(const std::string& authorization) = 0;
  /// Uses one enrollment of the token in `authorization` for `device`;
  /// returns the identity and the device's new key.
  virtual caf::expected<std::pair<device_identity, std::string>>
  enroll(const std::string& authorization, const std::string& device) = 0;
  virtual caf::expected<org_quota> quota(const std::string& org) = 0;
  /// The org whose API token ("Bearer fqt_...") is in `authorization`;
  /// missing_key, unknown_key, expired_key or revoked_key.
  virtual caf::expected<std::string>
  authenticate_api(const std::string& authorization) = 0;

  /// The console's commands (tenancy_command.op): checks the arguments
  /// both backends share, then runs the backend's operation.
  caf::expected<tenancy_answer> run(const tenancy_command& cmd);

protected:
  // The keyed hash of a key or token under the node's secret.
  virtual std::string hash_of(const std::string& secret) const = 0;
  // `org` is a valid name; conflict when it exists.
  virtual caf::error create_org(const std::string& org) = 0;
  // Per org: name, active devices, points_per_second, bytes_per_day.
  virtual caf::expected<rows> list_orgs() = 0;
  // The new device's first key; `device` is a valid name.
  virtual caf::expected<std::string> add_device(const std::string& org,
                                                const std::string& device)
    = 0;
  // Per device of `org` ("": all): org, device, created, revoked, keys.
  virtual caf::expected<rows> list_devices(const std::string& org) = 0;
  // The new key; the old ones expire after `overlap_ms`.
  virtual caf::expected<std::string> rotate_key(const std::string& org,
                                                const std::string& device,
                                                int64_t overlap_ms)
    = 0;
  virtual caf::error revoke(const std::string& org,
                            const std::string& device)
    = 0;
  // `uses` and `ttl_ms` are positive.
  virtual caf::expected<std::string>
  create_token(const std::string& org, int64_t uses, int64_t ttl_ms) = 0;
  // How many tokens it revoked.
  virtual caf::expected<int64_t> revoke_tokens(const std::string& org) = 0;
  // A new API token of `org` (`ttl_ms` >= 0; 0: never expires).
  virtual caf::expected<std::string> create_api_token(const std::string& org,
                                                      int64_t ttl_ms)
    = 0;
  // Per API token of `org`: org, id, created, expires, revoked.
  virtual caf::expected<rows> list_api_tokens(const std::string& org) = 0;
  // no_api_token_error unless an unrevoked token of `org` has `id`.
  virtual caf::error revoke_api_token(const std::string& org,
                                      const std::string& id)
    = 0;
  // Both are >= 0; unknown_org when there is no such org.
  virtual caf::error set_quota(const std::string& org, org_quota q) = 0;

private:
  caf::expected<tenancy_answer> run_api_token(const tenancy_command& cmd);
};

} // namespace fleetd
