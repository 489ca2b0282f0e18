#pragma once

#include <memory>
#include <string>

#include <caf/stateful_actor.hpp>
#include <caf/typed_actor.hpp>

#include "messages/interfaces.hpp"

namespace fleetd {

class http_server;

/// What an HTTP server's statistics are read from.
struct http_stats_config {
  std::shared_ptr<const http_server> server;
  /// The name `fleetctl status` lists them under (e.g. "ingest_http").
  std::string name;
  /// Shown as the state: "https", "https+client-cert" or "insecure".
  std::string mode;
};

using http_stats_actor = caf::typed_actor<stats_handler>;

struct http_stats_state {
  http_stats_config cfg;
  static inline const char* name = "http_stats";
};

/// Answers `stats` for an HTTP server (the ingest endpoint's, shown by
/// `fleetctl status` as "ingest_http"): connections accepted, refused,
/// evicted and shed, header and body timeouts, in-flight refusals,
/// descriptor exhaustion, TLS failures (runtime/http_server's counters).
http_stats_actor::behavior_type
http_stats(http_stats_actor::stateful_pointer<http_stats_state> self,
           http_stats_config cfg);

} // namespace fleetd
