#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "cloud/query_source.hpp"
#include "cloud/sink_backend.hpp"

namespace fleetd {

class option_set;

/// What the query API reads from a sink's backend.
enum class query_role {
  none,
  /// Series at any step (VictoriaMetrics).
  series,
  /// Series at steps of whole hours (ClickHouse rollups).
  hourly_series,
  /// Log lines (Loki).
  logs,
};

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
  query_role role = query_role::none;
  /// The query API's reader of the backend the options configure, nullptr
  /// when they leave it off.
  std::function<caf::expected<query_source_ptr>()> reader;
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

/// The query API's readers of the configured backends, by role.
caf::expected<std::map<query_role, query_source_ptr>>
make_sink_readers(const sinks_options& x);

} // namespace fleetd
