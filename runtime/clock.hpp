#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

namespace fleetd {

/// Where actors read the time; tests inject a manual clock to run hours in
/// seconds. Timers only trigger work; what the work records comes from here.
class clock {
public:
  virtual ~clock() = default;

  /// Unix time in milliseconds.
  virtual int64_t now_ms() const = 0;

  /// Milliseconds that never jump (NTP, an operator setting the date): for
  /// waits and intervals. Only differences mean anything.
  virtual int64_t steady_ms() const {
    return now_ms();
  }

  /// How long a timer must run for `d` of this clock's time to pass.
  virtual std::chrono::milliseconds real(std::chrono::milliseconds d) const {
    return d;
  }
};

using clock_ptr = std::shared_ptr<clock>;

/// The wall clock.
clock_ptr make_system_clock();

/// Simulated time for soak and fault tests of whole node processes: starts
/// at the wall clock and runs `speed` times faster; timers shrink to match.
clock_ptr make_scaled_clock(int64_t speed);

/// A clock that moves only when told to.
class manual_clock : public clock {
public:
  explicit manual_clock(int64_t start_ms) : now_(start_ms) {
    // nop
  }

  int64_t now_ms() const override {
    return now_.load();
  }

  void advance(int64_t ms) {
    now_ += ms;
  }

  void set(int64_t ms) {
    now_ = ms;
  }

private:
  std::atomic<int64_t> now_;
};

} // namespace fleetd
