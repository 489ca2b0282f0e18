#include "messages/rollout_rules.hpp"

#include <string>

#include "messages/error.hpp"

namespace fleetd {

caf::error check_rollout_plan(const rollout_command& c) {
  auto bad = [](std::string what) {
    return make_error(ec::bad_config, "rollout: " + what);
  };
  if (c.change.fields == 0)
    return bad("nothing to set; give --set.OPTION=VALUE");
  auto share = [](double x) { return x > 0 && x <= 100; };
  if (!share(c.canary_percent))
    return bad("--canary must be in (0, 100]%");
  if (c.steps.empty() || c.steps.size() > max_rollout_steps)
    return bad("--steps: 1 to " + std::to_string(max_rollout_steps)
               + " shares, the last 100");
  double prev = c.canary_percent;
  for (auto x : c.steps) {
    if (!share(x) || x < prev)
      return bad("--steps: each share in (0, 100] and not below the one "
                 "before (and the canary)");
    prev = x;
  }
  if (c.steps.back() != 100)
    return bad("--steps: the last share must be 100");
  if (c.bake_ms < 0 || c.bake_ms > max_rollout_bake_ms)
    return bad("--bake: 0 to 30 days");
  auto& m = c.margins;
  for (auto x : {m.sync_success_points, m.storage_points, m.bandwidth_percent})
    if (!(x >= 0 && x <= 1e6))
      return bad("--margin.*: must be 0 or more");
  return caf::none;
}

} // namespace fleetd
