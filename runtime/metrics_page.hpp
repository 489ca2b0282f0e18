#pragma once

// GET /metrics: a node's own figures in the Prometheus text exposition
// format 0.0.4, built from the inspector's status (fleetctl status), so the
// page and the console never disagree (docs/architecture.md, "Self-metrics").

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>

#include "messages/interfaces.hpp"
#include "runtime/http_server.hpp"

namespace fleetd {

/// The Content-Type of a Prometheus text page.
extern const char* prom_text_type;

/// `x` as a quoted label value: escaped (\\, \", \n), a byte that is no
/// UTF-8 text (or NUL) as '?'.
std::string prom_label_value(const std::string& x);

/// The family name of an actor counter (fleetctl status): fleetd_NAME, with
/// _total for a counter, none for a gauge (queue depths, sizes, settings).
std::string counter_family(const std::string& counter);

/// Whether an actor counter is a gauge (can go down) rather than a counter.
bool counter_is_gauge(const std::string& counter);

/// `st` as a Prometheus page: node, process, link state, per-actor runtime
/// figures and every actor counter (fleetd_COUNTER{actor="..."}).
std::string render_metrics(const node_status& st);

/// One whole family: HELP, TYPE and a sample per (labels, value) pair.
std::string prom_family_text(const std::string& name, const char* type,
                        const std::string& help,
                        const std::vector<std::pair<std::string, std::string>>&
                          samples);

/// More of the page, asked after the status by the same short-lived actor
/// (the cloud's delivery ratio): calls `done` once with text to append.
using metrics_extra =
  std::function<void(caf::event_based_actor* self, const inspector_actor&,
                     const node_status&, std::function<void(std::string)> done)>;

/// Serves GET /metrics from the node's inspector, asked by a short-lived
/// actor so the Asio thread never waits; 503 until bound (the inspector
/// starts after the listeners) or when the inspector does not answer.
class metrics_endpoint {
public:
  void bind(caf::actor_system& sys, inspector_actor inspector,
            metrics_extra extra = {});
  /// Answers through `respond` later, from an actor's thread.
  void serve(http_server::respond_fn respond) const;

private:
  mutable std::mutex mtx_;
  caf::actor_system* sys_ = nullptr; // guarded by mtx_
  inspector_actor inspector_;        // guarded by mtx_
  metrics_extra extra_;              // guarded by mtx_
};

using metrics_endpoint_ptr = std::shared_ptr<metrics_endpoint>;

} // namespace fleetd
