#include "edge/load_generator.hpp"

#include <memory>

namespace fleetd {

sample_source load_source(int64_t series) {
  auto round = std::make_shared<int64_t>(0);
  return [series, round](int64_t now_ms, std::vector<std::string>*) {
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
    return xs;
  };
}

} // namespace fleetd
