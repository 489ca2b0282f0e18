#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "messages/types.hpp"

namespace fleetd {

/// One data stream as `fleetctl streams` shows it; -1: the node does not
/// know this figure.
struct stream_row {
  /// The device whose stream it is (on a device: itself).
  std::string device;
  std::string stream;
  /// Records the device stored (edge) or the cloud received (cloud).
  int64_t records = -1;
  /// Stored records not yet cut into a batch (edge).
  int64_t pending = -1;
  /// Batches the cloud acked (edge) or received (cloud).
  int64_t batches = -1;
  int64_t last_acked_sequence = -1;
  int64_t duplicates = -1;
  int64_t gaps = -1;
  /// Failed sends (edge).
  int64_t failures = -1;
  /// The sync actor's state (edge); when the cloud last heard (cloud).
  std::string state;
};

/// On a device: one row per sync stream from its status.
std::vector<stream_row> device_streams(const node_status& x);

/// On a cloud: one row per device stream; `now_ms` (the node's clock) ages
/// last_seen.
std::vector<stream_row> cloud_streams(const device_infos& xs, int64_t now_ms);

std::string streams_text(const std::vector<stream_row>& xs);
std::string streams_json(const std::vector<stream_row>& xs);

/// "12s ago", "3m ago", "never" for a Unix ms time seen from `now_ms`.
std::string age_text(int64_t then_ms, int64_t now_ms);

} // namespace fleetd
