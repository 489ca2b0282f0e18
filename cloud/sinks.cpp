#include "cloud/sinks.hpp"

#include <set>

#include "cloud/clickhouse_sink.hpp"
#include "cloud/loki_sink.hpp"
#include "cloud/vm_sink.hpp"
#include "messages/error.hpp"
#include "runtime/options.hpp"

namespace fleetd {

namespace {

// A factory over config `Config` (declare(opts, cfg), make(cfg)); the sink
// is configured when its url is set.
template <class Config, class Make>
sink_factory factory(std::string section, Make make) {
  auto cfg = std::make_shared<Config>();
  return {std::move(section),
          [cfg](option_set& opts) { declare(opts, *cfg); },
          [cfg, make]() -> caf::expected<std::shared_ptr<sink_backend>> {
            if (cfg->url.empty())
              return std::shared_ptr<sink_backend>{};
            auto s = make(*cfg);
            if (!s)
              return s.error();
            return std::shared_ptr<sink_backend>{std::move(*s)};
          }};
}

} // namespace

std::vector<sink_factory> sink_factories() {
  // One line per backend: {section, declare, make}.
  return {factory<vm_sink_config>("victoria", make_vm_sink),
          factory<loki_sink_config>("loki", make_loki_sink),
          factory<clickhouse_config>("clickhouse", make_clickhouse_sink)};
}

void declare(option_set& opts, sinks_options& x) {
  for (auto& f : x.factories)
    if (f.declare)
      f.declare(opts);
}

caf::expected<std::vector<std::shared_ptr<sink_backend>>>
make_sinks(const sinks_options& x) {
  std::vector<std::shared_ptr<sink_backend>> out;
  std::set<std::string> names;
  for (auto& f : x.factories) {
    auto s = f.make();
    if (!s)
      return make_error(ec::bad_config, f.section + ": " + render(s.error()));
    if (!*s)
      continue;
    if (!names.insert((*s)->name()).second)
      return make_error(ec::bad_config, f.section + ": a sink named '"
                                          + (*s)->name() + "' exists already");
    out.push_back(std::move(*s));
  }
  return out;
}

} // namespace fleetd
