#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "messages/interfaces.hpp"
#include "runtime/http_server.hpp"

namespace fleetd {

class option_set;

/// Where the endpoint listens and what it accepts (the ingest.* options).
struct ingest_endpoint_config {
  std::string host = "127.0.0.1";
  /// 0 picks a free port.
  int64_t port = 7480;
  int64_t max_body_bytes = 8 * 1024 * 1024;
  int64_t max_connections = 1024;
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds read_timeout{30000};
  int64_t max_connections_per_address = 64;
  /// Sync streams open at once; 0 answers every upgrade 404 (HTTP only).
  int64_t max_streams = 1024;
  int64_t max_inflight_bytes = 64 * 1024 * 1024;
  std::chrono::milliseconds header_timeout{10000};
  int64_t min_body_rate = 16 * 1024;
  /// Certificate, key and (optional) client CA of HTTPS.
  tls_files tls;
  /// Plain HTTP (loopback only): for local tests, never a fleet.
  bool insecure = false;

  /// The server's limits from these options (header size: its default).
  http_limits limits() const;
};

/// Declares ingest.host, ingest.port, ingest.max-body-bytes,
/// ingest.max-connections, ingest.idle-timeout, ingest.read-timeout,
/// ingest.max-connections-per-address, ingest.max-inflight-bytes,
/// ingest.header-timeout, ingest.min-body-rate,
/// ingest.tls-cert, ingest.tls-key, ingest.tls-client-ca, ingest.insecure.
void declare(option_set& opts, ingest_endpoint_config& x);

/// bad_config naming the option key when `x` cannot work.
caf::error validate(const ingest_endpoint_config& x);

/// The query API behind the same door: the tenancy actor proves a
/// request's API token, the query actor answers it.
struct query_api {
  tenancy_actor tenancy;
  query_actor query;
};

/// A route tried before the endpoint's own (the web console, /metrics):
/// true when it took the request and will answer it.
using http_route = std::function<bool(http_request&, http_server::respond_fn&)>;

/// The device-facing door: POST /v1/sync (and the bundles of /v2/sync and
/// /v3/sync, item by item) on Boost.Beast, each request handed
/// to the ingest actor through a short-lived actor so the Asio thread never
/// blocks. GET /healthz answers "ok" when `health` (ingest unless given)
/// does, else 503 with its error. With `api`, GET /v1/query and /v1/logs
/// (Authorization: Bearer fqt_...) too: the org comes from the token only.
class ingest_endpoint {
public:
  ingest_endpoint(caf::actor_system& sys, ingest_actor ingest,
                  http_limits limits, health_actor health = {},
                  query_api api = {}, http_route web = {});

  /// Listens on the config's host and port, over HTTPS unless insecure.
  caf::expected<uint16_t> start(const ingest_endpoint_config& cfg);
  /// Re-reads the TLS files (SIGHUP); connections in flight keep theirs.
  caf::error reload_tls();
  void stop();

  http_server_counters counters() const {
    return server_->counters();
  }

  /// The server, for its statistics (a stats_reader in cloud/main.cpp); outlives stop().
  std::shared_ptr<const http_server> server() const {
    return server_;
  }

private:
  std::shared_ptr<http_server> server_;
};

} // namespace fleetd
