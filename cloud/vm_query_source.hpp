#pragma once

// The query API's source for fine steps: VictoriaMetrics' query_range, the
// org enforced by the server (extra_label=org_id=<org>, and the org's own
// tenant on a cluster), never by the query text.

#include <string>

#include <caf/expected.hpp>

#include "cloud/query_source.hpp"
#include "cloud/vm_sink.hpp"

namespace fleetd {

/// The selector of one device's metric:
/// {__name__="<metric>",device_id="<device>"}.
std::string vm_selector(const std::string& metric, const std::string& device);

/// Series read from the VictoriaMetrics the sink of `cfg` writes: per step,
/// sum/count/min/max_over_time over a window of exactly the step, evaluated
/// at the step's last millisecond, so a step [t, t + step) aggregates the
/// samples stamped in it, as the store's sources do. No log lines
/// (ec::bad_config). nullptr for a cluster without select_url (nothing to
/// read), bad_config when `cfg` cannot be read.
caf::expected<query_source_ptr>
open_vm_query_source(const vm_sink_config& cfg);

} // namespace fleetd
