#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "runtime/tls.hpp"

namespace fleetd {

struct http_response {
  unsigned status = 0;
  std::string content_type;
  std::string retry_after;
  /// X-Fleetd-Error of an error answer: "<code>: <message>".
  std::string error;
  std::string body;
};

/// A blocking HTTP/1.1 client with keep-alive and a deadline per request;
/// owned by one detached actor, never shared between threads.
class http_client {
public:
  http_client(std::string host, uint16_t port,
              std::chrono::milliseconds timeout, size_t max_response_bytes);
  ~http_client();

  /// Speaks HTTPS from the next connection on: verifies the server against
  /// `files.ca` (empty: the system store) and the host name, sends SNI,
  /// presents `files.cert`/`files.key` when set.
  caf::error use_tls(const tls_files& files);

  /// POSTs `body`; reconnects once when a kept-alive connection went stale.
  caf::expected<http_response>
  post(const std::string& target, const std::string& body,
       const std::vector<std::pair<std::string, std::string>>& headers);

  /// GETs `target` (e.g. /healthz) on the same connection.
  caf::expected<http_response>
  get(const std::string& target,
      const std::vector<std::pair<std::string, std::string>>& headers = {});

  /// Sends `plain` (a plain POST /v4/sync body) as the next frame of a sync
  /// stream (messages/stream_codec), compressed at `level` against what
  /// the stream carried before. A connection that is not a stream yet is
  /// upgraded first (`headers` go with the upgrade); an upgrade answered
  /// other than 101 is returned as it came, and the connection stays HTTP.
  /// A reused stream the server had closed is opened afresh once.
  caf::expected<http_response>
  stream_post(const std::string& plain, int level,
              const std::vector<std::pair<std::string, std::string>>& headers);

  /// The connection is a sync stream now.
  bool streaming() const;

  /// Bytes of the frame the last stream_post wrote (its length prefix
  /// included); 0 when it wrote none (the upgrade's answer came back).
  int64_t last_frame_bytes() const {
    return last_frame_bytes_;
  }

  /// Drops the connection; the next request opens a new one.
  void close();

  int64_t connects() const {
    return connects_;
  }

  /// TLS handshakes that resumed the last connection's session.
  int64_t resumed() const;

  /// Idle connections found closed by the server before a request was
  /// written to them (a new one was opened instead).
  int64_t stale_closes() const {
    return stale_closes_;
  }

private:
  caf::expected<http_response>
  send(bool post, const std::string& target, const std::string& body,
       const std::vector<std::pair<std::string, std::string>>& headers);

  struct impl;
  std::unique_ptr<impl> impl_;
  int64_t connects_ = 0;
  int64_t stale_closes_ = 0;
  int64_t last_frame_bytes_ = 0;
};

} // namespace fleetd
