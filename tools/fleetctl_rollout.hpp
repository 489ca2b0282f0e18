#pragma once

// fleetctl rollout start|status|halt|resume|rollback on a cloud node.

#include <chrono>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <caf/scoped_actor.hpp>

#include "messages/interfaces.hpp"

namespace fleetd {

class option_set;

/// What `fleetctl rollout start` takes besides --set.* and --org.
struct rollout_options {
  std::string canary;
  std::string steps;
  bool by_tier = false;
  std::chrono::milliseconds bake{0};
  int64_t margin_sync_success = 0;
  int64_t margin_storage = 0;
  int64_t margin_bandwidth = 0;
};

/// Declares --canary, --steps, --by-tier, --bake and --margin.*.
void declare(option_set& opts, rollout_options& x);

/// True when `word` is "rollout".
bool is_rollout_command(const std::string& word);

/// The command `args` ({"rollout", OP}) asks for, or why it cannot run
/// (ec::bad_config); `change` is the --set.* change (start only).
caf::expected<rollout_command>
rollout_command_of(const std::vector<std::string>& args,
                   const rollout_options& opt, const std::string& org,
                   const caf::expected<settings_change>& change);

/// A share written as "5%" or "5" (percent, in (0, 100]).
caf::expected<double> parse_percent(const std::string& text);

/// Runs it on `node` and prints the rollout's state; the exit code: 0, 1
/// (node failed) or 2 (refused).
int run_rollout(caf::scoped_actor& self, const inspector_actor& node,
                const rollout_command& cmd, bool json, caf::timespan timeout);

std::string to_text(const rollout_status& x);
std::string to_json(const rollout_status& x);

/// Usage lines for --help.
extern const char* const rollout_usage;

} // namespace fleetd
