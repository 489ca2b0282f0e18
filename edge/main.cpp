// fleetd: the device node (collector -> storage -> sync -> cloud link).
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sys/stat.h>
#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/inspector.hpp"
#include "edge/backoff.hpp"
#include "edge/capability.hpp"
#include "edge/cloud_link.hpp"
#include "edge/memory_store.hpp"
#include "edge/load_generator.hpp"
#include "edge/storage.hpp"
#include "edge/sync.hpp"
#include "edge/system_collector.hpp"
#include "messages/error.hpp"
#include "messages/wire.hpp"
#include "runtime/logger.hpp"
#include "runtime/node.hpp"

namespace fleetd {
namespace {

struct edge_options {
  common_options common;
  std::string device_id;
  std::string cloud_host;
  int64_t cloud_port = 0;
  option_set::duration cloud_timeout{};
  option_set::duration collector_interval{};
  int64_t collector_rounds = 0;
  option_set::duration sync_interval{};
  int64_t sync_batch_size = 0;
  int64_t sync_zstd_level = 0;
  option_set::duration backoff_base{};
  option_set::duration backoff_cap{};
  int64_t tier_pin = 0;
  option_set::duration recheck_interval{};
  int64_t storage_bytes = 0;
  option_set::duration retention{};
  int64_t reserve_bytes = 0;
  std::string backend;
  bool json = false;
  int64_t load_series = 0;
  option_set::duration load_interval{};
  int64_t load_rounds = 0;
  int64_t load_log_lines = 0;
  int64_t load_event_every = 0;
  bool load_special_values = false;
  int64_t breaker_threshold = 0;
  int64_t max_rejections = 0;
  std::string host_proc;
  std::string host_sys;
};

std::string read_small_file(const std::string& path) {
  std::ifstream in(path);
  std::string out;
  std::getline(in, out);
  return out;
}

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0')
    return "device";
  return buf;
}

void declare(option_set& opts, edge_options& x) {
  using namespace std::chrono_literals;
  declare_common_options(opts, x.common, "/var/lib/fleetd", 7400);
  opts.add("device.id", x.device_id, host_name(),
           "Identity of this device towards the cloud (default: host name)");
  opts.add("cloud.host", x.cloud_host, "127.0.0.1",
           "Host name or address of the cloud ingest endpoint");
  opts.add("cloud.port", x.cloud_port, 7480, "port",
           "TCP port of the cloud ingest endpoint", 1, 65535);
  opts.add("cloud.timeout", x.cloud_timeout, 10s,
           "Deadline for connecting and for each sync request", 100ms);
  opts.add("collector.interval", x.collector_interval, 10s,
           "How often the system collector reads CPU, memory, disk, network",
           10ms);
  opts.add("collector.rounds", x.collector_rounds, 0, "rounds",
           "Stop collecting after this many rounds (0: never); sync goes on",
           0);
  opts.add("sync.interval", x.sync_interval, 0s,
           "How often the sync actor looks for new data when idle (0: the "
           "tier's: 5min, 1min, 10s)");
  opts.add("sync.batch-size", x.sync_batch_size, 0, "points",
           "Most points in one batch (0: the tier's: 1000, 100, 10)", 0,
           1000000);
  opts.add("sync.zstd-level", x.sync_zstd_level, -1, "level",
           "zstd level for batches (0: uncompressed, -1: the tier's)", -1, 19);
  opts.add("tier.pin", x.tier_pin, 0, "tier",
           "Use this tier (1, 2 or 3) instead of detecting it (0: detect)", 0,
           3);
  opts.add("host.proc", x.host_proc, "/proc",
           "Where procfs is mounted: a containerised agent reads the host's "
           "through a bind mount (e.g. /host/proc)");
  opts.add("host.sys", x.host_sys, "/sys",
           "Where sysfs is mounted; the cgroup limits are read under "
           "<host.sys>/fs/cgroup");
  opts.add("tier.recheck-interval", x.recheck_interval, 1min,
           "How often RAM and disk are read again to re-derive the tier", 1s);
  opts.add_size("storage.max-bytes", x.storage_bytes, 0,
                "Cap of the SQLite store (0: the tier's: 100MB, 5MB)");
  opts.add("storage.retention", x.retention, 0s,
           "Drop metrics older than this (0: the tier's: 7 days, 1 day)");
  opts.add_size("storage.reserve-bytes", x.reserve_bytes, 512 * 1024,
                "Disk space held back and given up when the disk fills, so "
                "old data can still be dropped to make room");
  opts.add("storage.backend", x.backend, "auto",
           "Where readings live: \"sqlite\", \"memory\" (nothing survives a "
           "restart) or \"auto\" (the tier's: SQLite on tiers 1 and 2)");
  opts.add("json", x.json, false,
           "debug and maintenance commands: print JSON");
  opts.add("sync.backoff-base", x.backoff_base, 1s,
           "First retry delay after a failed sync (full jitter)", 1ms);
  opts.add("sync.backoff-cap", x.backoff_cap, 5min,
           "Longest retry delay after repeated failures", 1ms);
  opts.add("load.series", x.load_series, 0, "series",
           "Synthetic load: series written per round (0: off); for load and "
           "crash tests",
           0, 1000000);
  opts.add("load.interval", x.load_interval, 1s,
           "Synthetic load: time between rounds", 0ms);
  opts.add("load.rounds", x.load_rounds, 0, "rounds",
           "Synthetic load: stop after this many rounds (0: never)", 0);
  opts.add("load.log-lines", x.load_log_lines, 0, "lines",
           "Synthetic load: log lines written per round (0: none)", 0,
           1000000);
  opts.add("load.event-every", x.load_event_every, 0, "rounds",
           "Synthetic load: one event every this many rounds (0: none)", 0);
  opts.add("load.special-values", x.load_special_values, false,
           "Synthetic load: each round also writes NaN (payload = the round), "
           "+Inf, -Inf and -0.0 as series fleetd_load_special{kind=...}, to "
           "check that they are stored bit for bit");
  opts.add("sync.breaker-threshold", x.breaker_threshold, 3, "failures",
           "Consecutive failed exchanges that take the link offline (circuit "
           "breaker open; then one probe at a time)",
           1, 1000);
  opts.add("sync.max-rejections", x.max_rejections, 3, "times",
           "Times the cloud may refuse one batch as invalid before it is "
           "dropped (counted, with an event) so its stream moves on",
           1, 1000);
}

tier_overrides overrides_of(const edge_options& opt) {
  tier_overrides ov;
  ov.tier = opt.tier_pin;
  ov.storage_bytes = opt.storage_bytes;
  ov.retention_ms = opt.retention.count();
  ov.sync_interval_ms = opt.sync_interval.count();
  ov.batch_size = opt.sync_batch_size;
  ov.zstd_level = opt.sync_zstd_level;
  ov.backend = opt.backend;
  return ov;
}

/// What this machine (as host.proc and host.sys show it) gives.
capability_report detect_for(const edge_options& opt) {
  return detect(opt.host_proc, opt.common.data_dir, overrides_of(opt),
                opt.host_sys);
}

// SQLite when the tier has it, else a memory store bounded as the tier says.
caf::expected<std::shared_ptr<store_backend>>
open_backend(const edge_options& opt, const tier_settings& tier,
             const clock_ptr& clk) {
  if (!tier.sqlite) {
    memory_limits lim;
    // Tier 3 keeps readings per series; every other tier a ring of points.
    lim.max_points = tier.tier == 3 ? 0
                     : tier.memory_points > 0 ? tier.memory_points
                                              : 1000;
    lim.per_series = tier.tier == 3 ? tier.memory_points : 0;
    lim.max_batches = tier.tier == 3 ? 10 : 100;
    return std::make_shared<memory_store>(lim, clk);
  }
  storage_config scfg;
  scfg.path = opt.common.data_dir + "/fleetd.db";
  scfg.clock = clk;
  scfg.limits.max_bytes = tier.storage_bytes;
  scfg.limits.retention_ms = tier.retention_ms;
  scfg.limits.reserve_bytes = opt.reserve_bytes;
  auto store = edge_store::open(scfg);
  if (!store)
    return store.error();
  return std::make_shared<edge_store>(std::move(*store));
}

// `fleetd debug ...` / `fleetd maintenance clean`: through the running node's
// console when one holds the data directory, else on the files directly.
int run_command(const edge_options& opt, const std::vector<std::string>& args) {
  std::string what;
  if (args.size() == 2 && args[0] == "debug"
      && (args[1] == "storage" || args[1] == "queue"
          || args[1] == "capabilities"))
    what = args[1];
  else if (args.size() == 2 && args[0] == "maintenance" && args[1] == "clean")
    what = "clean";
  if (what.empty()) {
    std::cerr << "fleetd: unknown command; use: fleetd debug "
                 "storage|queue|capabilities [--json], fleetd maintenance "
                 "clean [--json]"
              << std::endl;
    return 2;
  }
  auto& dir = opt.common.data_dir;
  auto print = [&](const debug_report& r) {
    std::cout << (opt.json ? r.json + "\n" : r.text);
    return 0;
  };
  auto fail = [&](const caf::error& err) {
    std::cerr << "fleetd: " << args[0] << " " << args[1] << ": " << render(err)
              << std::endl;
    return 1;
  };
  struct stat st_dir;
  if (stat(dir.c_str(), &st_dir) != 0) {
    // No node has run here yet: only what this machine would get can be told.
    if (what == "capabilities") {
      auto caps = detect_for(opt);
      return print(debug_report{to_text(caps), to_json(caps)});
    }
    return fail(make_error(ec::io_error, "no data directory " + dir));
  }
  auto lock = lock_data_dir(dir, "fleetd");
  if (!lock) {
    // A node runs on this directory: ask it.
    auto port = std::atoi(read_small_file(dir + "/console.port").c_str());
    if (port <= 0)
      return fail(make_error(ec::io_error, "a node holds " + dir
                                             + " but its console.port is "
                                               "unreadable"));
    node_config cfg{opt.common};
    caf::actor_system sys{cfg};
    auto node = sys.middleman().remote_actor<inspector_actor>(
      "127.0.0.1", static_cast<uint16_t>(port));
    if (!node)
      return fail(node.error());
    caf::scoped_actor self{sys};
    int rc = 1;
    self->request(*node, std::chrono::seconds(120), debug_atom::value, what)
      .receive([&](debug_report& r) { rc = print(r); },
               [&](caf::error& err) { rc = fail(err); });
    return rc;
  }
  auto caps = detect_for(opt);
  bool has_db = stat((dir + "/fleetd.db").c_str(), &st_dir) == 0;
  if (what == "capabilities" && !(caps.settings.sqlite && has_db))
    return print(debug_report{to_text(caps), to_json(caps)});
  if (!caps.settings.sqlite)
    return fail(make_error(ec::io_error, "this node keeps data in memory: "
                                         "only a running node can tell"));
  if (!has_db)
    return fail(make_error(ec::io_error, "no database in " + dir));
  auto backend = open_backend(opt, caps.settings, make_system_clock());
  if (!backend)
    return fail(backend.error());
  if (what == "capabilities") {
    // What a start would run: the persisted cloud settings over the tier's.
    auto cloud = (*backend)->load_settings();
    if (!cloud)
      return fail(cloud.error());
    apply_cloud(caps, *cloud);
    return print(debug_report{to_text(caps), to_json(caps)});
  }
  auto r = (*backend)->debug(what);
  if (!r)
    return fail(r.error());
  return print(*r);
}

int run(int argc, char** argv) {
  block_termination_signals();
  edge_options opt;
  option_set opts("fleetd", "The fleetd device node: collects system metrics, "
                            "keeps them in SQLite and syncs them to the cloud.");
  declare(opts, opt);
  opts.set_commands(
    "  (none)                     run the node\n"
    "  debug storage [--json]     what the store holds and its limits\n"
    "  debug queue [--json]       queued batches per stream, retries, "
    "sequence ranges\n"
    "  debug capabilities [--json] the tier and settings the node runs with\n"
    "  maintenance clean [--json] drop what retention and caps allow, "
    "vacuum\n"
    "  Commands go through the running node's console, else read the data "
    "directory.\n");
  auto rc = parse_or_exit("fleetd", opts, argc, argv, opt.common, [&] {
    if (opt.device_id.empty())
      return make_error(ec::bad_config, "device.id: must not be empty");
    if (opt.backend != "auto" && opt.backend != "sqlite"
        && opt.backend != "memory")
      return make_error(ec::bad_config, "storage.backend: '" + opt.backend
                                          + "' is not one of auto, sqlite, "
                                            "memory");
    for (auto [key, path] : {std::pair{"host.proc", &opt.host_proc},
                             std::pair{"host.sys", &opt.host_sys}}) {
      struct stat st;
      if (stat(path->c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        return make_error(ec::bad_config, std::string{key} + ": '" + *path
                                            + "' is not a directory");
    }
    if (opt.backoff_cap < opt.backoff_base)
      return make_error(ec::bad_config,
                        "sync.backoff-cap: must be at least sync.backoff-base");
    return caf::error{};
  });
  if (rc >= 0)
    return rc;
  auto die = [](const caf::error& err) {
    std::cerr << "fleetd: cannot start: " << render(err) << std::endl;
    return 1;
  };
  auto& dir = opt.common.data_dir;
  if (!opts.args().empty())
    return run_command(opt, opts.args());
  if (auto err = ensure_directory(dir))
    return die(err);
  auto lock = lock_data_dir(dir, "fleetd");
  if (!lock)
    return die(lock.error());
  auto clk = make_scaled_clock(opt.common.clock_speed);
  auto caps = detect_for(opt);
  auto backend = open_backend(opt, caps.settings, clk);
  if (!backend)
    return die(backend.error());
  // What the operator last set from the cloud applies from the start.
  auto cloud = (*backend)->load_settings();
  if (!cloud)
    return die(cloud.error());
  apply_cloud(caps, *cloud);
  if (cloud->version > 0)
    (*backend)->apply(caps.settings);
  log_info("fleetd", summary(caps));
  auto& tier = caps.settings;
  node_config cfg{opt.common};
  caf::actor_system sys{cfg};
  stop_list stops;
  auto st = sys.spawn<caf::detached>(storage, std::move(*backend));
  stops.add("storage", caf::actor_cast<caf::actor>(st));
  cloud_link_config lcfg;
  lcfg.host = opt.cloud_host;
  lcfg.port = static_cast<uint16_t>(opt.cloud_port);
  lcfg.timeout = opt.cloud_timeout;
  auto link = sys.spawn<caf::detached>(cloud_link, lcfg);
  stops.add("cloud_link", caf::actor_cast<caf::actor>(link));
  capability_config kcfg;
  kcfg.proc_root = opt.host_proc;
  kcfg.sys_root = opt.host_sys;
  kcfg.data_dir = dir;
  kcfg.overrides = overrides_of(opt);
  kcfg.recheck_interval = opt.recheck_interval;
  kcfg.initial = caps;
  kcfg.clock = clk;
  kcfg.cloud = caps.cloud;
  kcfg.storage = st;
  kcfg.listeners = {caf::actor_cast<caf::actor>(st)};
  kcfg.on_change = [st](const capability_report& before,
                        const capability_report& now) {
    caf::anon_send(st, event_atom::value, std::string("capability_change"),
                   describe_change(before, now));
  };
  auto cap = sys.spawn(capability, kcfg);
  stops.add("capability", caf::actor_cast<caf::actor>(cap));
  backoff_config bcfg;
  bcfg.base = opt.backoff_base;
  bcfg.cap = opt.backoff_cap;
  bcfg.breaker_threshold = opt.breaker_threshold;
  bcfg.clock = clk;
  bcfg.storage = st;
  auto bck = sys.spawn(backoff, bcfg);
  stops.add("backoff", caf::actor_cast<caf::actor>(bck));
  std::vector<std::pair<std::string, sync_actor>> syncs;
  // Events first: the first sync actor spawned asks first after a restart.
  for (auto stream : {events_stream, metrics_stream, logs_stream}) {
    sync_config ycfg;
    ycfg.device_id = opt.device_id;
    ycfg.stream = stream;
    ycfg.interval = std::chrono::milliseconds(tier.sync_interval_ms);
    ycfg.batch_size = tier.batch_size;
    ycfg.zstd_level = static_cast<int>(tier.zstd_level);
    ycfg.request_timeout = opt.cloud_timeout * 2 + std::chrono::seconds(1);
    ycfg.max_rejections = opt.max_rejections;
    ycfg.forward_immediately = tier.tier == 3;
    ycfg.config_version = caps.cloud.version;
    ycfg.clock = clk;
    ycfg.storage = st;
    ycfg.link = link;
    ycfg.backoff = bck;
    // Settings from the cloud go to the capability actor, which applies them.
    ycfg.settings = caf::actor_cast<settings_listener>(cap);
    auto hdl = sys.spawn(sync, ycfg);
    caf::anon_send(cap, capabilities_atom::value,
                   caf::actor_cast<caf::actor>(hdl));
    syncs.emplace_back(std::string("sync_") + stream, hdl);
    stops.add(syncs.back().first, caf::actor_cast<caf::actor>(hdl));
  }
  system_collector_config ccfg;
  ccfg.proc_root = opt.host_proc;
  ccfg.disk_path = dir;
  ccfg.interval = opt.collector_interval;
  ccfg.max_rounds = opt.collector_rounds;
  ccfg.clock = clk;
  ccfg.storage = st;
  for (auto& y : syncs)
    ccfg.on_stored.push_back(caf::actor_cast<caf::actor>(y.second));
  auto col = sys.spawn(system_collector, ccfg);
  stops.add("system_collector", caf::actor_cast<caf::actor>(col));
  std::vector<std::pair<std::string, caf::actor>> extra;
  if (opt.load_series > 0) {
    system_collector_config gcfg;
    gcfg.name = "load_generator";
    gcfg.source = load_source(opt.load_series, opt.load_special_values);
    if (opt.load_log_lines > 0)
      gcfg.logs = load_log_source(opt.load_log_lines);
    if (opt.load_event_every > 0)
      gcfg.events = load_event_source(opt.load_event_every);
    gcfg.interval = opt.load_interval;
    gcfg.max_rounds = opt.load_rounds;
    gcfg.clock = clk;
    gcfg.storage = st;
    gcfg.on_stored = ccfg.on_stored;
    auto gen = sys.spawn(system_collector, gcfg);
    stops.add("load_generator", caf::actor_cast<caf::actor>(gen));
    extra.emplace_back("load_generator", caf::actor_cast<caf::actor>(gen));
  }
  inspector_config icfg;
  icfg.role = "edge";
  icfg.node_id = opt.device_id;
  icfg.clock = clk;
  icfg.actors = {{"system_collector", caf::actor_cast<caf::actor>(col)},
                 {"storage", caf::actor_cast<caf::actor>(st)},
                 {"backoff", caf::actor_cast<caf::actor>(bck)},
                 {"cloud_link", caf::actor_cast<caf::actor>(link)},
                 {"capability", caf::actor_cast<caf::actor>(cap)}};
  for (auto what : {"storage", "queue", "clean"})
    icfg.debug[what] = caf::actor_cast<caf::actor>(st);
  icfg.debug["capabilities"] = caf::actor_cast<caf::actor>(cap);
  icfg.actors.insert(icfg.actors.end(), extra.begin(), extra.end());
  for (auto& [name, hdl] : syncs)
    icfg.actors.emplace_back(name, caf::actor_cast<caf::actor>(hdl));
  auto insp = sys.spawn(inspector, icfg);
  stops.add("inspector", caf::actor_cast<caf::actor>(insp));
  auto port = publish_console(sys, insp,
                              opt.common);
  if (!port) {
    stops.stop_all(sys, opt.common.stop_timeout);
    return die(port.error());
  }
  log_info("fleetd", "device ", opt.device_id, " started; data in ", dir,
           ", cloud ", opt.cloud_host, ":", opt.cloud_port, ", console ",
           opt.common.console_host, ":", *port);
  auto sig = wait_for_termination([&] {
    reload_settings("fleetd", opts, argc, argv, [](option_set& o) {
      auto x = std::make_shared<edge_options>();
      declare(o, *x);
      return std::shared_ptr<common_options>(x, &x->common);
    });
  });
  log_info("fleetd", "signal ", sig, ": stopping");
  unpublish_console(sys, insp, *port);
  auto late = stops.stop_all(sys, opt.common.stop_timeout);
  if (late > 0) {
    // Storage has closed (it stops last); only a blocked network call waits.
    log_warning("fleetd", late, " actor(s) did not stop in time; exiting");
    std::_Exit(0);
  }
  log_info("fleetd", "stopped");
  return 0;
}

} // namespace
} // namespace fleetd

int main(int argc, char** argv) {
  return fleetd::run(argc, argv);
}
