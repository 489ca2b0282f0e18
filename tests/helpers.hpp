#pragma once

// Helpers every kind of test needs, in one place (waiting, ports, children).

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>

#include <sys/types.h>

namespace fleetd::test {

/// Polls `condition` until it holds or `deadline` passes; returns its last
/// value. Waits on a condition, never a fixed sleep.
bool eventually(const std::function<bool()>& condition,
                std::chrono::milliseconds deadline);

/// A port on 127.0.0.1 where nothing listens (bound once, then closed); a
/// failed check (and 0) when no socket can be bound.
uint16_t free_port();

/// Waits up to `deadline` for child `pid` to end: its exit status (128 +
/// signal when killed), or nullopt while it still runs.
std::optional<int> wait_child(pid_t pid, std::chrono::milliseconds deadline);

} // namespace fleetd::test
