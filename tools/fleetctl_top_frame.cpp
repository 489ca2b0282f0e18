#include "tools/fleetctl_top_frame.hpp"

#include <algorithm>
#include <cstdio>
#include <map>

#include "tools/fleetctl_actors.hpp"
#include "tools/fleetctl_watch.hpp"

namespace fleetd {

namespace {

// "3d 04:05:06" or "04:05:06".
std::string uptime_text(int64_t ms) {
  auto s = std::max<int64_t>(ms, 0) / 1000;
  char out[48];
  if (s >= 86400)
    snprintf(out, sizeof(out), "%lldd %02lld:%02lld:%02lld",
             static_cast<long long>(s / 86400),
             static_cast<long long>(s % 86400 / 3600),
             static_cast<long long>(s % 3600 / 60),
             static_cast<long long>(s % 60));
  else
    snprintf(out, sizeof(out), "%02lld:%02lld:%02lld",
             static_cast<long long>(s / 3600),
             static_cast<long long>(s % 3600 / 60),
             static_cast<long long>(s % 60));
  return out;
}

// A node's text may carry escape sequences: they must not reach the terminal.
std::string fit(std::string line, int cols) {
  for (auto& c : line)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      c = '?';
  if (cols > 0 && line.size() > static_cast<size_t>(cols))
    line.resize(static_cast<size_t>(cols));
  return line;
}

} // namespace

node_status with_rates(const node_status& now, const node_status* before,
                       int64_t elapsed_ms) {
  node_status out = now;
  std::map<std::string, int64_t> handled;
  if (before)
    for (auto& a : before->actors)
      handled[a.name] = a.runtime.handled;
  for (auto& a : out.actors) {
    auto i = handled.find(a.name);
    auto& r = a.runtime;
    r.per_second = i == handled.end() || elapsed_ms <= 0
                       || r.handled < i->second
                     ? -1
                     : (r.handled - i->second) * 1000 / elapsed_ms;
  }
  return out;
}

std::vector<std::string> top_frame(const top_sample& s, const top_view& view,
                                   int rows, int cols) {
  auto x = with_rates(s.now, s.before, s.elapsed_ms);
  std::vector<std::string> out;
  out.push_back("fleetctl top - node " + x.node_id + " (" + x.role
                + ", fleetd " + x.version + "), up " + uptime_text(x.uptime_ms)
                + ", " + clock_text(s.at_ms));
  std::string cpu;
  if (s.before && s.elapsed_ms > 0 && x.process.cpu_ms >= 0
      && s.before->process.cpu_ms >= 0) {
    char pct[48];
    snprintf(pct, sizeof(pct), ", cpu %.1f%% of a core",
             static_cast<double>(x.process.cpu_ms - s.before->process.cpu_ms)
               * 100.0 / static_cast<double>(s.elapsed_ms));
    cpu = pct;
  }
  out.push_back("process: " + to_text(x.process) + cpu);
  int64_t total = 0;
  bool rated = false;
  for (auto& a : x.actors)
    if (a.runtime.per_second >= 0) {
      total += a.runtime.per_second;
      rated = true;
    }
  char line[256];
  snprintf(line, sizeof(line),
           "actors: %zu, %s msg/s in all; sort %s%s; every %lld ms",
           x.actors.size(),
           rated ? std::to_string(total).c_str() : "-", view.sort.c_str(),
           view.reverse ? " reversed" : "",
           static_cast<long long>(view.interval_ms));
  out.push_back(line);
  out.push_back(s.error.empty() ? "" : "! " + s.error);
  bool ascending = (view.sort == "name") != view.reverse;
  out.push_back(actor_table_header(view.sort, ascending));
  auto order = sorted_actors(x, view.sort);
  if (view.reverse)
    std::reverse(order.begin(), order.end());
  const std::string keys =
    "q quit  < > sort column  1-9 column  r reverse  + - interval";
  // Rows left for actors once the key line has its own.
  auto room = rows > 0 ? std::max<int>(rows - static_cast<int>(out.size()) - 1, 0)
                       : static_cast<int>(order.size());
  auto shown = std::min<int>(room, static_cast<int>(order.size()));
  if (shown < static_cast<int>(order.size()) && shown > 0)
    --shown; // the last row says how many do not fit
  for (int i = 0; i < shown; ++i)
    out.push_back(actor_table_row(*order[static_cast<size_t>(i)]));
  if (shown < static_cast<int>(order.size()) && room > 0)
    out.push_back("... " + std::to_string(order.size() - shown)
                  + " more actors (taller window)");
  // Without a window (one frame, no terminal) there are no keys to press.
  if (rows > 0)
    out.push_back(keys);
  if (rows > 0 && out.size() > static_cast<size_t>(rows))
    out.resize(static_cast<size_t>(rows));
  for (auto& l : out)
    l = fit(std::move(l), cols);
  return out;
}

} // namespace fleetd
