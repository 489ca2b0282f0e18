#include "cloud/web_console.hpp"

#include <algorithm>
#include <map>
#include <set>

#include <caf/event_based_actor.hpp>

#include "cloud/console_assets.hpp"
#include "cloud/query_params.hpp"
#include "cloud/tenancy_keys.hpp"
#include "runtime/actor_counters.hpp"
#include "messages/error.hpp"
#include "runtime/json.hpp"
#include "runtime/text.hpp"

namespace fleetd {

namespace {

constexpr auto ask_timeout = std::chrono::seconds(10);
// A console query has a few short parameters; anything longer is hostile.
constexpr size_t max_query_bytes = 512;
constexpr size_t max_params = 8;
constexpr size_t max_device_bytes = 128;

using counters_ptr = std::shared_ptr<web_console_counters>;
using respond_fn = http_server::respond_fn;

bool device_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
         || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'
         || c == ':';
}

caf::error bad_param(const std::string& name, const std::string& why) {
  return make_error(ec::conflict, "parameter " + name + ": " + why);
}

caf::expected<int64_t> bounded_int(const std::string& name,
                                   const std::string& text, int64_t lo,
                                   int64_t hi) {
  if (text.empty() || text.size() > 9
      || !std::all_of(text.begin(), text.end(),
                      [](char c) { return c >= '0' && c <= '9'; }))
    return bad_param(name, "not a whole number of at most 9 digits");
  auto v = std::stoll(text);
  if (v < lo || v > hi)
    return bad_param(name, "must be " + std::to_string(lo) + ".."
                             + std::to_string(hi));
  return v;
}

const char* content_type_of(const std::string& name) {
  auto dot = name.rfind('.');
  auto ext = dot == std::string::npos ? std::string{} : name.substr(dot);
  if (ext == ".html")
    return "text/html; charset=utf-8";
  if (ext == ".js")
    return "text/javascript; charset=utf-8";
  if (ext == ".css")
    return "text/css; charset=utf-8";
  if (ext == ".svg")
    return "image/svg+xml";
  return "application/octet-stream";
}

// The built-in file `name` names exactly; nullptr else (no file system is
// read, so no path can traverse out of the table).
const console_asset* find_asset(const std::string& name) {
  for (size_t i = 0; i < console_asset_count; ++i)
    if (name == console_assets[i].name)
      return &console_assets[i];
  return nullptr;
}

http_reply json_reply(std::string body) {
  http_reply rep;
  rep.content_type = "application/json";
  rep.body = std::move(body);
  return rep;
}

struct device_summary {
  int64_t tier = 0;
  int64_t last_seen_ms = 0;
  int64_t oldest_seen_ms = INT64_MAX;
  int64_t streams = 0;
  int64_t points_received = 0;
  int64_t batches_received = 0;
  int64_t duplicates = 0;
  int64_t gaps = 0;
};

// What one API path asks, once the token proved `org` (or an operator
// certificate chose it; empty: every org); answers `respond`.
using api_fn = std::function<void(caf::event_based_actor*, const std::string&
                                  /* org */, const respond_fn&)>;

} // namespace

caf::expected<console_query> parse_console_query(const std::string& query) {
  console_query out;
  if (query.size() > max_query_bytes)
    return bad_param("(query)", "longer than "
                                  + std::to_string(max_query_bytes)
                                  + " bytes");
  auto parts = split_list(query, '&');
  if (parts.size() > max_params)
    return bad_param("(query)", "more than " + std::to_string(max_params)
                                  + " parameters");
  std::set<std::string> seen;
  for (auto part : parts) {
    if (part.empty())
      continue;
    auto eq = part.find('=');
    std::string key, value;
    if (!url_unescape(part.substr(0, eq), key)
        || (eq != std::string_view::npos
            && !url_unescape(part.substr(eq + 1), value)))
      return bad_param(printable(part, 32), "bad %-escape");
    if (!seen.insert(key).second)
      return bad_param(printable(key, 32), "given twice");
    if (key == "device") {
      if (value.empty() || value.size() > max_device_bytes
          || !std::all_of(value.begin(), value.end(), device_char))
        return bad_param("device", "1.." + std::to_string(max_device_bytes)
                                     + " of [A-Za-z0-9._:-]");
      out.device = value;
    } else if (key == "hours") {
      auto v = bounded_int(key, value, 1, 720);
      if (!v)
        return v.error();
      out.hours = *v;
    } else if (key == "online_s") {
      auto v = bounded_int(key, value, 10, 86400);
      if (!v)
        return v.error();
      out.online_s = *v;
    } else if (key == "org") {
      if (!valid_name(value))
        return bad_param("org", "1..64 of [A-Za-z0-9._-], not starting "
                                "with a dot");
      out.org = value;
    } else {
      return bad_param(printable(key, 32), "unknown (device, hours, "
                                           "online_s, org)");
    }
  }
  return out;
}

std::string overview_json(const std::string& org, const device_infos& xs,
                          int64_t now_ms, int64_t online_window_ms) {
  // By (org, device): the store names a device of an org "org/device".
  std::map<std::pair<std::string, std::string>, device_summary> devices;
  for (auto& x : xs) {
    auto slash = x.device_id.find('/');
    auto of = slash == std::string::npos ? std::string{}
                                         : x.device_id.substr(0, slash);
    // Only the token's org, unless the operator asked for every org.
    if (!org.empty() && (slash == std::string::npos || of != org))
      continue;
    auto name = slash == std::string::npos ? x.device_id
                                           : x.device_id.substr(slash + 1);
    auto& d = devices[{of, name}];
    d.tier = std::max(d.tier, x.capability.tier);
    d.last_seen_ms = std::max(d.last_seen_ms, x.last_seen_ms);
    d.oldest_seen_ms = std::min(d.oldest_seen_ms, x.last_seen_ms);
    d.streams += 1;
    d.points_received += x.points_received;
    d.batches_received += x.batches_received;
    d.duplicates += x.duplicates;
    d.gaps += x.gaps;
  }
  std::map<int64_t, int64_t> tiers;
  int64_t online = 0;
  std::string list = "[";
  for (auto& [key, d] : devices) {
    bool is_online = now_ms - d.last_seen_ms <= online_window_ms;
    online += is_online ? 1 : 0;
    tiers[d.tier] += 1;
    json_object o;
    if (org.empty())
      o.add("org", key.first);
    o.add("device", key.second)
      .add("tier", d.tier)
      .add("online", is_online)
      .add("last_seen_ms", d.last_seen_ms)
      .add("last_seen_age_ms", std::max<int64_t>(0, now_ms - d.last_seen_ms))
      .add("sync_lag_ms", std::max<int64_t>(0, now_ms - d.oldest_seen_ms))
      .add("streams", d.streams)
      .add("points_received", d.points_received)
      .add("batches_received", d.batches_received)
      .add("duplicates", d.duplicates)
      .add("gaps", d.gaps);
    list += (list.size() > 1 ? "," : "") + o.str();
  }
  json_object by_tier;
  for (auto& [tier, n] : tiers)
    by_tier.add(std::to_string(tier), n);
  json_object out;
  out.add("org", org)
    .add("now_ms", now_ms)
    .add("online_window_ms", online_window_ms)
    .add("devices_total", static_cast<int64_t>(devices.size()))
    .add("online", online)
    .add("offline", static_cast<int64_t>(devices.size()) - online)
    .raw("tiers", by_tier.str())
    .raw("devices", list + "]");
  return out.str();
}

std::string actors_json(const node_status& st) {
  std::string list = "[";
  for (auto& a : st.actors) {
    json_object o;
    o.add("name", a.name).add("state", a.state);
    add_fields(o, a.runtime);
    list += (list.size() > 1 ? "," : "") + o.str();
  }
  json_object out;
  out.add("role", st.role)
    .add("node_id", st.node_id)
    .add("version", st.version)
    .add("uptime_ms", st.uptime_ms)
    .raw("process", to_json(st.process))
    .raw("actors", list + "]");
  return out.str();
}

namespace {

double ratio(const delivery_row& r) {
  return delivery_ratio(r.received, r.declared_drops, r.missing);
}

} // namespace

std::string delivery_json(const std::string& device, int64_t since_ms,
                          const delivery_rows& rows) {
  std::string list = "[";
  for (auto& r : rows) {
    json_object o;
    o.add("stream", r.stream)
      .add("hour_ms", r.hour_ms)
      .add("received", r.received)
      .add("duplicates", r.duplicates)
      .add("missing", r.missing)
      .add("declared_drops", r.declared_drops)
      .add("collected", r.collected)
      .add("stored", r.stored)
      .raw("ratio", json_value(ratio(r)));
    list += (list.size() > 1 ? "," : "") + o.str();
  }
  auto all = delivery_total(rows);
  json_object out;
  out.add("available", true)
    .add("device", device)
    .add("since_ms", since_ms)
    .add("received", all.received)
    .add("duplicates", all.duplicates)
    .add("missing", all.missing)
    .add("declared_drops", all.declared_drops)
    .add("collected", all.collected)
    .add("stored", all.stored)
    .raw("ratio", json_value(ratio(all)))
    .raw("rows", list + "]");
  return out.str();
}

std::string delivery_metrics_text(const delivery_rows& rows) {
  auto all = delivery_total(rows);
  const std::string w = "window=\"24h\"";
  auto kind = [&w](const char* k) {
    return "kind=\"" + std::string(k) + "\"," + w;
  };
  return prom_family_text("fleetd_delivery_ratio", "gauge",
                     "Fleet-wide received / (received + declared drops + "
                     "missing) over the last 24 hours (1 when all are 0).",
                     {{w, json_value(ratio(all))}})
         + prom_family_text("fleetd_delivery_records", "gauge",
                       "Records of every device over the last 24 hours, by "
                       "kind (fleetctl delivery).",
                       {{kind("received"), std::to_string(all.received)},
                        {kind("duplicates"), std::to_string(all.duplicates)},
                        {kind("missing"), std::to_string(all.missing)},
                        {kind("declared_drops"),
                         std::to_string(all.declared_drops)},
                        {kind("collected"), std::to_string(all.collected)},
                        {kind("stored"), std::to_string(all.stored)}});
}

void fleet_delivery_metrics(caf::event_based_actor* self,
                            const inspector_actor& insp, const node_status& st,
                            std::function<void(std::string)> done) {
  auto now = st.started_ms + st.uptime_ms;
  self->request(insp, std::chrono::seconds(5), delivery_atom::value,
                std::string{}, now - int64_t{24} * 3600 * 1000)
    .then(
      [done](delivery_rows& rows) { done(delivery_metrics_text(rows)); },
      [done](caf::error& err) {
        // A comment: the page stays valid, the reason readable.
        done("# fleetd_delivery_ratio unavailable: "
             + printable(render(err), 200) + "\n");
      });
}

namespace {

// From a short-lived actor (the Asio thread never waits): the token's org
// from tenancy, then `api`; 401 (counted) when tenancy refuses the token.
void with_org(caf::actor_system& sys, const web_console_config& cfg,
              const counters_ptr& counters, std::string authorization,
              respond_fn respond, api_fn api) {
  sys.spawn([tenancy = cfg.tenancy, counters, respond, api,
             auth = std::move(authorization)](caf::event_based_actor* self) {
    self->request(tenancy, ask_timeout, api_auth_atom::value, auth)
      .then(
        [self, counters, respond, api](std::string& org) {
          // An empty org would be the operator's every-org view.
          if (org.empty()) {
            ++counters->refused_unauthorized;
            respond(text_reply(401, "unknown_key", "the token names no org"));
            self->quit();
            return;
          }
          api(self, org, respond);
        },
        [self, counters, respond](caf::error& err) {
          if (err.category() != caf::atom("fleetd")
              || is_error(err, ec::database_error)) {
            ++counters->unavailable;
            respond(text_reply(503, "unavailable", render(err)));
          } else {
            ++counters->refused_unauthorized;
            respond(text_reply(401, to_string(static_cast<ec>(err.code())),
                               error_text(err)));
          }
          self->quit();
        });
  });
}

// Answers with `to_json` of what the inspector answers `xs`, or 503.
template <class T, class ToJson, class... Ts>
void ask_inspector(caf::event_based_actor* self, const inspector_actor& insp,
                   const counters_ptr& counters, const respond_fn& respond,
                   ToJson to_json, Ts... xs) {
  self->request(insp, ask_timeout, xs...)
    .then(
      [self, respond, to_json](T& x) {
        respond(json_reply(to_json(x)));
        self->quit();
      },
      [self, counters, respond](caf::error& err) {
        ++counters->unavailable;
        respond(text_reply(503, "unavailable", render(err)));
        self->quit();
      });
}

} // namespace

web_console::web_console(caf::actor_system& sys, web_console_config cfg)
  : sys_(&sys),
    cfg_(std::move(cfg)),
    counters_(std::make_shared<web_console_counters>()) {
  // Nothing else to set up: the page is in the binary.
}

bool web_console::route(http_request& req, respond_fn& respond) {
  return serve(req, respond, false);
}

void web_console::route_operator(http_request& req, respond_fn& respond) {
  ++counters_->operator_requests;
  // The listener's TLS admits only verified certificates; checked again here
  // so that a listener without its client CA could not open every org.
  if (!req.client_cert) {
    ++counters_->refused_unauthorized;
    respond(text_reply(403, "client_certificate_required",
                       "present an operator certificate of console.tls-ca"));
    return;
  }
  if (!serve(req, respond, true)) {
    ++counters_->refused_not_found;
    respond(text_reply(404, "not_found", "the operator listener serves "
                                         "/console and /metrics only"));
  }
}

bool web_console::serve(http_request& req, respond_fn& respond,
                        bool by_operator) {
  auto q = req.target.find('?');
  auto path = req.target.substr(0, q);
  auto query = q == std::string::npos ? std::string{} : req.target.substr(q + 1);
  if (path == "/metrics" && cfg_.metrics) {
    if (req.method != "GET")
      respond(text_reply(405, "method_not_allowed", "use GET for /metrics"));
    else
      cfg_.metrics->serve(std::move(respond));
    return true;
  }
  if (path != "/console" && path.rfind("/console/", 0) != 0)
    return false;
  ++counters_->requests;
  if (req.method != "GET") {
    ++counters_->refused_bad_request;
    respond(text_reply(405, "method_not_allowed", "use GET for /console"));
    return true;
  }
  static const std::string api_prefix = "/console/api/";
  if (path.rfind(api_prefix, 0) != 0) {
    auto name = path == "/console" || path == "/console/"
                  ? std::string("index.html")
                  : path.substr(std::string("/console/").size());
    auto* asset = find_asset(name);
    if (!asset) {
      ++counters_->refused_not_found;
      respond(text_reply(404, "not_found", "no console file "
                                             + printable(name, 64)));
      return true;
    }
    http_reply rep;
    rep.content_type = content_type_of(name);
    rep.body.assign(reinterpret_cast<const char*>(asset->data), asset->size);
    respond(std::move(rep));
    return true;
  }
  ++counters_->api_requests;
  auto what = path.substr(api_prefix.size());
  if (what != "overview" && what != "actors" && what != "delivery") {
    ++counters_->refused_not_found;
    respond(text_reply(404, "not_found", "no console API "
                                           + printable(what, 64)));
    return true;
  }
  auto params = parse_console_query(query);
  if (!params) {
    ++counters_->refused_bad_request;
    respond(text_reply(400, "bad_request", error_text(params.error())));
    return true;
  }
  if (!by_operator && !params->org.empty()) {
    ++counters_->refused_bad_request;
    respond(text_reply(400, "bad_request",
                       "parameter org: only with an operator certificate "
                       "(console.http-listen); a token's org is its own"));
    return true;
  }
  if (!by_operator && req.authorization.empty()) {
    ++counters_->refused_unauthorized;
    respond(text_reply(401, "missing_key",
                       "send the org's API token (fleetctl token create) as "
                       "Authorization: Bearer fqt_..."));
    return true;
  }
  auto insp = cfg_.inspector;
  auto counters = counters_;
  api_fn api;
  if (what == "overview") {
    auto clock = cfg_.clock;
    auto window = params->online_s * 1000;
    api = [insp, counters, clock, window](caf::event_based_actor* self,
                                          const std::string& org,
                                          const respond_fn& respond) {
      auto now = clock->now_ms();
      ask_inspector<device_infos>(
        self, insp, counters, respond,
        [org, now, window](const device_infos& xs) {
          return overview_json(org, xs, now, window);
        },
        devices_atom::value);
    };
  } else if (what == "actors") {
    api = [insp, counters](caf::event_based_actor* self, const std::string&,
                           const respond_fn& respond) {
      ask_inspector<node_status>(self, insp, counters, respond, actors_json,
                                 status_atom::value);
    };
  } else {
    if (params->device.empty() || (by_operator && params->org.empty())) {
      ++counters_->refused_bad_request;
      respond(text_reply(400, "bad_request",
                         params->device.empty()
                           ? "parameter device: required"
                           : "parameter org: required with device"));
      return true;
    }
    auto since = cfg_.clock->now_ms() - params->hours * 3600 * 1000;
    api = [insp, counters, since, device = params->device](
            caf::event_based_actor* self, const std::string& org,
            const respond_fn& respond) {
      // The store names a device of an org "org/device": the token's org
      // or the one the operator chose.
      ask_inspector<delivery_rows>(
        self, insp, counters, respond,
        [device, since](const delivery_rows& rows) {
          return delivery_json(device, since, rows);
        },
        delivery_atom::value, org + "/" + device, since);
    };
  }
  if (!by_operator) {
    with_org(*sys_, cfg_, counters_, req.authorization, std::move(respond),
             std::move(api));
    return true;
  }
  // The certificate proved an operator: the org is the one asked for.
  sys_->spawn([api = std::move(api), org = params->org,
               respond = std::move(respond)](caf::event_based_actor* self) {
    api(self, org, respond);
  });
  return true;
}

actor_stats web_console::stats() const {
  actor_stats out;
  out.name = "web_console";
  out.state = "running";
  auto& c = *counters_;
  out.counters = {{"requests", c.requests.load()},
                  {"api_requests", c.api_requests.load()},
                  {"refused_unauthorized", c.refused_unauthorized.load()},
                  {"operator_requests", c.operator_requests.load()},
                  {"refused_not_found", c.refused_not_found.load()},
                  {"refused_bad_request", c.refused_bad_request.load()},
                  {"unavailable", c.unavailable.load()}};
  return out;
}

} // namespace fleetd
