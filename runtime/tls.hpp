#pragma once

#include <string>

#include <caf/error.hpp>

namespace fleetd {

/// The PEM files of one TLS endpoint. A server uses cert + key and, when
/// `ca` is set, asks clients for a certificate signed by it; a client trusts
/// the servers `ca` signs (empty: the system store) and presents cert + key
/// when both are set.
struct tls_files {
  std::string cert;
  std::string key;
  std::string ca;
};

/// Loads `files` as a server (client) would, so a config naming a missing
/// or mismatched file fails at start with the file named; none when usable.
caf::error check_tls_server(const tls_files& files);
caf::error check_tls_client(const tls_files& files);

/// True for 127.0.0.0/8, ::1 and "localhost": where plain HTTP may be allowed.
bool is_loopback_host(const std::string& host);

} // namespace fleetd
