#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "cloud/sink_backend.hpp"

namespace fleetd {

class option_set;

/// One kind of sink, configured by the options of its section
/// (`victoria.*`, `loki.*`, ...). A new backend adds one entry to
/// sink_factories() (cloud/sinks.cpp) and nothing else.
struct sink_factory {
  std::string section;
  /// Declares the section's options into state the factory owns.
  std::function<void(option_set&)> declare;
  /// The backend when its options configure one, nullptr when they leave
  /// it off; an error when they configure it wrongly.
  std::function<caf::expected<std::shared_ptr<sink_backend>>()> make;
};

/// Every kind of sink this build knows, each with fresh option state.
std::vector<sink_factory> sink_factories();

struct sinks_options {
  std::vector<sink_factory> factories = sink_factories();
};

/// Declares every factory's section.
void declare(option_set& opts, sinks_options& x);

/// The configured sinks, in factory order; bad_config when one cannot be
/// made or two share a name (a name keys its cursor).
caf::expected<std::vector<std::shared_ptr<sink_backend>>>
make_sinks(const sinks_options& x);

} // namespace fleetd
