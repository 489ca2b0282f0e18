#pragma once

// Helpers every kind of test needs, in one place (waiting, ports, children).

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "messages/stream_codec.hpp"

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

/// A raw TCP connection to 127.0.0.1:`port` (reads time out after 10 s).
int raw_connect(uint16_t port);

/// A raw connection to 127.0.0.1:`port` upgraded to a sync stream (GET
/// /v5/stream answered 101; a failed check otherwise): its socket.
int raw_stream(uint16_t port);

/// Sends `frame` on a raw stream; the one answer frame that comes back
/// before the node closes it (failed checks otherwise).
answer_frame raw_frame_exchange(int fd, const std::string& frame);

/// What `fd` receives until the peer closes (or 10 s pass).
std::string read_to_close(int fd);

} // namespace fleetd::test
