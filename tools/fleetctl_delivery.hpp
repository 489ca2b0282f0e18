#pragma once

// fleetctl delivery: a cloud node's delivery per device, stream and hour.

#include <string>

#include <caf/scoped_actor.hpp>

#include "messages/interfaces.hpp"
#include "runtime/options.hpp"

namespace fleetd {

struct delivery_options {
  /// The hours shown: those from this long ago until now.
  option_set::duration since{std::chrono::hours(24)};
};

/// Declares --since (the device is --device, shared with query and logs).
void declare(option_set& opts, delivery_options& x);

/// A table (device, stream, hour, received, duplicates, missing, declared
/// drops, ratio) and a totals line.
std::string delivery_text(const delivery_rows& xs);

/// {"rows": [...], "totals": {...}}, each with its ratio.
std::string delivery_json(const delivery_rows& xs);

/// Usage lines for --help.
extern const char* const delivery_usage;

} // namespace fleetd
