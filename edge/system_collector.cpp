#include "edge/system_collector.hpp"

#include <utility>

#include <caf/error.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "runtime/config_check.hpp"
#include "runtime/logger.hpp"
#include "runtime/options.hpp"

namespace fleetd {

namespace {

constexpr const char* component = "system_collector";

constexpr auto store_timeout = std::chrono::seconds(10);

bool finished(const system_collector_state& st) {
  return st.cfg.max_rounds > 0 && st.rounds >= st.cfg.max_rounds;
}

std::string join(const std::vector<std::string>& xs) {
  std::string out;
  for (auto& x : xs) {
    if (!out.empty())
      out += "; ";
    out += x;
  }
  return out;
}

void collect_round(
  system_collector_actor::stateful_pointer<system_collector_state> self) {
  auto& st = self->state;
  std::vector<std::string> problems;
  auto now = st.cfg.clock->now_ms();
  metric_samples samples;
  if (st.cfg.source)
    samples = st.cfg.source(now, &problems);
  else
    st.reader->read(now, samples, &problems);
  ++st.rounds;
  if (!problems.empty()) {
    // The same files stay missing every round: warn once, then only debug
    // (named for the collector: a scrape target's are its own).
    auto* who = st.cfg.name.c_str();
    if (st.read_problems == 0)
      log_warning_limited(who, "unreadable", "skipping unreadable metrics: ",
                          join(problems));
    else
      log_debug(who, "skipping unreadable metrics: ", join(problems));
    st.read_problems += static_cast<int64_t>(problems.size());
  }
  if (st.cfg.events)
    for (auto& e : st.cfg.events(now))
      self->send(st.cfg.storage, event_atom::value, e.kind, e.message);
  if (st.cfg.logs) {
    auto lines = st.cfg.logs(now);
    if (!lines.empty()) {
      st.lines_collected += static_cast<int64_t>(lines.size());
      // Stored before the samples below: the mailbox keeps this order.
      self->request(st.cfg.storage, store_timeout, store_atom::value,
                    std::move(lines))
        .then([self](int64_t n) { self->state.lines_stored += n; },
              [self](caf::error& err) {
                ++self->state.store_failures;
                log_warning_limited(component, "store_logs",
                                    "storing log lines failed: ", render(err));
              });
    }
  }
  if (samples.empty())
    return;
  st.points_collected += static_cast<int64_t>(samples.size());
  st.in_flight = true;
  self
    ->request(st.cfg.storage, store_timeout, store_atom::value,
              std::move(samples))
    .then(
      [self](int64_t committed) {
        self->state.points_stored += committed;
        self->state.in_flight = false;
        for (auto& x : self->state.cfg.on_stored)
          caf::anon_send(x, store_atom::value);
      },
      [self](caf::error& err) {
        // The round is lost, not retried: the next one reads fresh totals.
        ++self->state.store_failures;
        log_warning_limited(component, "store_samples",
                            "storing samples failed: ", render(err));
        self->state.in_flight = false;
      });
}

} // namespace

std::chrono::milliseconds next_round_in(int64_t now_ms,
                                        std::chrono::milliseconds interval) {
  auto iv = interval.count();
  if (iv <= 0)
    return interval;
  // The multiple of iv nearest to now + iv.
  auto next = (now_ms + iv + iv / 2) / iv * iv;
  return std::chrono::milliseconds(next - now_ms);
}

void declare(option_set& opts, system_collector_config& x) {
  using namespace std::chrono_literals;
  opts.add("collector.interval", x.interval, 10s,
           "How often the system collector reads node_exporter's series "
           "(rounds start on multiples of it on the clock)",
           10ms);
  opts.add("collector.rounds", x.max_rounds, 0, "rounds",
           "Stop collecting after this many rounds (0: never); sync goes on",
           0);
  declare(opts, x.metrics);
}

caf::error validate(const system_collector_config& x) {
  if (x.name.empty())
    return bad_config("system_collector_config.name: must not be empty");
  // The load generator is a collector too, with its own options.
  std::string group = x.name == "load_generator" ? "load." : "collector.";
  if (x.interval.count() < 0)
    return bad_config(group + "interval: must not be negative");
  if (x.max_rounds < 0)
    return bad_config(group + "rounds: must not be negative");
  // Another source (load, scrape) does not read node metrics.
  if (!x.source)
    return validate(x.metrics);
  return caf::none;
}

namespace {

using collector_ptr
  = system_collector_actor::stateful_pointer<system_collector_state>;

// One round now, unless storage still holds the last one.
void take_round(collector_ptr self) {
  auto& st = self->state;
  if (st.in_flight) {
    // Storage is slow: drop this round rather than queue requests.
    ++st.rounds_skipped;
    log_debug(component, "previous store unanswered, round skipped");
  } else {
    collect_round(self);
  }
}

// The next round of the current timer chain.
void arm_timer(collector_ptr self) {
  auto& st = self->state;
  self->delayed_send(self,
                     st.cfg.clock->real(
                       next_round_in(st.cfg.clock->now_ms(), st.interval)),
                     tick_atom::value, st.timer_generation);
}

} // namespace

system_collector_actor::behavior_type
system_collector(system_collector_actor::stateful_pointer<system_collector_state> self,
                 system_collector_config cfg) {
  if (stop_on_bad_config(self, "system_collector", validate(cfg)))
    return system_collector_actor::behavior_type::make_empty_behavior();
  if (!cfg.clock)
    cfg.clock = make_system_clock();
  self->state.cfg = std::move(cfg);
  self->state.interval = self->state.cfg.interval;
  if (!self->state.cfg.source)
    self->state.reader
      = std::make_shared<node_metrics_reader>(self->state.cfg.metrics);
  self->send(self, tick_atom::value, int64_t{0});
  return {
    [self](tick_atom) {
      // Another actor's tick: one extra round, no second timer chain.
      auto& st = self->state;
      if (!finished(st))
        take_round(self);
    },
    [self](tick_atom, int64_t generation) {
      auto& st = self->state;
      if (generation != st.timer_generation || finished(st))
        return;
      take_round(self);
      if (!finished(st))
        arm_timer(self);
    },
    [self](capabilities_atom, const capability_report& report) {
      auto& st = self->state;
      auto wanted = report.settings.metric_interval_ms > 0
                      ? std::chrono::milliseconds{report.settings
                                                    .metric_interval_ms}
                      : st.cfg.interval;
      if (wanted == st.interval)
        return;
      log_info(component, st.cfg.name, ": interval ",
               to_duration_text(st.interval), " -> ",
               to_duration_text(wanted));
      st.interval = wanted;
      // The old chain's next tick may be an old interval away: a new one.
      ++st.timer_generation;
      if (!finished(st))
        arm_timer(self);
    },
    [self](stats_atom) {
      auto& st = self->state;
      actor_stats out;
      out.name = st.cfg.name;
      out.state = finished(st) && !st.in_flight ? "done" : "collecting";
      out.counters = {{"rounds", st.rounds},
                      {"interval_ms", st.interval.count()},
                      {"points_collected", st.points_collected},
                      {"points_stored", st.points_stored},
                      {"store_failures", st.store_failures},
                      {"read_problems", st.read_problems},
                      {"rounds_skipped", st.rounds_skipped},
                      {"lines_collected", st.lines_collected},
                      {"lines_stored", st.lines_stored}};
      return out;
    },
  };
}

} // namespace fleetd
