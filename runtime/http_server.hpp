#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <caf/expected.hpp>

#include "messages/types.hpp"
#include "runtime/tls.hpp"

namespace fleetd {

class stream_decompressor;

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
  /// A frame of a sync stream (messages/stream_codec): `body` is its
  /// payload, to be decoded with this context, in order; `target` is the
  /// stream's, `authorization` its upgrade request's.
  std::shared_ptr<stream_decompressor> stream;
};

/// Hard limits on what a client may send (docs/architecture.md section 6).
struct http_limits {
  size_t max_body_bytes = 8 * 1024 * 1024;
  size_t max_header_bytes = 8 * 1024;
  size_t max_connections = 1024;
  /// Connections one client address may hold; more are closed at accept.
  size_t max_connections_per_address = 64;
  /// Request bodies held in memory across all connections (claimed lengths,
  /// from the header until the reply): past it a request gets 503.
  size_t max_inflight_bytes = 64 * 1024 * 1024;
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds read_timeout{30000};
  /// The TLS handshake, and a request's whole header from its first byte
  /// (a new connection's first byte too), must arrive within this.
  std::chrono::milliseconds header_timeout{10000};
  /// After a grace of header_timeout, a body must arrive at least this
  /// fast (bytes/s): its first n bytes by grace + n / rate after the header.
  size_t min_body_rate = 16 * 1024;
  /// Sync streams open at once (each holds a ~230 KiB zstd context); an
  /// upgrade past it is answered 503 and the client goes on over HTTP.
  size_t max_streams = 1024;
  /// After the descriptors run out (EMFILE/ENFILE), accepting pauses this long.
  std::chrono::milliseconds accept_backoff{100};
};

/// Counters of the server, read by the owning actor for the console.
struct http_server_counters {
  int64_t connections_accepted = 0;
  int64_t connections_rejected = 0;
  int64_t requests = 0;
  int64_t requests_rejected = 0;
  int64_t tls_handshake_failures = 0;
  /// TLS handshakes that resumed a session (a ticket): no certificates sent.
  int64_t tls_resumed = 0;
  int64_t client_cert_missing = 0;
  /// Closed at accept: their address already held its connections.
  int64_t connections_over_address_limit = 0;
  /// Closed to admit a new connection while the server was full.
  int64_t connections_evicted = 0;
  /// Closed because the handshake or the header missed header_timeout.
  int64_t header_timeouts = 0;
  /// Closed because the body came slower than min_body_rate.
  int64_t body_timeouts = 0;
  /// Answered 503 because max_inflight_bytes was taken.
  int64_t inflight_refused = 0;
  /// Accepts that failed for want of descriptors (EMFILE/ENFILE).
  int64_t accept_descriptor_exhausted = 0;
  /// Connections accepted and closed at once to drain the backlog then.
  int64_t connections_shed = 0;
  /// Connections upgraded to a sync stream, and their frames.
  int64_t streams_opened = 0;
  int64_t stream_frames = 0;
  /// Streams closed for a bad frame (length, size, budget).
  int64_t stream_frames_rejected = 0;
  /// Upgrades answered 503 because max_streams were open.
  int64_t streams_refused = 0;
  /// Gauges: open connections, open streams and body bytes held now.
  int64_t connections_open = 0;
  int64_t streams_open = 0;
  int64_t inflight_bytes = 0;
};

/// The counters as named pairs, for a stats answer.
std::vector<std::pair<std::string, int64_t>>
named_counters(const http_server_counters& x);

/// A text/plain answer: `text` and a newline; an error (400 and up) names
/// "code: text" for the X-Fleetd-Error header too.
http_reply text_reply(uint16_t status, const std::string& code,
                      std::string text);

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

  /// Upgrades `GET /v5/stream` (messages/stream_codec) to a sync stream
  /// from now on: its frames reach the handler with http_request::stream
  /// set. Call before start().
  void accept_streams();

  /// Binds host:port (0 = any free port, address reuse on) and starts serving.
  caf::expected<uint16_t> start(const std::string& host, uint16_t port);

  /// Serves plain HTTP on a Unix socket at `path` (mode 0660) instead:
  /// every client shares the per-address limit; a socket file left by an
  /// earlier run is replaced, one another program serves is not; stop()
  /// removes it. Call this or start(), once.
  caf::error start_local(const std::string& path);

  /// Closes the listener and every connection, then joins the thread.
  void stop();

  http_server_counters counters() const;

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace fleetd
