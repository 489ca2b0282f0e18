#include "cloud/sinks.hpp"

#include <set>

#include "messages/error.hpp"
#include "runtime/options.hpp"

namespace fleetd {

std::vector<sink_factory> sink_factories() {
  // One line per backend: {section, declare, make}.
  return {};
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
