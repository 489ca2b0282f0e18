#include "edge/load_generator.hpp"

#include <limits>
#include <memory>

#include "runtime/options.hpp"

namespace fleetd {

double load_nan(int64_t round) {
  // A quiet NaN whose low 32 bits name the round.
  return double_of(0x7ff8000000000000ULL | static_cast<uint32_t>(round));
}

sample_source load_source(int64_t series, bool special) {
  auto round = std::make_shared<int64_t>(0);
  return [series, special, round](int64_t now_ms, std::vector<std::string>*) {
    ++*round;
    metric_samples xs;
    xs.reserve(static_cast<size_t>(series));
    for (int64_t i = 0; i < series; ++i) {
      metric_sample x;
      x.name = "fleetd_load_value";
      x.labels = {{"series", std::to_string(i)}};
      x.timestamp_ms = now_ms;
      // A value that names its round and series, so tests can find it again.
      x.value = static_cast<double>(*round) * 1e6 + static_cast<double>(i);
      xs.push_back(std::move(x));
    }
    if (special) {
      const auto inf = std::numeric_limits<double>::infinity();
      std::pair<const char*, double> values[] = {{"nan", load_nan(*round)},
                                                 {"inf", inf},
                                                 {"neg_inf", -inf},
                                                 {"neg_zero", -0.0}};
      for (auto& [kind, value] : values) {
        metric_sample x;
        x.name = "fleetd_load_special";
        x.labels = {{"kind", kind}};
        x.timestamp_ms = now_ms;
        x.value = value;
        xs.push_back(std::move(x));
      }
    }
    return xs;
  };
}

log_source load_log_source(int64_t lines) {
  auto round = std::make_shared<int64_t>(0);
  return [lines, round](int64_t now_ms) {
    ++*round;
    log_lines xs;
    for (int64_t i = 0; i < lines; ++i)
      xs.push_back(log_line{{{"job", "fleetd_load"}},
                            now_ms * 1000000 + i,
                            "load round " + std::to_string(*round) + " line "
                              + std::to_string(i)});
    return xs;
  };
}

event_source load_event_source(int64_t every) {
  auto round = std::make_shared<int64_t>(0);
  return [every, round](int64_t now_ms) {
    event_records xs;
    if (every > 0 && ++*round % every == 0) {
      event_record e;
      e.timestamp_ms = now_ms;
      e.kind = "load_mark";
      e.message = "load round " + std::to_string(*round);
      xs.push_back(std::move(e));
    }
    return xs;
  };
}

void declare(option_set& opts, load_config& x) {
  using namespace std::chrono_literals;
  opts.add("load.series", x.series, 0, "series",
           "Synthetic load: series written per round (0: off); for load and "
           "crash tests",
           0, 1000000);
  opts.add("load.interval", x.interval, 1s,
           "Synthetic load: time between rounds", 0ms);
  opts.add("load.rounds", x.rounds, 0, "rounds",
           "Synthetic load: stop after this many rounds (0: never)", 0);
  opts.add("load.log-lines", x.log_lines, 0, "lines",
           "Synthetic load: log lines written per round (0: none)", 0,
           1000000);
  opts.add("load.event-every", x.event_every, 0, "rounds",
           "Synthetic load: one event every this many rounds (0: none)", 0);
  opts.add("load.special-values", x.special_values, false,
           "Synthetic load: each round also writes NaN (payload = the round), "
           "+Inf, -Inf and -0.0 as series fleetd_load_special{kind=...}, to "
           "check that they are stored bit for bit");
}

system_collector_config load_collector(const load_config& x) {
  system_collector_config out;
  out.name = "load_generator";
  out.source = load_source(x.series, x.special_values);
  if (x.log_lines > 0)
    out.logs = load_log_source(x.log_lines);
  if (x.event_every > 0)
    out.events = load_event_source(x.event_every);
  out.interval = x.interval;
  out.max_rounds = x.rounds;
  return out;
}

} // namespace fleetd
