#pragma once

#include <cstdint>
#include <string>
#include <utility>

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
/// store (embedded_tenancy) or PostgreSQL. Calls block: only a detached
/// actor makes them.
class tenancy_backend {
public:
  virtual ~tenancy_backend() = default;

  /// Who the key in `authorization` ("Bearer fdk_...") belongs to.
  virtual caf::expected<device_identity>
  authenticate(const std::string& authorization) = 0;
  /// Uses one enrollment of the token in `authorization` for `device`;
  /// returns the identity and the device's new key.
  virtual caf::expected<std::pair<device_identity, std::string>>
  enroll(const std::string& authorization, const std::string& device) = 0;
  virtual caf::expected<org_quota> quota(const std::string& org) = 0;
  /// The console's commands (tenancy_command.op).
  virtual caf::expected<tenancy_answer> run(const tenancy_command& cmd) = 0;
};

} // namespace fleetd
