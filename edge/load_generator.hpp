#pragma once

#include <chrono>
#include <cstdint>

#include "messages/interfaces.hpp"
#include "runtime/clock.hpp"

namespace fleetd {

struct load_generator_config {
  /// Series written per round; each gets one sample per round.
  int64_t series = 100;
  std::chrono::milliseconds interval{1000};
  /// Stop after this many rounds; 0 = never.
  int64_t max_rounds = 0;
  clock_ptr clock;
  storage_actor storage;
};

struct load_generator_state {
  load_generator_config cfg;
  int64_t rounds = 0;
  int64_t points_collected = 0;
  int64_t points_stored = 0;
  int64_t store_failures = 0;
  int64_t rounds_skipped = 0;
  bool in_flight = false;
  static inline const char* name = "load_generator";
};

/// Writes synthetic series (`fleetd_load_value{series="N"}`) as fast as the
/// interval and the storage allow: for load tests, crash tests and sizing a
/// device before real collectors run on it.
collector_actor::behavior_type
load_generator(collector_actor::stateful_pointer<load_generator_state> self,
               load_generator_config cfg);

} // namespace fleetd
