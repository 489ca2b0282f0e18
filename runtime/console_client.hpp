#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "messages/interfaces.hpp"

namespace fleetd {

/// How a client (fleetctl, `fleetd debug`) proves itself to a node's console
/// and checks the node.
struct console_client_config {
  /// PEM files; all empty: plain BASP (a console.insecure node on loopback).
  std::string cert;
  std::string key;
  std::string ca;
  /// The name (DNS or IP) the node's certificate must carry; empty: the host.
  std::string server_name;
  /// SHA-256 of the node's certificate (hex, colons optional); when given it
  /// is checked instead of the name.
  std::string fingerprint;
  std::chrono::milliseconds timeout{5000};
  /// Largest BASP frame the node may announce to us.
  uint32_t max_frame_bytes = 64 * 1024 * 1024;
};

/// The node's console at host:port. With certificates: TLS 1.2+, the node's
/// certificate chained to `ca` and carrying the name (or the fingerprint),
/// then BASP through a private loopback pipe.
caf::expected<inspector_actor>
connect_console(caf::actor_system& sys, const std::string& host, uint16_t port,
                const console_client_config& cfg);

/// SHA-256 of the first certificate in a PEM file, lowercase hex.
caf::expected<std::string> certificate_fingerprint(const std::string& pem_file);

} // namespace fleetd
