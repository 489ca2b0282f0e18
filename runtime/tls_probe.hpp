#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "runtime/tls.hpp"

namespace fleetd {

/// What one TLS handshake showed of the server (`fleetd debug ping`).
struct tls_peer {
  std::string version;
  std::string cipher;
  std::string subject;
  std::string issuer;
  /// Validity as the certificate states it (UTC).
  std::string not_before;
  std::string not_after;
  /// Subject alternative names: DNS names and IP addresses.
  std::vector<std::string> names;
  /// The chain verifies against the configured CA and names the host.
  bool verified = false;
  /// Why not, in the TLS library's words; empty when verified.
  std::string verify_error;
  /// What failed, from the library's code: "validity" (expired or not yet
  /// valid), "name" (the host is not among its names) or "chain" (no
  /// trusted CA); empty when verified.
  std::string verify_problem;
};

/// A TLS client handshake on the connected blocking socket `fd` (each read
/// and write bounded by `timeout`), sending SNI for `host` and the client
/// certificate of `files` when set. Verification against `files.ca` (empty:
/// the system store) and `host` is recorded, not enforced, so a wrong CA
/// still shows the certificate it rejects. An error when the handshake
/// itself fails; the socket stays the caller's.
caf::expected<tls_peer> probe_tls(int fd, const std::string& host,
                                  const tls_files& files,
                                  std::chrono::milliseconds timeout);

} // namespace fleetd
