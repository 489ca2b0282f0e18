#pragma once

// The query API's source of log lines when a Loki sink runs: Loki's
// query_range in the org's own tenant (X-Scope-OrgID, set by the node from
// the caller's token), selecting the device's streams by a LogQL selector
// the node writes with the device name escaped.

#include <string>

#include <caf/expected.hpp>

#include "cloud/loki_sink.hpp"
#include "cloud/query_source.hpp"

namespace fleetd {

/// Log lines read from the Loki the sink of `cfg` writes: the device's
/// streams ({device_id="<device>"}), oldest first, each line with its
/// stream's labels but device_id (the labels the sink rendered into the
/// line stay in it). No series (bad_config).
caf::expected<query_source_ptr>
open_loki_query_source(const loki_sink_config& cfg);

} // namespace fleetd
