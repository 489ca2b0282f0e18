#include "edge/load_generator.hpp"

#include <limits>
#include <memory>

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

} // namespace fleetd
