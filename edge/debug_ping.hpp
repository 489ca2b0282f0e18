#pragma once

#include <chrono>
#include <cstdint>

#include <caf/error.hpp>

#include "edge/cloud_link.hpp"
#include "messages/types.hpp"

namespace fleetd {

/// `fleetd debug ping`'s own settings (debug.*).
struct ping_config {
  /// Round trips measured (GET /healthz on one kept-alive connection).
  int64_t count = 5;
  /// A median round trip above this is a slow link.
  std::chrono::milliseconds slow_rtt{500};
};

class option_set;

/// Declares debug.ping-count and debug.slow-rtt.
void declare(option_set& opts, ping_config& x);

/// bad_config naming the option key when `x` cannot work.
caf::error validate(const ping_config& x);

/// What a ping found: the report and whether every step passed.
struct ping_outcome {
  debug_report report;
  bool healthy = false;
};

/// Checks the way to the cloud as the device's cloud link would take it, to
/// its first endpoint, step by step, each with its verdict (ok, failed and
/// why, or skipped because an earlier step failed) and time: DNS, TCP, TLS
/// (the server certificate and whether it verifies against cloud.ca-file),
/// authentication with the device key (cloud.key-file) on a probe the cloud
/// refuses only after checking the key, and `cfg.count` round trips. The
/// last line is one verdict: healthy, cloud down, wrong CA, wrong key,
/// revoked, slow link, ... Needs no node and no data directory.
ping_outcome debug_ping(const cloud_link_config& link, const ping_config& cfg);

} // namespace fleetd
