#include "runtime/metrics_page.hpp"

#include <cstdio>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include <caf/event_based_actor.hpp>

#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "messages/prom_text.hpp"

namespace fleetd {

const char* prom_text_type = "text/plain; version=0.0.4; charset=utf-8";

namespace {

// The inspector asks each actor with 2 s to answer: a little more here.
constexpr auto status_timeout = std::chrono::seconds(5);

// Counters that go down as well as up: depths, sizes, settings, times.
const std::set<std::string>& gauge_names() {
  static const std::set<std::string> xs = {
    "series", "port", "tier", "detected_tier", "groups", "enrolled",
    "under_pressure", "config_version", "cloud_settings_version",
    "batch_size", "zstd_level", "memory_points", "rounds_file",
    "storage_bytes", "cpu_cores", "session_series", "stale_connections",
    "cached_keys", "consecutive_failures", "last_acked_sequence",
    "lag_entries", "busy", "files", "open", "listeners", "store_logs",
    "max_bytes", "devices_watched", "rollouts_under_way",
  };
  return xs;
}

bool starts_with(const std::string& x, const char* prefix) {
  return x.rfind(prefix, 0) == 0;
}

bool ends_with(const std::string& x, const std::string& suffix) {
  return x.size() >= suffix.size()
         && x.compare(x.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A metric name's characters: [a-zA-Z0-9_] (':' is for recording rules).
std::string sanitize(const std::string& x) {
  std::string out;
  for (char c : x) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_';
    out += ok ? c : '_';
  }
  if (out.empty() || (out[0] >= '0' && out[0] <= '9'))
    out.insert(out.begin(), '_');
  return out;
}

std::string number(double x) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%.15g", x);
  return buf;
}

// The page's families in the order first added, each emitted whole (HELP,
// TYPE, its samples): the format wants a family's lines together.
class page {
public:
  void add(const std::string& family, const char* type, std::string help,
           const std::string& labels, const std::string& value) {
    auto [it, fresh] = index_.emplace(family, families_.size());
    if (fresh)
      families_.push_back({family, type, std::move(help), {}, {}});
    auto& f = families_[it->second];
    // One series once: two counters that sanitise alike keep the first.
    if (!f.seen.insert(labels).second)
      return;
    f.samples += family + (labels.empty() ? "" : "{" + labels + "}") + " "
                 + value + "\n";
  }

  std::string str() const {
    std::string out;
    for (auto& f : families_)
      out += "# HELP " + f.name + " " + f.help + "\n# TYPE " + f.name + " "
             + f.type + "\n" + f.samples;
    return out;
  }

private:
  struct family_lines {
    std::string name;
    const char* type;
    std::string help;
    std::set<std::string> seen;
    std::string samples;
  };
  std::map<std::string, size_t> index_;
  std::vector<family_lines> families_;
};

std::string actor_label(const std::string& name) {
  return "actor=" + prom_label_value(name);
}

void add_process(page& p, const process_figures& x) {
  auto add = [&p](const char* name, const char* type, const char* help,
                  int64_t v, double scale) {
    if (v >= 0)
      p.add(name, type, help, "", number(static_cast<double>(v) * scale));
  };
  add("fleetd_process_resident_memory_bytes", "gauge",
      "Resident set size of the node process (VmRSS).", x.rss_bytes, 1);
  add("fleetd_process_cpu_seconds_total", "counter",
      "User and system CPU time of the node process.", x.cpu_ms, 1e-3);
  add("fleetd_process_threads", "gauge", "Threads of the node process.",
      x.threads, 1);
  add("fleetd_process_open_fds", "gauge",
      "Open file descriptors of the node process.", x.fds, 1);
  add("fleetd_process_open_sockets", "gauge",
      "Open sockets (connections and listeners) among the descriptors.",
      x.sockets, 1);
}

// The device's link to the cloud, as the backoff actor states it.
void add_link(page& p, const actor_stats& backoff) {
  auto state = backoff.state.substr(0, backoff.state.find(':'));
  const char* help = "The device's link to the cloud: 1 for its state now "
                     "(online, retrying, offline, probing).";
  for (auto s : {"online", "retrying", "offline", "probing"})
    p.add("fleetd_link_state", "gauge", help,
          "state=\"" + std::string(s) + "\"", state == s ? "1" : "0");
}

void add_runtime(page& p, const actor_stats& a) {
  auto l = actor_label(a.name);
  bool up = !starts_with(a.state, "unresponsive");
  p.add("fleetd_actor_up", "gauge",
        "1 when the actor answered the status request in time.", l,
        up ? "1" : "0");
  auto& r = a.runtime;
  if (!r.measured)
    return;
  auto i = [](int64_t v) { return std::to_string(v); };
  p.add("fleetd_actor_mailbox_messages", "gauge",
        "Messages waiting in the actor's mailbox.", l, i(r.mailbox));
  p.add("fleetd_actor_messages_handled_total", "counter",
        "Messages the actor has handled.", l, i(r.handled));
  p.add("fleetd_actor_messages_per_second", "gauge",
        "Messages handled per second since the previous status.", l,
        i(r.per_second));
  // The runtime keeps log2 buckets but status carries only p50 and p99.
  p.add("fleetd_actor_handling_p50_seconds", "gauge",
        "Median handling time (upper bound of its log2 microsecond bucket).",
        l, number(static_cast<double>(r.p50_us) * 1e-6));
  p.add("fleetd_actor_handling_p99_seconds", "gauge",
        "99th percentile handling time (upper bound of its log2 bucket).", l,
        number(static_cast<double>(r.p99_us) * 1e-6));
  p.add("fleetd_actor_errors_total", "counter",
        "Error answers plus abnormal exits of any incarnation.", l,
        i(r.errors));
  p.add("fleetd_actor_restarts_total", "counter",
        "Times the supervisor restarted the actor.", l, i(r.restarts));
  if (r.idle_ms >= 0)
    p.add("fleetd_actor_idle_seconds", "gauge",
          "Time since the actor last finished a message.", l,
          number(static_cast<double>(r.idle_ms) * 1e-3));
}

} // namespace

std::string prom_label_value(const std::string& x) {
  // A label value is UTF-8 text: a byte that is none (or NUL) shows as '?'.
  std::string text;
  std::string_view rest(x);
  for (auto at = bad_text_at(rest); at != std::string_view::npos;
       at = bad_text_at(rest)) {
    text.append(rest.substr(0, at));
    text += '?';
    rest.remove_prefix(at + 1);
  }
  text.append(rest);
  std::string out;
  append_prom_label_value(out, text);
  return out;
}

bool counter_is_gauge(const std::string& c) {
  return gauge_names().count(c) > 0 || ends_with(c, "_ms")
         || ends_with(c, "_bytes")
         || ends_with(c, "_open") || starts_with(c, "pending_")
         || starts_with(c, "unbatched_") || starts_with(c, "uncommitted_")
         || starts_with(c, "queued_") || starts_with(c, "last_")
         || starts_with(c, "kept_") || starts_with(c, "available_")
         || starts_with(c, "total_") || starts_with(c, "rounds_file_");
}

std::string counter_family(const std::string& counter) {
  auto name = "fleetd_" + sanitize(counter);
  if (counter_is_gauge(counter) || ends_with(name, "_total"))
    return name;
  return name + "_total";
}

std::string render_metrics(const node_status& st) {
  page p;
  p.add("fleetd_node_info", "gauge",
        "The node's role, id and version (value 1).",
        "role=" + prom_label_value(st.role)
          + ",node_id=" + prom_label_value(st.node_id)
          + ",version=" + prom_label_value(st.version),
        "1");
  p.add("fleetd_node_uptime_seconds", "gauge",
        "Time since the node started (its counters count from then).", "",
        number(static_cast<double>(st.uptime_ms) * 1e-3));
  p.add("fleetd_node_start_time_seconds", "gauge",
        "When the node process started, Unix seconds.", "",
        number(static_cast<double>(st.started_ms) * 1e-3));
  add_process(p, st.process);
  for (auto& a : st.actors)
    if (a.name == "backoff")
      add_link(p, a);
  for (auto& a : st.actors)
    add_runtime(p, a);
  for (auto& a : st.actors)
    for (auto& [name, value] : a.counters)
      p.add(counter_family(name), counter_is_gauge(name) ? "gauge" : "counter",
            "The actors' counter " + sanitize(name) + " (fleetctl status).",
            actor_label(a.name), std::to_string(value));
  return p.str();
}

std::string prom_family_text(const std::string& name, const char* type,
                        const std::string& help,
                        const std::vector<std::pair<std::string, std::string>>&
                          samples) {
  page p;
  for (auto& [labels, value] : samples)
    p.add(name, type, help, labels, value);
  return p.str();
}

void metrics_endpoint::bind(caf::actor_system& sys, inspector_actor inspector,
                            metrics_extra extra) {
  std::lock_guard<std::mutex> guard{mtx_};
  sys_ = &sys;
  inspector_ = std::move(inspector);
  extra_ = std::move(extra);
}

void metrics_endpoint::serve(http_server::respond_fn respond) const {
  caf::actor_system* sys;
  inspector_actor insp;
  metrics_extra extra;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    sys = sys_;
    insp = inspector_;
    extra = extra_;
  }
  if (!sys || !insp) {
    respond(text_reply(503, "starting", "the node is still starting"));
    return;
  }
  sys->spawn([insp, respond, extra](caf::event_based_actor* self) {
    self->request(insp, status_timeout, status_atom::value)
      .then(
        [self, insp, respond, extra](node_status& st) {
          auto answer = [self, respond, body = render_metrics(st)](
                          std::string more) {
            http_reply rep;
            rep.content_type = prom_text_type;
            rep.body = body + more;
            respond(std::move(rep));
            self->quit();
          };
          if (extra)
            extra(self, insp, st, answer);
          else
            answer({});
        },
        [self, respond](caf::error& err) {
          respond(text_reply(503, "unavailable", render(err)));
          self->quit();
        });
  });
}

} // namespace fleetd
