#pragma once

#include <memory>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "messages/interfaces.hpp"
#include "runtime/http_server.hpp"

namespace fleetd {

/// The device-facing door: POST /v1/sync on Boost.Beast, each request handed
/// to the ingest actor through a short-lived actor so the Asio thread never
/// blocks. GET /healthz answers "ok".
class ingest_endpoint {
public:
  ingest_endpoint(caf::actor_system& sys, ingest_actor ingest,
                  http_limits limits);

  caf::expected<uint16_t> start(const std::string& host, uint16_t port);
  void stop();

  http_server_counters counters() const {
    return server_->counters();
  }

private:
  std::unique_ptr<http_server> server_;
};

} // namespace fleetd
