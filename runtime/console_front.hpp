#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/expected.hpp>

#include "runtime/console_door.hpp"

namespace fleetd {

/// Where the console front listens and what it lets through.
struct console_front_config {
  std::string host;
  uint16_t port = 0;
  /// PEM files; all empty: plain TCP (console.insecure, loopback only).
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;
  /// From accept until the peer's BASP handshake has passed.
  std::chrono::milliseconds handshake_timeout{10000};
  size_t max_connections = 64;
  uint32_t max_frame_bytes = 8 * 1024 * 1024;
  /// The inner BASP listener (publish_inner) and the one actor peers reach.
  uint16_t inner_port = 0;
  uint64_t guard_id = 0;
  std::shared_ptr<front_ports> ports;
};

/// Counters of the front, for its log lines and tests.
struct console_front_counters {
  int64_t accepted = 0;
  int64_t rejected = 0;
  int64_t handshake_timeouts = 0;
  int64_t handshake_failures = 0;
  int64_t frames_refused = 0;
  int64_t frames_dropped = 0;
  int64_t accept_errors = 0;
};

/// The console's listener: terminates TLS (client certificate required) on
/// its own Asio thread, drops a peer that has not completed TLS and its BASP
/// handshake within the timeout, checks every BASP frame header (size, and
/// only messages to the console), then pipes the bytes to CAF's BASP on the
/// inner loopback listener. CAF's openssl module spins a core per silent
/// connection and checks nothing of this (docs/security.md, Console).
class console_front {
public:
  console_front();
  ~console_front();

  console_front(const console_front&) = delete;
  console_front& operator=(const console_front&) = delete;

  /// Loads the certificates, binds host:port (0: a free one) and serves.
  caf::expected<uint16_t> start(console_front_config cfg);

  /// Closes the listener and every connection, then joins the thread.
  void stop();

  /// Reads the TLS files again (SIGHUP): new connections use them, those
  /// in flight keep theirs; a bad file keeps the running ones (the error).
  caf::error reload_tls();

  console_front_counters counters() const;

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace fleetd
