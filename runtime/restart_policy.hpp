#pragma once

#include <chrono>
#include <cstdint>
#include <deque>

#include <caf/error.hpp>

namespace fleetd {

/// When a supervised actor is started again and when it counts as
/// restarting too often (the supervisor.* options).
struct restart_limits {
  /// Delay before the first restart; doubles with each consecutive death.
  std::chrono::milliseconds backoff_initial{100};
  /// Largest delay between restarts.
  std::chrono::milliseconds backoff_max{10000};
  /// A child that ran this long before dying starts again from backoff_initial.
  std::chrono::milliseconds stable_after{60000};
  /// More deaths than this within `window`: restarting too often.
  int64_t max_restarts = 5;
  std::chrono::milliseconds window{60000};
};

class option_set;

/// Declares supervisor.backoff-initial, supervisor.backoff-max,
/// supervisor.stable-after, supervisor.max-restarts, supervisor.window.
void declare(option_set& opts, restart_limits& x);

/// bad_config naming the option key when `x` cannot work.
caf::error validate(const restart_limits& x);

/// The restart bookkeeping of one child, on times given by the caller (a
/// steady clock in ms), so tests drive it without waiting.
class restart_policy {
public:
  explicit restart_policy(restart_limits limits);

  /// The child runs (first start or restart) since `now_ms`.
  void started(int64_t now_ms);

  /// The child died (or could not be started) at `now_ms`; returns how long
  /// to wait before starting it again.
  std::chrono::milliseconds died(int64_t now_ms);

  /// More than max_restarts deaths within the window ending at `now_ms`.
  bool too_often(int64_t now_ms) const;

  /// Deaths within the window ending at `now_ms`.
  int64_t recent_deaths(int64_t now_ms) const;

  int64_t deaths() const {
    return deaths_;
  }
  /// Starts after the first one.
  int64_t restarts() const {
    return starts_ > 0 ? starts_ - 1 : 0;
  }
  /// Deaths since the child last ran stable_after (sets the next delay).
  int64_t consecutive() const {
    return consecutive_;
  }

private:
  restart_limits limits_;
  int64_t deaths_ = 0;
  int64_t starts_ = 0;
  int64_t consecutive_ = 0;
  /// Start time of the running child; -1 before the first start.
  int64_t started_ms_ = -1;
  /// Death times within the last window (older ones are dropped on death).
  std::deque<int64_t> recent_;
};

} // namespace fleetd
