#pragma once

// fleetctl's tenancy commands (org, enroll, device, quota) on a cloud node.

#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <caf/scoped_actor.hpp>

#include "messages/interfaces.hpp"

namespace fleetd {

/// What the tenancy commands take besides their words.
struct tenancy_options {
  std::string org;
  int64_t uses = 1;
  std::chrono::milliseconds expires{0};
  std::chrono::milliseconds overlap{0};
  /// token create: the API token's lifetime (0: never expires).
  std::chrono::milliseconds ttl{0};
  int64_t points_per_second = 0;
  int64_t bytes_per_day = 0;
};

/// True when `word` starts a tenancy command.
bool is_tenancy_command(const std::string& word);

/// The command `args` (e.g. {"device", "add", "DEV"}) asks for, or why it
/// cannot run (ec::bad_config, naming the usage).
caf::expected<tenancy_command>
tenancy_command_of(const std::vector<std::string>& args,
                   const tenancy_options& opt);

/// Runs it on `node` and prints the answer (a key or token alone on stdout,
/// shown once); the exit code: 0, 1 (node failed) or 2 (refused).
int run_tenancy(caf::scoped_actor& self, const inspector_actor& node,
                const tenancy_command& cmd, bool json,
                caf::timespan timeout);

/// Usage lines for --help.
extern const char* const tenancy_usage;

} // namespace fleetd
