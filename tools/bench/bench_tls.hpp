#pragma once

// A throwaway PKI for benchmarks that run their cloud over HTTPS, made with
// the OpenSSL API in-process: no openssl CLI, no files from elsewhere.

#include <string>

#include "runtime/tls.hpp"

namespace fleetd::bench {

/// The files of one throwaway PKI, all in one directory.
struct bench_pki {
  /// server.pem + server.key: the ingest endpoint's identity.
  tls_files server;
  /// ca.pem only: what a client verifies the server against.
  tls_files client;
};

/// Makes a self-signed CA (EC P-256, valid a day) and a server certificate
/// it signs for localhost, 127.0.0.1 and ::1, and writes ca.pem, server.pem
/// and server.key (mode 0600) into `dir`, which must exist. Throws
/// bench_failure when OpenSSL or the disk refuses.
bench_pki make_bench_pki(const std::string& dir);

} // namespace fleetd::bench
