#pragma once

// A self-signed certificate for a benchmark's loopback HTTPS server.

#include <string>

#include "runtime/tls.hpp"

namespace fleetd::bench {

/// Writes dir/server.pem and dir/server.key: an EC P-256 key and a
/// certificate for 127.0.0.1 and localhost, valid for a day, signed by
/// itself. The server serves {cert, key}; a client trusts {"", "", cert}.
/// Fails the benchmark (bench_failure) when OpenSSL or the disk refuses.
tls_files make_throwaway_tls(const std::string& dir);

} // namespace fleetd::bench
