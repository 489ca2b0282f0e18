#include "runtime/jitter.hpp"

#include <algorithm>

namespace fleetd {

jitter_rng make_jitter_rng(uint64_t seed) {
  // Fleet-wide spread: devices must not retry in lockstep after an outage.
  uint64_t z = seed != 0 ? seed : std::random_device{}();
  // splitmix64's finalizer: every seed bit moves every output bit.
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return jitter_rng{static_cast<jitter_rng::result_type>(
    z % jitter_rng::modulus)};
}

std::chrono::milliseconds full_jitter_delay(std::chrono::milliseconds base,
                                            std::chrono::milliseconds cap,
                                            int64_t failures,
                                            jitter_rng& rng) {
  if (failures <= 0)
    return std::chrono::milliseconds{0};
  auto ceiling = base.count();
  // Stop doubling at the cap: 2^failures overflows long before it matters.
  for (int64_t i = 1; i < failures && ceiling < cap.count(); ++i)
    ceiling *= 2;
  ceiling = std::min(ceiling, cap.count());
  std::uniform_int_distribution<int64_t> pick(0, std::max<int64_t>(ceiling, 0));
  return std::chrono::milliseconds{pick(rng)};
}

std::chrono::milliseconds equal_jitter_delay(std::chrono::milliseconds interval,
                                             jitter_rng& rng) {
  auto full = std::max<int64_t>(interval.count(), 0);
  std::uniform_int_distribution<int64_t> pick(full / 2, full);
  return std::chrono::milliseconds{pick(rng)};
}

} // namespace fleetd
