#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "messages/types.hpp"

namespace fleetd {

/// One node as `fleetctl nodes` shows it: the node asked, then the peers
/// it knows (a device: its cloud; a cloud: the devices it heard from).
struct node_row {
  std::string id;
  /// "edge", "cloud" or "device".
  std::string role;
  /// "self"; a device's link to its cloud (online, offline...); a device as
  /// a cloud sees it ("online": heard within offline_after, else "offline").
  std::string link;
  /// Where the peer is (a device's cloud URL); empty when not known.
  std::string address;
  /// Unix ms the cloud last heard from the device; -1: not known.
  int64_t last_seen_ms = -1;
  /// The rest in words (version and uptime, the link's last error).
  std::string detail;
};

/// A device's rows from its status: itself and its cloud link.
std::vector<node_row> device_nodes(const node_status& x);

/// A cloud's rows: itself and each device of `xs` (several streams, one
/// row); a device not heard from for `offline_after_ms` (at the node's
/// clock) is offline.
std::vector<node_row> cloud_nodes(const node_status& x, const device_infos& xs,
                                  int64_t offline_after_ms);

/// `now_ms` ages last_seen in the text.
std::string nodes_text(const std::vector<node_row>& xs, int64_t now_ms);
std::string nodes_json(const std::vector<node_row>& xs);

} // namespace fleetd
