#pragma once

#include <chrono>
#include <cstdint>

#include "edge/system_collector.hpp"

namespace fleetd {

/// The synthetic load (load.* options); a collector runs it when series > 0.
struct load_config {
  int64_t series = 0;
  std::chrono::milliseconds interval{1000};
  int64_t rounds = 0;
  int64_t log_lines = 0;
  int64_t event_every = 0;
  bool special_values = false;
};

class option_set;

/// Declares the load.* options.
void declare(option_set& opts, load_config& x);

/// The collector that writes `x`'s load (named "load_generator"); the
/// caller fills clock, storage and on_stored.
system_collector_config load_collector(const load_config& x);

/// Synthetic series (`fleetd_load_value{series="N"}`) for load tests, crash
/// tests and sizing a device before real collectors run on it. Run it as a
/// collector: `system_collector` with this as its `source`. With `special`
/// each round also writes the values a REAL column loses, one series each
/// (`fleetd_load_special{kind=...}`): "nan" (a quiet NaN whose payload is the
/// round), "inf", "neg_inf" and "neg_zero".
sample_source load_source(int64_t series, bool special = false);

/// The NaN the special series "nan" carries in `round`.
double load_nan(int64_t round);

/// `lines` log lines per round (stream {job="fleetd_load"}), each naming its
/// round and number.
log_source load_log_source(int64_t lines);

/// One event (kind "load_mark") every `every` rounds, naming the round.
event_source load_event_source(int64_t every);

} // namespace fleetd
