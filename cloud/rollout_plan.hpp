#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <caf/error.hpp>

#include "messages/rollout_rules.hpp"
#include "messages/types.hpp"

namespace fleetd {

/// bad_config naming what is wrong with a start command: its plan
/// (check_rollout_plan) or a value the settings cannot carry.
caf::error check_rollout_start(const rollout_command& c);

/// A device as the rollout plans it: its store id and reported tier.
struct rollout_device {
  std::string id;
  /// 0: the device has not reported one.
  int64_t tier = 0;
};

/// The org part of a store device id ("org/device"; "" without an org).
std::string org_of(const std::string& device_id);

/// The stages of `c` over devices of `tiers`: the canary, then each step;
/// with by_tier the same per tier, tier 1 first and unknown (-1) last.
std::vector<rollout_stage> plan_stages(const rollout_command& c,
                                       const std::set<int64_t>& tiers);

/// The devices that carry the new settings once stage `k` of `stages` is
/// done: per tier (or of all) the first ceil(percent) of them in the order
/// of a hash of their id, so the same devices every time.
std::set<std::string> stage_targets(const std::vector<rollout_device>& devices,
                                    const std::vector<rollout_stage>& stages,
                                    size_t k);

/// What one device did during a bake window (sync_outcome's figures).
struct device_window {
  int64_t accepted = 0;
  int64_t failed = 0;
  int64_t missing = 0;
  int64_t bytes = 0;
  int64_t records = 0;
};

/// The health of `group` over the window; `storage` holds each device's
/// used share of its disk (absent: not reported).
rollout_health group_health(const std::set<std::string>& group,
                            const std::map<std::string, device_window>& window,
                            const std::map<std::string, double>& storage);

/// The health of the changed devices (in `pushed`) and of the unchanged
/// ones among `devices`, as stage `stage` is judged: with a tier (by tier)
/// only that tier's devices, so tiers of other figures are not compared.
std::pair<rollout_health, rollout_health>
stage_health(const std::vector<rollout_device>& devices,
             const std::set<std::string>& pushed, const rollout_stage& stage,
             const std::map<std::string, device_window>& window,
             const std::map<std::string, double>& storage);

/// Why the changed group is worse than the unchanged one by more than the
/// margins (empty: it is not); a figure one group lacks is not compared.
std::string judge(const rollout_health& changed,
                  const rollout_health& unchanged, const rollout_margins& m);

} // namespace fleetd
