#include "runtime/clock.hpp"

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
};

} // namespace

clock_ptr make_system_clock() {
  return std::make_shared<system_clock_impl>();
}

} // namespace fleetd
