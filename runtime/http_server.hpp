#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <caf/expected.hpp>

#include "messages/types.hpp"
#include "runtime/tls.hpp"

namespace fleetd {

/// One request as the server hands it to the application.
struct http_request {
  std::string method;
  std::string target;
  std::string content_type;
  std::string content_encoding;
  std::string authorization;
  std::string body;
  std::string peer;
  /// The client presented a certificate the server's client CA verified.
  bool client_cert = false;
};

/// Hard limits on what a client may send (docs/architecture.md section 6).
struct http_limits {
  size_t max_body_bytes = 8 * 1024 * 1024;
  size_t max_header_bytes = 8 * 1024;
  size_t max_connections = 1024;
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds read_timeout{30000};
};

/// Counters of the server, read by the owning actor for the console.
struct http_server_counters {
  int64_t connections_accepted = 0;
  int64_t connections_rejected = 0;
  int64_t requests = 0;
  int64_t requests_rejected = 0;
  int64_t tls_handshake_failures = 0;
  int64_t client_cert_missing = 0;
};

/// A Boost.Beast HTTP/1.1 server with keep-alive on its own Asio thread.
/// The handler runs on that thread and must not block: it hands the request
/// to an actor and calls `respond` (from any thread) once with the answer.
class http_server {
public:
  using respond_fn = std::function<void(http_reply)>;
  using handler_fn = std::function<void(http_request, respond_fn)>;

  http_server(http_limits limits, handler_fn handler);
  ~http_server();

  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// Serves HTTPS from now on with the certificate and key of `files`;
  /// with `files.ca`, a request without a client certificate it verifies is
  /// refused 403 client_certificate_required. Call before start().
  caf::error use_tls(const tls_files& files);

  /// Reads the TLS files again (SIGHUP): new connections use them,
  /// connections in flight keep theirs. A bad file changes nothing.
  caf::error reload_tls();

  /// Binds host:port (0 = any free port, address reuse on) and starts serving.
  caf::expected<uint16_t> start(const std::string& host, uint16_t port);

  /// Closes the listener and every connection, then joins the thread.
  void stop();

  http_server_counters counters() const;

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace fleetd
