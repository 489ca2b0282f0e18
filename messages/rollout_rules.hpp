#pragma once

// The rules of a rollout's plan, shared by the cloud and fleetctl.

#include <cstddef>
#include <cstdint>

#include <caf/error.hpp>

#include "messages/types.hpp"

namespace fleetd {

/// Most steps a rollout may name after its canary.
constexpr size_t max_rollout_steps = 20;

/// Longest bake a rollout may ask for (30 days).
constexpr int64_t max_rollout_bake_ms = int64_t{30} * 24 * 3600 * 1000;

/// bad_config naming what is wrong with a start command's plan: no setting,
/// a canary or step outside (0, 100], steps not ascending or not ending at
/// 100, a bake out of range, a negative margin. The settings' values are
/// the cloud's to check (check_rollout_start).
caf::error check_rollout_plan(const rollout_command& c);

} // namespace fleetd
