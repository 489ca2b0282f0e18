#include "tools/fleetctl_actors.hpp"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <vector>

#include "runtime/json.hpp"

namespace fleetd {

const char* actor_columns =
  "name, mailbox, handled, rate, p50, p99, errors, restarts, idle";

std::string to_text(const process_figures& x) {
  char line[160];
  snprintf(line, sizeof(line),
           "rss %.1f MiB, cpu %.1f s, %lld threads, %lld fds, %lld sockets",
           static_cast<double>(x.rss_bytes) / (1024.0 * 1024.0),
           static_cast<double>(x.cpu_ms) / 1000.0,
           static_cast<long long>(x.threads), static_cast<long long>(x.fds),
           static_cast<long long>(x.sockets));
  return line;
}

namespace {

using key_fn = std::function<int64_t(const actor_runtime&)>;

// The sort key of each numeric column.
const std::vector<std::pair<std::string, key_fn>>& numeric_columns() {
  static const std::vector<std::pair<std::string, key_fn>> xs = {
    {"mailbox", [](const actor_runtime& r) { return r.mailbox; }},
    {"handled", [](const actor_runtime& r) { return r.handled; }},
    {"rate", [](const actor_runtime& r) { return r.per_second; }},
    {"p50", [](const actor_runtime& r) { return r.p50_us; }},
    {"p99", [](const actor_runtime& r) { return r.p99_us; }},
    {"errors", [](const actor_runtime& r) { return r.errors; }},
    {"restarts", [](const actor_runtime& r) { return r.restarts; }},
    {"idle", [](const actor_runtime& r) { return r.idle_ms; }},
  };
  return xs;
}

} // namespace

std::vector<std::string> actor_column_names() {
  std::vector<std::string> out{"name"};
  for (auto& col : numeric_columns())
    out.push_back(col.first);
  return out;
}

std::vector<const actor_stats*> sorted_actors(const node_status& x,
                                              const std::string& column) {
  std::vector<const actor_stats*> out;
  for (auto& a : x.actors)
    out.push_back(&a);
  if (column == "name") {
    std::stable_sort(out.begin(), out.end(), [](auto* a, auto* b) {
      return a->name < b->name;
    });
    return out;
  }
  for (auto& col : numeric_columns()) {
    if (col.first != column)
      continue;
    auto& key = col.second;
    std::stable_sort(out.begin(), out.end(), [&key](auto* a, auto* b) {
      return key(a->runtime) > key(b->runtime);
    });
  }
  return out;
}

namespace {

// "-" for a figure the runtime does not have.
std::string figure(const actor_runtime& r, int64_t value) {
  return r.measured && value >= 0 ? std::to_string(value) : "-";
}

} // namespace

bool is_actor_column(const std::string& column) {
  if (column.empty() || column == "name")
    return true;
  for (auto& kv : numeric_columns())
    if (kv.first == column)
      return true;
  return false;
}

std::string actor_table_header(const std::string& marked, bool ascending) {
  static const std::vector<std::pair<std::string, const char*>> labels = {
    {"name", "ACTOR"},  {"mailbox", "MAILBOX"}, {"handled", "HANDLED"},
    {"rate", "MSG/S"},  {"p50", "P50_US"},      {"p99", "P99_US"},
    {"errors", "ERRORS"}, {"restarts", "RESTARTS"}, {"idle", "IDLE_MS"}};
  std::vector<std::string> l;
  for (auto& kv : labels)
    l.push_back(kv.second + std::string(kv.first == marked
                                          ? (ascending ? "^" : "v")
                                          : ""));
  char line[512];
  snprintf(line, sizeof(line), "%-24s %8s %12s %8s %8s %8s %7s %9s %9s  %s",
           l[0].c_str(), l[1].c_str(), l[2].c_str(), l[3].c_str(),
           l[4].c_str(), l[5].c_str(), l[6].c_str(), l[7].c_str(),
           l[8].c_str(), "LAST_ERROR");
  return line;
}

std::string actor_table_row(const actor_stats& a) {
  auto& r = a.runtime;
  char line[512];
  snprintf(line, sizeof(line), "%-24s %8s %12s %8s %8s %8s %7s %9s %9s  %.120s",
           a.name.c_str(), figure(r, r.mailbox).c_str(),
           figure(r, r.handled).c_str(), figure(r, r.per_second).c_str(),
           figure(r, r.p50_us).c_str(), figure(r, r.p99_us).c_str(),
           figure(r, r.errors).c_str(), figure(r, r.restarts).c_str(),
           figure(r, r.idle_ms).c_str(), r.last_error.c_str());
  return line;
}

std::string actors_text(const node_status& x, const std::string& column) {
  std::string out = "node " + x.node_id + " (" + x.role + "), up "
                    + std::to_string(x.uptime_ms / 1000) + "s, "
                    + to_text(x.process) + "\n" + actor_table_header() + "\n";
  for (auto* a : sorted_actors(x, column))
    out += actor_table_row(*a) + "\n";
  return out;
}

std::string actors_json(const node_status& x, const std::string& column) {
  std::string rows;
  for (auto* a : sorted_actors(x, column)) {
    json_object row;
    row.add("name", a->name).add("state", a->state)
      .raw("runtime", to_json(a->runtime));
    rows += (rows.empty() ? "" : ",") + row.str();
  }
  json_object out;
  out.add("role", x.role)
    .add("node_id", x.node_id)
    .add("uptime_ms", x.uptime_ms)
    .raw("process", to_json(x.process))
    .raw("actors", "[" + rows + "]");
  return out.str();
}

} // namespace fleetd
