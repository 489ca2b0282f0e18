#pragma once

// Waiting without fixed sleeps, for the tests (tests/helpers.hpp) and the
// servers they and fleetd-bench start (pg_server).

#include <chrono>
#include <functional>
#include <optional>

#include <sys/types.h>

namespace fleetd {

/// Polls `condition` every 10 ms until it holds or `deadline` passes;
/// returns its last value.
bool poll_until(const std::function<bool()>& condition,
                std::chrono::milliseconds deadline);

/// Waits up to `deadline` for child `pid` to end: its exit status (128 +
/// signal when killed), or nullopt while it still runs.
std::optional<int> wait_for_child(pid_t pid,
                                  std::chrono::milliseconds deadline);

} // namespace fleetd
