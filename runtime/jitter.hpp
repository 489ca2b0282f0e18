#pragma once

#include <chrono>
#include <cstdint>
#include <random>

// Shared by the device's link backoff (edge/backoff) and the cloud's sinks.

namespace fleetd {

/// The jitter's random source: 8 bytes of state are enough to spread retries.
using jitter_rng = std::minstd_rand;

/// A jitter source for `seed` (0: one from std::random_device). The seed is
/// mixed first: minstd's first draws from nearby seeds (device numbers) are
/// nearly equal, which would retry a fleet in lockstep.
jitter_rng make_jitter_rng(uint64_t seed);

/// Full-jitter exponential backoff after `failures` consecutive failures:
/// uniform in [0, min(cap, base * 2^(failures - 1))]; 0 for no failures.
std::chrono::milliseconds full_jitter_delay(std::chrono::milliseconds base,
                                            std::chrono::milliseconds cap,
                                            int64_t failures,
                                            jitter_rng& rng);

/// Equal jitter on a fixed interval: uniform in [interval / 2, interval], so
/// a device never waits longer than `interval` nor probes more often than
/// twice per interval, and a fleet's probes spread over half the interval.
std::chrono::milliseconds equal_jitter_delay(std::chrono::milliseconds interval,
                                             jitter_rng& rng);

} // namespace fleetd
