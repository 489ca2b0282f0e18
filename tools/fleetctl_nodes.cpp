#include "tools/fleetctl_nodes.hpp"

#include <algorithm>
#include <cstdio>
#include <map>

#include "runtime/json.hpp"
#include "tools/fleetctl_streams.hpp"

namespace fleetd {

namespace {

node_row self_row(const node_status& x) {
  node_row r;
  r.id = x.node_id;
  r.role = x.role;
  r.link = "self";
  r.detail = "fleetd " + x.version + ", up "
             + std::to_string(x.uptime_ms / 1000) + "s";
  return r;
}

const actor_stats* actor_of(const node_status& x, const std::string& name) {
  for (auto& a : x.actors)
    if (a.name == name)
      return &a;
  return nullptr;
}

} // namespace

std::vector<node_row> device_nodes(const node_status& x) {
  std::vector<node_row> out{self_row(x)};
  node_row cloud;
  cloud.id = "cloud";
  cloud.role = "cloud";
  // The backoff actor keeps the link's state, cloud_link the endpoint in use.
  auto* backoff = actor_of(x, "backoff");
  cloud.link = backoff ? backoff->state.substr(0, backoff->state.find(':'))
                       : "unknown";
  if (backoff && backoff->state.find(':') != std::string::npos)
    cloud.detail = backoff->state.substr(backoff->state.find(':') + 2);
  if (auto* link = actor_of(x, "cloud_link")) {
    const std::string connected = "connected to ";
    auto& s = link->state;
    if (s.rfind(connected, 0) == 0)
      cloud.address = s.substr(connected.size(), s.find(' ', connected.size())
                                                   - connected.size());
    else if (cloud.detail.empty())
      cloud.detail = s;
  }
  out.push_back(std::move(cloud));
  return out;
}

std::vector<node_row> cloud_nodes(const node_status& x, const device_infos& xs,
                                  int64_t offline_after_ms) {
  std::vector<node_row> out{self_row(x)};
  auto now = x.started_ms + x.uptime_ms;
  std::map<std::string, std::pair<int64_t, int64_t>> seen; // last, streams
  for (auto& d : xs) {
    auto& s = seen[d.device_id];
    s.first = std::max(s.first, d.last_seen_ms);
    ++s.second;
  }
  for (auto& kv : seen) {
    node_row r;
    r.id = kv.first;
    r.role = "device";
    r.last_seen_ms = kv.second.first;
    r.link = kv.second.first > 0 && now - kv.second.first <= offline_after_ms
               ? "online"
               : "offline";
    r.detail = std::to_string(kv.second.second) + " stream"
               + (kv.second.second == 1 ? "" : "s");
    out.push_back(std::move(r));
  }
  return out;
}

std::string nodes_text(const std::vector<node_row>& xs, int64_t now_ms) {
  char line[512];
  snprintf(line, sizeof(line), "%-24s %-7s %-8s %-10s %-32s  %s\n", "NODE",
           "ROLE", "LINK", "LAST_SEEN", "ADDRESS", "DETAIL");
  std::string out = line;
  for (auto& r : xs) {
    auto seen = r.last_seen_ms < 0 ? std::string{"-"}
                                   : age_text(r.last_seen_ms, now_ms);
    snprintf(line, sizeof(line), "%-24s %-7s %-8s %-10s %-32s  %.160s\n",
             r.id.c_str(), r.role.c_str(), r.link.c_str(), seen.c_str(),
             r.address.empty() ? "-" : r.address.c_str(), r.detail.c_str());
    out += line;
  }
  return out;
}

std::string nodes_json(const std::vector<node_row>& xs) {
  std::string rows;
  for (auto& r : xs) {
    json_object row;
    row.add("id", r.id)
      .add("role", r.role)
      .add("link", r.link)
      .add("address", r.address)
      .add("last_seen_ms", r.last_seen_ms)
      .add("detail", r.detail);
    rows += (rows.empty() ? "" : ",") + row.str();
  }
  return "[" + rows + "]";
}

} // namespace fleetd
