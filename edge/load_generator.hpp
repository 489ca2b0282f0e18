#pragma once

#include <cstdint>

#include "edge/system_collector.hpp"

namespace fleetd {

/// Synthetic series (`fleetd_load_value{series="N"}`) for load tests, crash
/// tests and sizing a device before real collectors run on it. Run it as a
/// collector: `system_collector` with this as its `source`.
sample_source load_source(int64_t series);

} // namespace fleetd
