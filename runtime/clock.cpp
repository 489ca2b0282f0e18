#include "runtime/clock.hpp"

#include <algorithm>
#include <chrono>

namespace fleetd {

namespace {

class system_clock_impl : public clock {
public:
  int64_t now_ms() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
  }

  int64_t steady_ms() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
  }
};

class scaled_clock_impl : public clock {
public:
  explicit scaled_clock_impl(int64_t speed)
    : speed_(speed),
      start_wall_(std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count()),
      start_(std::chrono::steady_clock::now()) {
    // nop
  }

  int64_t now_ms() const override {
    auto elapsed = std::chrono::duration_cast<std::chrono::microseconds>(
                     std::chrono::steady_clock::now() - start_)
                     .count();
    return start_wall_ + elapsed * speed_ / 1000;
  }

  std::chrono::milliseconds real(std::chrono::milliseconds d) const override {
    // At least 1 ms: a zero timer would spin.
    return std::chrono::milliseconds(std::max<int64_t>(1, d.count() / speed_));
  }

private:
  int64_t speed_;
  int64_t start_wall_;
  std::chrono::steady_clock::time_point start_;
};

} // namespace

clock_ptr make_scaled_clock(int64_t speed) {
  if (speed <= 1)
    return make_system_clock();
  return std::make_shared<scaled_clock_impl>(speed);
}

clock_ptr make_system_clock() {
  return std::make_shared<system_clock_impl>();
}

} // namespace fleetd
