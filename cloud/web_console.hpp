#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/actor_system.hpp>

#include "messages/interfaces.hpp"
#include "runtime/clock.hpp"
#include "runtime/http_server.hpp"
#include "runtime/metrics_page.hpp"

namespace fleetd {

/// Whom the web console asks: the inspector for status and devices, the
/// tenancy for the API token's org.
struct web_console_config {
  inspector_actor inspector;
  tenancy_actor tenancy;
  clock_ptr clock;
  /// GET /metrics on the same port; none: 404.
  metrics_endpoint_ptr metrics;
};

/// What the console answered, for the inspector's status ("web_console").
struct web_console_counters {
  std::atomic<int64_t> requests{0};
  std::atomic<int64_t> api_requests{0};
  /// 401: no API token, or one tenancy did not accept; 403: an operator
  /// listener's request without a verified client certificate.
  std::atomic<int64_t> refused_unauthorized{0};
  /// Requests on the operator listener (console.http-listen).
  std::atomic<int64_t> operator_requests{0};
  std::atomic<int64_t> refused_not_found{0};
  std::atomic<int64_t> refused_bad_request{0};
  std::atomic<int64_t> unavailable{0};
};

/// A parsed, bounded query string of a console API request.
struct console_query {
  /// The device, without its org (device=, 1..128 of [A-Za-z0-9._:-]).
  std::string device;
  /// Delivery since this many hours ago (hours=, 1..720, default 24).
  int64_t hours = 24;
  /// Seen within this many seconds is online (online_s=, 10..86400,
  /// default 300).
  int64_t online_s = 300;
  /// The operator listener's org selector (org=, an org name); empty: every
  /// org. A token's request may not name one: its token names its org.
  std::string org;
};

/// `query` (what follows '?'); ec::conflict naming the bad parameter (as
/// the query API answers a bad one).
caf::expected<console_query> parse_console_query(const std::string& query);

/// The overview JSON of `org`'s devices (ids "org/device" in the store) at
/// `now_ms`: counts by tier, online/offline, and per device its last seen,
/// sync lag (age of its least recent stream's last sync) and totals. `org`
/// empty (the operator's view): every org's devices, each row naming its org.
std::string overview_json(const std::string& org, const device_infos& xs,
                          int64_t now_ms, int64_t online_window_ms);

/// The node's per-actor statistics as the console shows them.
std::string actors_json(const node_status& st);

/// The delivery of `device` (its org's name for it) as the console shows
/// it: totals, ratio and per stream and hour.
std::string delivery_json(const std::string& device, int64_t since_ms,
                          const delivery_rows& rows);

/// The cloud's /metrics addition: the fleet-wide delivery ratio and counts
/// of the last 24 hours (fleetd_delivery_ratio, fleetd_delivery_records).
void fleet_delivery_metrics(caf::event_based_actor* self,
                            const inspector_actor& insp, const node_status& st,
                            std::function<void(std::string)> done);

/// The families fleet_delivery_metrics appends for `rows`.
std::string delivery_metrics_text(const delivery_rows& rows);

/// GET /metrics, /console (the page, built in) and /console/api/{overview,
/// actors,delivery} (Authorization: Bearer <the org's API token>) on the
/// cloud's ingest port, or with an operator certificate on the operator
/// listener; every other /console path 404.
class web_console {
public:
  web_console(caf::actor_system& sys, web_console_config cfg);

  /// Answers `req` when it is one of the console's paths; false else.
  bool route(http_request& req, http_server::respond_fn& respond);

  /// Answers every request of the operator listener (console.http-listen):
  /// the console's paths as route(), the verified client certificate in
  /// place of a token, `org=` selecting an org (none: every org); 404 else.
  void route_operator(http_request& req, http_server::respond_fn& respond);

  /// Counters for the inspector's status row "web_console".
  actor_stats stats() const;

private:
  bool serve(http_request& req, http_server::respond_fn& respond,
             bool by_operator);

  caf::actor_system* sys_;
  web_console_config cfg_;
  std::shared_ptr<web_console_counters> counters_;
};

} // namespace fleetd
