#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <cstdint>
#include <string>
#include <vector>

#include "edge/node_metrics.hpp"
#include "messages/interfaces.hpp"
#include "messages/types.hpp"
#include "runtime/clock.hpp"

namespace fleetd {

/// Where a collector's samples come from: one call per round.
using sample_source =
  std::function<metric_samples(int64_t now_ms, std::vector<std::string>* problems)>;

/// Log lines a collector stores each round (besides its samples).
using log_source = std::function<log_lines(int64_t now_ms)>;

/// Events (kind, message) a collector records each round.
using event_source = std::function<event_records(int64_t now_ms)>;

struct system_collector_config {
  /// Name in the console; a second collector (e.g. load) gets its own.
  std::string name = "system_collector";
  /// Empty: node_exporter's series as `metrics` says (node_metrics_reader).
  sample_source source;
  /// Optional: log lines and events to store each round as well.
  log_source logs;
  event_source events;
  node_metrics_config metrics;
  /// Rounds after the first start on multiples of it on `clock` (as
  /// Telegraf's round_interval), so every collector's round of one instant
  /// reaches storage together and shares one commit.
  std::chrono::milliseconds interval{10000};
  /// Stop collecting after this many rounds; 0 = never.
  int64_t max_rounds = 0;
  /// Timestamps come from here (injectable); the wall clock when unset.
  clock_ptr clock;
  /// Where samples go.
  storage_actor storage;
  /// Told (store_atom) after each round is stored: the sync actors, so tier
  /// 3 can forward at once.
  std::vector<caf::actor> on_stored;
};

class option_set;

/// Declares collector.interval, collector.rounds and the node_metrics
/// options.
void declare(option_set& opts, system_collector_config& x);

/// bad_config naming the option key (or the field) when `x` cannot work.
caf::error validate(const system_collector_config& x);

struct system_collector_state {
  system_collector_config cfg;
  /// Made at start when cfg.source is empty; keeps its caches across rounds.
  std::shared_ptr<node_metrics_reader> reader;
  int64_t rounds = 0, points_collected = 0, points_stored = 0,
          store_failures = 0, read_problems = 0, lines_collected = 0,
          lines_stored = 0;
  /// Ticks that found the previous store still unanswered.
  int64_t rounds_skipped = 0;
  /// The round interval now: cfg.interval unless the settings say otherwise.
  std::chrono::milliseconds interval{0};
  /// The timer's generation: a new interval starts a new chain.
  int64_t timer_generation = 0;
  /// One store request at a time.
  bool in_flight = false;
  static inline const char* name = "system_collector";
};

/// How long from `now_ms` to the round after the one due nearest `now_ms`:
/// the next multiple of `interval`, never less than half an interval away,
/// so a timer firing a little early or late keeps one round per interval.
std::chrono::milliseconds next_round_in(int64_t now_ms,
                                        std::chrono::milliseconds interval);

/// Every `interval` reads the system metrics and stores them. A round is
/// skipped (and counted) while the previous store is unanswered, so a slow
/// storage never piles up requests. A `tick` from another actor takes one
/// extra round now without starting a second timer. A capability report with
/// a metric_interval_ms (0: cfg.interval) other than the current interval
/// re-arms the timer at once with the new one.
system_collector_actor::behavior_type
system_collector(system_collector_actor::stateful_pointer<system_collector_state> self,
                 system_collector_config cfg);

} // namespace fleetd
