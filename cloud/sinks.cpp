#include "cloud/sinks.hpp"

#include <set>

#include "cloud/clickhouse_query_source.hpp"
#include "cloud/loki_query_source.hpp"
#include "cloud/vm_query_source.hpp"
#include "messages/error.hpp"
#include "runtime/options.hpp"

namespace fleetd {

namespace {

// A factory over config `Config` (declare(opts, cfg), make(cfg)); the sink
// is configured when its url is set.
template <class Config, class Make, class Read>
sink_factory factory(std::string section, Make make, query_role role,
                     Read read) {
  auto cfg = std::make_shared<Config>();
  auto reader = [cfg, read]() -> caf::expected<query_source_ptr> {
    if (cfg->url.empty())
      return query_source_ptr{};
    return read(*cfg);
  };
  return {std::move(section),
          [cfg](option_set& opts) { declare(opts, *cfg); },
          [cfg, make]() -> caf::expected<std::shared_ptr<sink_backend>> {
            if (cfg->url.empty())
              return std::shared_ptr<sink_backend>{};
            auto s = make(*cfg);
            if (!s)
              return s.error();
            return std::shared_ptr<sink_backend>{std::move(*s)};
          },
          role, reader};
}

} // namespace

std::vector<sink_factory> sink_factories() {
  // One line per backend: {section, declare, make}.
  return {factory<vm_sink_config>("victoria", make_vm_sink, query_role::series,
                                  open_vm_query_source),
          factory<loki_sink_config>("loki", make_loki_sink, query_role::logs,
                                    open_loki_query_source),
          factory<clickhouse_config>("clickhouse", make_clickhouse_sink,
                                     query_role::hourly_series,
                                     open_clickhouse_query_source)};
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

caf::expected<std::map<query_role, query_source_ptr>>
make_sink_readers(const sinks_options& x) {
  std::map<query_role, query_source_ptr> out;
  for (auto& f : x.factories) {
    if (!f.reader || f.role == query_role::none)
      continue;
    auto r = f.reader();
    if (!r)
      return make_error(ec::bad_config, f.section + ": " + render(r.error()));
    if (*r)
      out[f.role] = std::move(*r);
  }
  return out;
}

} // namespace fleetd
