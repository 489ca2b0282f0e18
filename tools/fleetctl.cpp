// fleetctl: the operator's console for any fleetd node (CAF remote actors).
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>

#include "messages/error.hpp"
#include "messages/interfaces.hpp"
#include "runtime/console_client.hpp"
#include "runtime/json.hpp"
#include "tools/fleetctl_actors.hpp"
#include "tools/fleetctl_delivery.hpp"
#include "runtime/logger.hpp"
#include "runtime/node.hpp"
#include "runtime/options.hpp"
#include "tools/fleetctl_query.hpp"
#include "tools/fleetctl_rollout.hpp"
#include "tools/fleetctl_tenancy.hpp"
#include "tools/fleetctl_nodes.hpp"
#include "tools/fleetctl_streams.hpp"
#include "tools/fleetctl_top.hpp"
#include "tools/fleetctl_watch.hpp"

namespace fleetd {
namespace {

struct ctl_options {
  std::string node;
  console_client_config tls;
  bool json = false;
  std::string sort;
  option_set::duration timeout{};
  option_set::duration interval{};
  int64_t count = 0;
  bool watch = false;
  option_set::duration offline_after{};
  // config: a --set value left at its default (the device's own value) was
  // not given; the options' minimums keep a given value apart from it.
  int64_t set_batch_size = 0;
  option_set::duration set_sync_interval{};
  option_set::duration set_retention{};
  int64_t set_zstd_level = -1;
  bool unset_batch_size = false;
  bool unset_sync_interval = false;
  bool unset_retention = false;
  bool unset_zstd_level = false;
  bool create = false;
  tenancy_options tenancy;
  query_options query;
  rollout_options rollout;
  delivery_options delivery;
};

/// The settings change `fleetctl config` asks for, or the reason to refuse.
caf::expected<settings_change> change_of(const ctl_options& opt) {
  settings_change out;
  out.values.batch_size = opt.set_batch_size;
  out.values.sync_interval_ms = opt.set_sync_interval.count();
  out.values.retention_ms = opt.set_retention.count();
  out.values.zstd_level = opt.set_zstd_level;
  out.create = opt.create;
  struct field {
    const char* name;
    settings_field bit;
    bool set;
    bool unset;
  };
  for (auto& f : {field{"batch-size", field_batch_size, opt.set_batch_size > 0,
                        opt.unset_batch_size},
                  field{"sync-interval", field_sync_interval,
                        opt.set_sync_interval.count() > 0,
                        opt.unset_sync_interval},
                  field{"retention", field_retention,
                        opt.set_retention.count() > 0, opt.unset_retention},
                  field{"zstd-level", field_zstd_level,
                        opt.set_zstd_level >= 0, opt.unset_zstd_level}}) {
    if (f.set && f.unset)
      return make_error(ec::bad_config, std::string{"config: both --set."}
                                          + f.name + " and --unset." + f.name);
    if (f.set || f.unset)
      out.fields |= f.bit;
  }
  if (out.fields == 0)
    return make_error(ec::bad_config,
                      "config: nothing to set; give --set.OPTION=VALUE or "
                      "--unset.OPTION (see --help)");
  return out;
}

constexpr const char* summary =
  "The fleetd console: inspects a node's actors and devices.\n\n"
  "commands:\n"
  "  status    the node's identity and every actor's state and counters\n"
  "  actors    one row per actor as the runtime measures it: mailbox,\n"
  "            messages handled (total, per second since the previous ask),\n"
  "            handling time p50/p99, errors, restarts, idle time; --sort\n"
  "            COLUMN (largest first), --json\n"
  "  devices   on a cloud node: each device stream with points received,\n"
  "            batches, duplicates, gaps, last acked sequence and the\n"
  "            device's reported tier, RAM and CPUs (tier 0: none yet)\n"
  "  top       a live full-screen view of the node (like htop): header,\n"
  "            every actor's figures, rates from two answers; keys: q or\n"
  "            Ctrl-C quit, < > (or arrows) sort column, 1-9 pick column, r\n"
  "            reverse, + - interval; --sort, --interval. Not a terminal:\n"
  "            one frame from two answers --interval apart\n"
  "  nodes     the node and the peers it knows: on a device its cloud link\n"
  "            (state, URL); on a cloud each device heard from, online\n"
  "            when heard within --offline-after\n"
  "  streams   on a device each sync stream: records stored, pending (not\n"
  "            yet batched), batches acked, last acked sequence, failures;\n"
  "            on a cloud each device stream as devices shows it\n"
  "  status, actors, devices, nodes, streams: --json for JSON, --watch to\n"
  "            ask again every --interval until Ctrl-C (or --count answers)\n"
  "  watch     one live line of what flows through the node, every\n"
  "            --interval, until Ctrl-C (or --count lines); with --json one\n"
  "            JSON object per line. Rides out a node restart: says so on\n"
  "            stderr and reconnects. Counters are the node process's own,\n"
  "            counted from its start (started_ms in JSON)\n"
  "  config DEVICE --set.OPTION=VALUE --unset.OPTION ...\n"
  "            on a cloud node: change a device's sync settings (batch\n"
  "            size, interval, retention, zstd level); the others keep\n"
  "            their value, --unset.OPTION gives one back to the device;\n"
  "            the device applies them with its next sync round and keeps\n"
  "            them across restarts. Refused (exit 2): nothing to set, a\n"
  "            value the settings cannot carry, a device the cloud has\n"
  "            never heard from (unless --create)\n"
  "  debug kill ACTOR\n"
  "            testing aid, only on a node started with node.test-hooks =\n"
  "            true: kills a supervised actor as a fault would, to show it\n"
  "            is restarted (fleetctl status: supervisor counters, health)\n";

// The node's health as its supervisor tells it ("healthy", "unhealthy: ...").
std::string health_of(const node_status& x) {
  for (auto& a : x.actors)
    if (a.name == "supervisor")
      return a.state;
  return "unknown (no supervisor)";
}

std::string to_json(const node_status& x) {
  std::ostringstream out;
  out << "{\"role\":" << json_quote(x.role)
      << ",\"node_id\":" << json_quote(x.node_id)
      << ",\"version\":" << json_quote(x.version)
      << ",\"uptime_ms\":" << x.uptime_ms
      << ",\"started_ms\":" << x.started_ms
      << ",\"health\":" << json_quote(health_of(x)) << ",\"actors\":[";
  for (size_t i = 0; i < x.actors.size(); ++i) {
    auto& a = x.actors[i];
    out << (i ? "," : "") << "{\"name\":" << json_quote(a.name)
        << ",\"state\":" << json_quote(a.state) << ",\"counters\":{";
    bool first = true;
    for (auto& kv : a.counters) {
      out << (first ? "" : ",") << json_quote(kv.first) << ":" << kv.second;
      first = false;
    }
    out << "},\"runtime\":" << to_json(a.runtime) << "}";
  }
  out << "],\"process\":" << to_json(x.process) << "}";
  return out.str();
}

std::string to_json(const device_infos& xs) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < xs.size(); ++i) {
    auto& d = xs[i];
    out << (i ? "," : "") << "{\"device_id\":" << json_quote(d.device_id)
        << ",\"stream\":" << json_quote(d.stream)
        << ",\"points_received\":" << d.points_received
        << ",\"batches_received\":" << d.batches_received
        << ",\"duplicates\":" << d.duplicates
        << ",\"last_acked_sequence\":" << d.last_acked_sequence
        << ",\"gaps\":" << d.gaps << ",\"last_seen_ms\":" << d.last_seen_ms;
    auto& c = d.capability;
    out << ",\"capability\":{\"tier\":" << c.tier
        << ",\"total_ram\":" << c.total_ram
        << ",\"available_ram\":" << c.available_ram
        << ",\"total_disk\":" << c.total_disk
        << ",\"available_disk\":" << c.available_disk
        << ",\"cpu_cores\":" << c.cpu_cores
        << ",\"has_sqlite\":" << (c.has_sqlite ? "true" : "false")
        << ",\"has_network\":" << (c.has_network ? "true" : "false") << "}}";
  }
  out << "]";
  return out.str();
}

std::string to_text(const node_status& x) {
  std::ostringstream out;
  out << "node " << x.node_id << " (" << x.role << ", fleetd " << x.version
      << "), up " << x.uptime_ms / 1000 << "s\nhealth: " << health_of(x)
      << "\nprocess: " << to_text(x.process) << "\n";
  for (auto& a : x.actors) {
    out << "  " << a.name << ": " << a.state << "\n   ";
    for (auto& kv : a.counters)
      out << " " << kv.first << "=" << kv.second;
    auto& r = a.runtime;
    if (r.measured)
      out << "\n    runtime: mailbox=" << r.mailbox << " handled=" << r.handled
          << " per_second=" << r.per_second << " p50_us=" << r.p50_us
          << " p99_us=" << r.p99_us << " errors=" << r.errors
          << " restarts=" << r.restarts << " idle_ms=" << r.idle_ms
          << (r.last_error.empty() ? "" : " last_error=" + r.last_error);
    out << "\n";
  }
  return out.str();
}

std::string to_text(const device_infos& xs) {
  std::ostringstream out;
  char line[256];
  snprintf(line, sizeof(line), "%-24s %-8s %12s %8s %6s %6s %10s %4s %8s %4s\n",
           "DEVICE", "STREAM", "POINTS", "BATCHES", "DUPS", "GAPS", "LAST_ACK",
           "TIER", "RAM_MB", "CPUS");
  out << line;
  for (auto& d : xs) {
    // Tier 0: the device has not reported its capability yet.
    snprintf(line, sizeof(line),
             "%-24s %-8s %12lld %8lld %6lld %6lld %10lld %4lld %8lld %4lld\n",
             d.device_id.c_str(), d.stream.c_str(),
             static_cast<long long>(d.points_received),
             static_cast<long long>(d.batches_received),
             static_cast<long long>(d.duplicates),
             static_cast<long long>(d.gaps),
             static_cast<long long>(d.last_acked_sequence),
             static_cast<long long>(d.capability.tier),
             static_cast<long long>(d.capability.total_ram / 1000000),
             static_cast<long long>(d.capability.cpu_cores));
    out << line;
  }
  return out.str();
}

int64_t counter(const node_status& x, const char* actor, const char* name) {
  for (auto& a : x.actors)
    if (a.name == actor) {
      auto i = a.counters.find(name);
      return i == a.counters.end() ? 0 : i->second;
    }
  return 0;
}

std::string state_of(const node_status& x, const char* actor) {
  for (auto& a : x.actors)
    if (a.name == actor)
      return a.state;
  return "?";
}

std::string to_text(const std::string& device, const cloud_settings& x) {
  std::ostringstream out;
  auto own = [](int64_t v) { return v > 0 ? std::to_string(v) : "own"; };
  auto own_ms = [](int64_t v) {
    return v > 0 ? to_duration_text(std::chrono::milliseconds{v}) : "own";
  };
  out << "device " << device << ": settings version " << x.version
      << "\n  batch_size " << own(x.batch_size) << "\n  sync_interval "
      << own_ms(x.sync_interval_ms) << "\n  retention "
      << own_ms(x.retention_ms) << "\n  zstd_level "
      << (x.zstd_level < 0 ? std::string("own") : std::to_string(x.zstd_level))
      << "\n(applied by the device with its next sync round)\n";
  return out.str();
}

std::string to_json(const std::string& device, const cloud_settings& x) {
  json_object out;
  out.add("device_id", device)
    .add("version", x.version)
    .add("batch_size", x.batch_size)
    .add("sync_interval_ms", x.sync_interval_ms)
    .add("retention_ms", x.retention_ms)
    .add("zstd_level", x.zstd_level);
  return out.str();
}

/// The few counters that show data flowing through the node.
struct flow {
  std::vector<std::pair<const char*, int64_t>> counters;
  /// On a device: the link's state (backoff actor).
  std::string link;
};

flow flow_of(const node_status& x) {
  if (x.role == "edge")
    return {{{"collected", counter(x, "system_collector", "points_collected")},
             {"stored", counter(x, "storage", "points_stored")},
             {"synced", counter(x, "sync_metrics", "records_synced")},
             {"logs", counter(x, "sync_logs", "records_synced")},
             {"events", counter(x, "sync_events", "records_synced")},
             {"acked_seq", counter(x, "sync_metrics", "last_acked_sequence")},
             {"queued", counter(x, "storage", "queued_batches")}},
            state_of(x, "backoff")};
  return {{{"batches", counter(x, "ingest", "accepted")},
           {"points", counter(x, "ingest", "points")},
           {"duplicates", counter(x, "ingest", "duplicates")},
           {"requests", counter(x, "ingest", "requests")}},
          ""};
}

// "HH:MM:SS NODE collected=N ... link=STATE": one line of `watch`.
std::string flow_line(const node_status& x, int64_t at_ms) {
  auto f = flow_of(x);
  std::ostringstream out;
  out << clock_text(at_ms) << " " << x.node_id;
  for (auto& kv : f.counters)
    out << " " << kv.first << "=" << kv.second;
  if (x.role == "edge")
    out << " link=" << f.link;
  return out.str();
}

// The same as one JSON object, with the node process's start time.
std::string flow_json(const node_status& x, int64_t at_ms) {
  auto f = flow_of(x);
  json_object out;
  out.add("time_ms", at_ms)
    .add("node_id", x.node_id)
    .add("role", x.role)
    .add("started_ms", x.started_ms);
  for (auto& kv : f.counters)
    out.add(kv.first, kv.second);
  if (x.role == "edge")
    out.add("link", f.link);
  return out.str();
}

/// `fleetctl watch`'s line, with a node restart said once on stderr.
console_show flow_show(const ctl_options& opt) {
  auto started = std::make_shared<int64_t>(0);
  return [opt, started](caf::scoped_actor& self, const inspector_actor& node)
           -> caf::expected<std::string> {
    auto x = ask_node<node_status>(self, node, opt.timeout, status_atom::value);
    if (!x)
      return x.error();
    if (*started != 0 && x->started_ms != *started)
      std::cerr << "fleetctl: watch: node " << x->node_id << " restarted at "
                << clock_text(x->started_ms)
                << "; its counters count from 0 again" << std::endl;
    *started = x->started_ms;
    auto at = now_ms();
    return (opt.json ? flow_json(*x, at) : flow_line(*x, at)) + "\n";
  };
}

/// The console commands that ask and print; --json, --watch and --count
/// work on each, one line adds one. Empty: not one of them.
console_show show_of(const std::string& cmd, const ctl_options& opt) {
  auto status = [opt](auto print) -> console_show {
    return [opt, print](caf::scoped_actor& self, const inspector_actor& node)
             -> caf::expected<std::string> {
      auto x = ask_node<node_status>(self, node, opt.timeout,
                                     status_atom::value);
      if (!x)
        return x.error();
      return print(*x);
    };
  };
  if (cmd == "status")
    return status([json = opt.json](const node_status& x) {
      return json ? to_json(x) + "\n" : to_text(x);
    });
  if (cmd == "actors")
    return status([json = opt.json, sort = opt.sort](const node_status& x) {
      return json ? actors_json(x, sort) + "\n" : actors_text(x, sort);
    });
  if (cmd == "devices")
    return [opt](caf::scoped_actor& self, const inspector_actor& node)
             -> caf::expected<std::string> {
      auto xs = ask_node<device_infos>(self, node, opt.timeout,
                                       devices_atom::value);
      if (!xs)
        return xs.error();
      return opt.json ? to_json(*xs) + "\n" : to_text(*xs);
    };
  if (cmd == "delivery")
    return [opt](caf::scoped_actor& self, const inspector_actor& node)
             -> caf::expected<std::string> {
      auto since = now_ms() - opt.delivery.since.count();
      auto xs = ask_node<delivery_rows>(self, node, opt.timeout,
                                        delivery_atom::value,
                                        opt.query.device, since);
      if (!xs)
        return xs.error();
      return opt.json ? delivery_json(*xs) + "\n" : delivery_text(*xs);
    };
  if (cmd == "nodes" || cmd == "streams")
    return [opt, cmd](caf::scoped_actor& self, const inspector_actor& node)
             -> caf::expected<std::string> {
      auto x = ask_node<node_status>(self, node, opt.timeout,
                                     status_atom::value);
      if (!x)
        return x.error();
      // A cloud's peers and streams are its devices.
      device_infos xs;
      if (x->role == "cloud") {
        auto ys = ask_node<device_infos>(self, node, opt.timeout,
                                         devices_atom::value);
        if (!ys)
          return ys.error();
        xs = std::move(*ys);
      }
      auto now = x->started_ms + x->uptime_ms;
      if (cmd == "nodes") {
        auto rows = x->role == "cloud"
                      ? cloud_nodes(*x, xs, opt.offline_after.count())
                      : device_nodes(*x);
        return opt.json ? nodes_json(rows) + "\n" : nodes_text(rows, now);
      }
      auto rows = x->role == "cloud" ? cloud_streams(xs, now)
                                     : device_streams(*x);
      return opt.json ? streams_json(rows) + "\n" : streams_text(rows);
    };
  if (cmd == "watch")
    return flow_show(opt);
  return {};
}

void declare(option_set& opts, ctl_options& opt) {
  using namespace std::chrono_literals;
  opts.add("node", opt.node, "127.0.0.1:7400",
           "HOST:PORT of the node's console (edge default 7400, cloud 7401)");
  opts.add("cert", opt.tls.cert, "",
           "PEM client certificate for the node's console (signed by the "
           "node's console.tls-ca); without --cert/--key/--ca, plain BASP to "
           "a console.insecure node");
  opts.add("key", opt.tls.key, "", "PEM private key of --cert");
  opts.add("ca", opt.tls.ca, "", "PEM CA the node's certificate must chain to");
  opts.add("server-name", opt.tls.server_name, "",
           "Name the node's certificate must carry (default: the host of "
           "--node)");
  opts.add("fingerprint", opt.tls.fingerprint, "",
           "SHA-256 of the node's certificate (hex); checked instead of the "
           "name");
  opts.add("json", opt.json, false, "Print JSON instead of text");
  opts.add("sort", opt.sort, "",
           "actors, top: sort by this column, largest first (name, mailbox, "
           "handled, rate, p50, p99, errors, restarts, idle; default: start "
           "order, top: rate)");
  opts.add("timeout", opt.timeout, 5s, "Deadline for reaching the node and "
                                       "for each answer", 10ms);
  opts.add("interval", opt.interval, 1s,
           "watch, --watch, top: time between answers (top: + and - "
           "double and halve it, 100ms to 1m)",
           10ms);
  opts.add("count", opt.count, 0, "answers",
           "watch, --watch: stop after this many answers (0: until Ctrl-C)",
           0);
  opts.add("watch", opt.watch, false,
           "status, actors, devices, nodes, streams: ask again every "
           "--interval until Ctrl-C or --count");
  opts.add("offline-after", opt.offline_after, 2min,
           "nodes on a cloud: a device not heard from for this long is "
           "offline",
           1s);
  opts.add("set.batch-size", opt.set_batch_size, 0, "points",
           "config: most points per batch for the device (0: not given)", 1,
           max_setting_batch_size);
  opts.add("set.sync-interval", opt.set_sync_interval, 0s,
           "config: how often the device syncs when idle, to the millisecond "
           "(0: not given)",
           1ms);
  opts.add("set.retention", opt.set_retention, 0s,
           "config: drop device data older than this, to the millisecond (0: "
           "not given)",
           1ms);
  opts.add("set.zstd-level", opt.set_zstd_level, -1, "level",
           "config: zstd level of the device's batches (0: uncompressed; -1: "
           "not given)",
           0, max_setting_zstd_level);
  opts.add("unset.batch-size", opt.unset_batch_size, false,
           "config: the device's own batch size again");
  opts.add("unset.sync-interval", opt.unset_sync_interval, false,
           "config: the device's own sync interval again");
  opts.add("unset.retention", opt.unset_retention, false,
           "config: the device's own retention again");
  opts.add("unset.zstd-level", opt.unset_zstd_level, false,
           "config: the device's own zstd level again");
  opts.add("org", opt.tenancy.org, "",
           "org, enroll, device, quota, rollout: the org");
  opts.add("uses", opt.tenancy.uses, 1, "devices",
           "enroll create: how many devices the token may enroll", 1);
  opts.add("expires", opt.tenancy.expires, 24h,
           "enroll create: how long the token is valid", 1s);
  opts.add("ttl", opt.tenancy.ttl, 0ms,
           "token create: how long the API token is valid (0: until revoked)",
           0ms);
  opts.add("overlap", opt.tenancy.overlap, 1h,
           "device rotate-key: how long the old key keeps working", 0ms);
  opts.add("points-per-second", opt.tenancy.points_per_second, 0, "points/s",
           "quota set: the org's points per second (0: unlimited)", 0);
  opts.add_size("bytes-per-day", opt.tenancy.bytes_per_day, 0,
                "quota set: the org's request bytes per day (0: unlimited)", 0,
                int64_t{1} << 50);
  declare(opts, opt.query);
  declare(opts, opt.rollout);
  declare(opts, opt.delivery);
  opts.add("create", opt.create, false,
           "config: accept a device the cloud has never heard from (the "
           "settings wait for it)");
}

// The node's HOST:PORT; false (after saying why) when it is not one.
bool parse_node(const std::string& node, std::string& host, int& port) {
  auto colon = node.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "fleetctl: bad arguments: node: expected HOST:PORT, got '"
              << node << "'" << std::endl;
    return false;
  }
  host = node.substr(0, colon);
  port = std::atoi(node.c_str() + colon + 1);
  if (port <= 0 || port > 65535) {
    std::cerr << "fleetctl: bad arguments: node: bad port in '" << node << "'"
              << std::endl;
    return false;
  }
  return true;
}

// The command and its arguments; 0 when they can run, else the exit code.
int check_command(const option_set& opts, const ctl_options& opt) {
  auto cmd = opts.args().front();
  if (is_query_command(cmd)) {
    if (opts.args().size() == 1 && !opt.query.device.empty()
        && (cmd == "logs" || !opt.query.metric.empty()))
      return 0;
    std::cerr << "fleetctl: bad arguments: " << cmd << ": needs --device"
              << (cmd == "query" ? " and --metric" : "") << ", no words"
              << std::endl;
    return 2;
  }
  if (is_tenancy_command(cmd)) {
    auto t = tenancy_command_of(opts.args(), opt.tenancy);
    if (t)
      return 0;
    std::cerr << "fleetctl: bad arguments: " << error_text(t.error())
              << std::endl;
    return 2;
  }
  if (is_rollout_command(cmd)) {
    auto r = rollout_command_of(opts.args(), opt.rollout, opt.tenancy.org,
                                change_of(opt));
    if (r)
      return 0;
    std::cerr << "fleetctl: bad arguments: " << error_text(r.error())
              << std::endl;
    return 2;
  }
  if (cmd != "status" && cmd != "actors" && cmd != "devices" && cmd != "watch"
      && cmd != "config" && cmd != "debug" && cmd != "top" && cmd != "nodes"
      && cmd != "streams" && cmd != "delivery") {
    std::cerr << "fleetctl: unknown command '" << cmd
              << "' (status, actors, devices, nodes, streams, top, watch, "
                 "config, debug, delivery, org, enroll, device, quota, token, "
                 "query, logs, rollout; see --help)"
              << std::endl;
    return 2;
  }
  if (cmd == "debug"
      && (opts.args().size() != 3 || opts.args()[1] != "kill")) {
    std::cerr << "fleetctl: bad arguments: debug: use debug kill ACTOR"
              << std::endl;
    return 2;
  }
  if (cmd == "top" && opt.json) {
    std::cerr << "fleetctl: bad arguments: top: no JSON (a screen); use "
                 "actors --json --watch"
              << std::endl;
    return 2;
  }
  if (opt.watch && show_of(cmd, opt) == nullptr) {
    std::cerr << "fleetctl: bad arguments: --watch: only with status, actors, "
                 "devices, nodes, streams"
              << std::endl;
    return 2;
  }
  if (!is_actor_column(opt.sort)) {
    std::cerr << "fleetctl: bad arguments: --sort: '" << opt.sort
              << "' is not a column (" << actor_columns << ")" << std::endl;
    return 2;
  }
  if (cmd == "config" && opts.args().size() != 2) {
    std::cerr << "fleetctl: bad arguments: config: name one device, e.g. "
                 "fleetctl --node HOST:7401 config DEVICE --set.batch-size=50"
              << std::endl;
    return 2;
  }
  auto change = change_of(opt);
  if (cmd == "config" && !change) {
    std::cerr << "fleetctl: bad arguments: "
              << render(change.error()).substr(sizeof("bad_config: ") - 1)
              << std::endl;
    return 2;
  }
  return 0;
}

// `config DEVICE --set...`: the node's answer, or its refusal as a usage
// error (exit 2), like ours.
int run_config(caf::scoped_actor& self, const inspector_actor& node,
               const ctl_options& opt, const std::string& device) {
  int rc = 0;
  self->request(node, opt.timeout, config_atom::value, device, *change_of(opt))
    .receive(
      [&](cloud_settings& y) {
        std::cout << (opt.json ? to_json(device, y) + "\n"
                               : to_text(device, y));
      },
      [&](const caf::error& err) {
        auto code = static_cast<ec>(err.code());
        bool refused = err.category() == caf::atom("fleetd")
                       && (code == ec::bad_config
                           || code == ec::unknown_device);
        std::cerr << "fleetctl: config " << (refused ? "refused: " : "failed: ")
                  << render(err) << std::endl;
        rc = refused ? 2 : 1;
      });
  return rc;
}

// Parses and checks the command line; -1 when the command can run, else
// the exit code.
int parse_command_line(int argc, char** argv, option_set& opts,
                       ctl_options& opt) {
  if (auto err = opts.parse(argc, argv)) {
    auto text = render(err);
    std::cerr << "fleetctl: bad arguments: "
              << text.substr(text.find(':') + 2) << std::endl;
    return 2;
  }
  if (opts.version_requested()) {
    std::cout << "fleetctl " << fleetd_version() << "\n";
    return 0;
  }
  if (opts.help_requested() || opts.args().empty()) {
    std::cout << opts.help();
    return opts.help_requested() ? 0 : 2;
  }
  if (auto rc = check_command(opts, opt))
    return rc;
  int files = !opt.tls.cert.empty() + !opt.tls.key.empty() + !opt.tls.ca.empty();
  if (files != 0 && files != 3) {
    std::cerr << "fleetctl: bad arguments: --cert, --key and --ca go together"
              << std::endl;
    return 2;
  }
  opt.tls.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
    opt.timeout);
  return -1;
}

// The commands answered through the node's console (all but query, logs).
int run_console(const option_set& opts, const ctl_options& opt,
                const std::string& host, uint16_t port) {
  logger::init(log_level::error, "");
  node_config cfg;
  caf::actor_system sys{cfg};
  auto node = connect_console(sys, host, port, opt.tls);
  if (!node) {
    std::cerr << "fleetctl: cannot reach node " << opt.node << ": "
              << render(node.error()) << std::endl;
    return 1;
  }
  caf::scoped_actor self{sys};
  auto cmd = opts.args().front();
  int rc = 0;
  auto fail = [&](const caf::error& err) {
    std::cerr << "fleetctl: " << cmd << " failed: " << render(err)
              << std::endl;
    rc = 1;
  };
  if (auto show = show_of(cmd, opt)) {
    if (cmd != "watch" && !opt.watch) {
      auto out = show(self, *node);
      if (!out) {
        fail(out.error());
        return rc;
      }
      std::cout << *out;
      return rc;
    }
    repeat_options ro;
    ro.command = cmd;
    ro.node = opt.node;
    ro.host = host;
    ro.port = port;
    ro.tls = opt.tls;
    ro.interval = opt.interval;
    ro.count = opt.count;
    ro.separate = !opt.json && cmd != "watch";
    return repeat(sys, *node, ro, show);
  }
  if (cmd == "top") {
    top_options to{opt.node, host, port, opt.tls, opt.interval, opt.timeout,
                   opt.sort};
    return run_top(sys, *node, to);
  } else if (cmd == "config") {
    rc = run_config(self, *node, opt, opts.args()[1]);
  } else if (is_tenancy_command(cmd)) {
    rc = run_tenancy(self, *node, *tenancy_command_of(opts.args(), opt.tenancy),
                     opt.json, opt.timeout);
  } else if (is_rollout_command(cmd)) {
    // A start waits for its canary's settings to be stored.
    rc = run_rollout(self, *node,
                     *rollout_command_of(opts.args(), opt.rollout,
                                         opt.tenancy.org, change_of(opt)),
                     opt.json,
                     std::max<caf::timespan>(opt.timeout,
                                             std::chrono::seconds(60)));
  } else if (cmd == "debug") {
    self->request(*node, opt.timeout, debug_atom::value,
                  opts.args()[1] + " " + opts.args()[2])
      .receive(
        [&](debug_report& r) {
          std::cout << (opt.json ? r.json + "\n" : r.text);
        },
        fail);
  }
  return rc;
}

int run(int argc, char** argv) {
  // A closed console connection must surface as an error, not kill us.
  signal(SIGPIPE, SIG_IGN);
  ctl_options opt;
  option_set opts("fleetctl",
                  std::string(summary) + delivery_usage + tenancy_usage
                    + query_usage + rollout_usage);
  declare(opts, opt);
  if (auto rc = parse_command_line(argc, argv, opts, opt); rc >= 0)
    return rc;
  std::string host;
  int port = 0;
  if (!parse_node(opt.node, host, port))
    return 2;
  auto cmd = opts.args().front();
  if (is_query_command(cmd)) {
    opt.query.ca = opt.tls.ca;
    return run_query(cmd, host, static_cast<uint16_t>(port), opt.query,
                     opt.json);
  }
  return run_console(opts, opt, host, static_cast<uint16_t>(port));
}

} // namespace
} // namespace fleetd

int main(int argc, char** argv) {
  return fleetd::run(argc, argv);
}
