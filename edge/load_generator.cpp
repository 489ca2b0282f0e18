#include "edge/load_generator.hpp"

#include <cmath>

#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "runtime/logger.hpp"

namespace fleetd {

namespace {

constexpr auto store_timeout = std::chrono::seconds(30);

using self_ptr = collector_actor::stateful_pointer<load_generator_state>;

bool finished(const load_generator_state& st) {
  return st.cfg.max_rounds > 0 && st.rounds >= st.cfg.max_rounds;
}

void round(self_ptr self) {
  auto& st = self->state;
  ++st.rounds;
  auto now = st.cfg.clock->now_ms();
  metric_samples xs;
  xs.reserve(static_cast<size_t>(st.cfg.series));
  for (int64_t i = 0; i < st.cfg.series; ++i) {
    metric_sample x;
    x.name = "fleetd_load_value";
    x.labels = {{"series", std::to_string(i)}};
    x.timestamp_ms = now;
    // A value that names its round and series, so tests can find it again.
    x.value = static_cast<double>(st.rounds) * 1e6 + static_cast<double>(i);
    xs.push_back(std::move(x));
  }
  st.points_collected += st.cfg.series;
  st.in_flight = true;
  self->request(st.cfg.storage, store_timeout, store_atom::value,
                std::move(xs))
    .then(
      [self](int64_t n) {
        self->state.points_stored += n;
        self->state.in_flight = false;
      },
      [self](caf::error& err) {
        ++self->state.store_failures;
        self->state.in_flight = false;
        log_debug("load_generator", "store failed: ", render(err));
      });
}

} // namespace

collector_actor::behavior_type
load_generator(collector_actor::stateful_pointer<load_generator_state> self,
               load_generator_config cfg) {
  self->state.cfg = std::move(cfg);
  self->send(self, tick_atom::value);
  return {
    [self](tick_atom) {
      auto& st = self->state;
      auto own_tick = self->current_sender() == self->ctrl();
      if (finished(st))
        return;
      if (st.in_flight)
        ++st.rounds_skipped;
      else
        round(self);
      if (own_tick && !finished(st))
        self->delayed_send(self, st.cfg.interval, tick_atom::value);
    },
    [self](stats_atom) {
      auto& st = self->state;
      actor_stats out;
      out.name = load_generator_state::name;
      out.state = finished(st) && !st.in_flight ? "done" : "writing";
      out.counters = {{"rounds", st.rounds},
                      {"points_collected", st.points_collected},
                      {"points_stored", st.points_stored},
                      {"store_failures", st.store_failures},
                      {"rounds_skipped", st.rounds_skipped}};
      return out;
    },
  };
}

} // namespace fleetd
