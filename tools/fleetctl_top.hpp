#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <caf/actor_system.hpp>

#include "messages/interfaces.hpp"
#include "runtime/console_client.hpp"

namespace fleetd {

/// What `fleetctl top` needs besides the node.
struct top_options {
  /// HOST:PORT as given, and its parts (to reconnect after a node restart).
  std::string node;
  std::string host;
  uint16_t port = 0;
  console_client_config tls;
  std::chrono::milliseconds interval{1000};
  std::chrono::milliseconds timeout{5000};
  /// The first sort column (empty: rate).
  std::string sort;
};

/// `fleetctl top`: on a terminal a live full-screen view (alternate screen,
/// raw keys) until q or Ctrl-C, the terminal restored after; otherwise one
/// frame from two answers `interval` apart. The exit code.
int run_top(caf::actor_system& sys, inspector_actor node,
            const top_options& opt);

} // namespace fleetd
