#pragma once

// The console's tenancy commands as the tests spell them.

#include <string>
#include <utility>

#include "messages/types.hpp"

namespace fleetd::test {

/// The command `name` (org-create, device-add, ...) for `org` and `device`.
inline tenancy_command op(std::string name, std::string org,
                          std::string device = {}) {
  tenancy_command cmd;
  cmd.op = std::move(name);
  cmd.org = std::move(org);
  cmd.device = std::move(device);
  return cmd;
}

} // namespace fleetd::test
