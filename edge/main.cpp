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
#include "edge/debug_ping.hpp"
#include "edge/local_config.hpp"
#include "edge/memory_store.hpp"
#include "edge/load_generator.hpp"
#include "edge/log_tail.hpp"
#include "edge/local_ingest.hpp"
#include "edge/scrape.hpp"
#include "edge/sqlite_store.hpp"
#include "edge/storage.hpp"
#include "edge/sync.hpp"
#include "edge/sync_now.hpp"
#include "edge/system_collector.hpp"
#include "messages/error.hpp"
#include "messages/wire.hpp"
#include "runtime/config_check.hpp"
#include "runtime/counted.hpp"
#include "runtime/logger.hpp"
#include "runtime/node.hpp"
#include "runtime/scheduler.hpp"
#include "runtime/supervisor.hpp"

namespace fleetd {
namespace {

// Each actor declares the options that fill its config (declare + validate
// beside the struct); main only wires the configs together.
struct edge_options {
  common_options common;
  sync_config sync;
  cloud_link_config link;
  capability_config capability;
  backoff_config backoff;
  system_collector_config collector;
  load_config load;
  scrape_config scrape;
  log_tail_config logs;
  local_ingest_config ingest;
  storage_limits storage;
  restart_limits supervisor;
  scheduler_options scheduler;
  ping_config ping;
  sync_now_config sync_now;
  bool json = false;
  /// Not options: settings.local as read at start, and where the options
  /// `config get` shows came from.
  local_settings local;
  setting_sources sources;
};

// Where each option under a `config set` setting came from (file or flag).
setting_sources sources_of(const option_set& opts, const edge_options& x) {
  setting_sources out;
  out.zstd_level = opts.source_of("sync.zstd-level");
  out.sync_interval = opts.source_of("sync.interval");
  out.retention = opts.source_of("storage.retention");
  out.metric_interval = opts.source_of("collector.interval");
  out.store_logs = opts.source_of("storage.store-logs");
  out.metric_interval_ms = x.collector.interval.count();
  return out;
}

std::string read_small_file(const std::string& path) {
  std::ifstream in(path);
  std::string out;
  std::getline(in, out);
  return out;
}

void declare(option_set& opts, edge_options& x) {
  declare_common_options(opts, x.common, "/var/lib/fleetd", 7400);
  declare(opts, x.sync);
  declare(opts, x.link);
  declare(opts, x.collector);
  declare(opts, x.capability);
  declare(opts, x.storage);
  opts.add("json", x.json, false,
           "debug and maintenance commands: print JSON");
  declare(opts, x.backoff);
  declare(opts, x.load);
  declare(opts, x.scrape);
  declare(opts, x.logs);
  declare(opts, x.ingest);
  declare(opts, x.supervisor);
  declare(opts, x.scheduler, device_scheduler());
  declare(opts, x.ping);
  declare(opts, x.sync_now);
}

// The options' checks, each actor's own; the tier-derived sync settings are
// checked when the sync actors are spawned.
caf::error validate(const edge_options& x) {
  for (auto err : {validate(x.link), validate(x.collector),
                   validate(x.scrape), validate(x.logs),
                   validate(x.scrape), validate(x.ingest),
                   validate(x.capability),
                   validate(x.backoff),
                   validate(x.supervisor), validate(x.scheduler),
                   validate(x.ping), validate(x.sync_now)})
    if (err)
      return err;
  if (x.sync.device_id.empty())
    return bad_config("device.id: must not be empty");
  return caf::none;
}

// The cloud endpoints for the start line.
std::string cloud_text(const cloud_link_config& x) {
  return x.endpoints.empty() ? x.host + ":" + std::to_string(x.port)
                             : x.endpoints;
}

/// What this machine (as host.proc and host.sys show it) gives.
capability_report detect_for(const edge_options& opt) {
  auto& c = opt.capability;
  return detect(c.proc_root, opt.common.data_dir, c.overrides, c.sys_root);
}

// The settings a start would run with: this machine's tier, the cloud's
// settings the store persisted, settings.local over them. Only reads: the
// store is opened read-only and nothing is applied to it.
caf::expected<capability_report> start_settings(const edge_options& opt,
                                                const local_settings& local) {
  auto caps = detect_for(opt);
  auto db = opt.common.data_dir + "/fleetd.db";
  struct stat st;
  // No store yet (none is made for a look): the cloud has said nothing.
  if (caps.settings.sqlite && stat(db.c_str(), &st) == 0) {
    auto cloud = read_cloud_settings(db);
    if (!cloud)
      return cloud.error();
    apply_cloud(caps, *cloud);
  }
  apply_local(caps, local);
  return caps;
}

// storage.group-window, at most a tenth of the shortest collector interval
// so a fast collector is never kept waiting for its answer a round long.
int64_t group_window(const edge_options& opt) {
  auto shortest = opt.collector.interval.count();
  if (opt.load.series > 0)
    shortest = std::min<int64_t>(shortest, opt.load.interval.count());
  if (!opt.scrape.targets.empty())
    shortest = std::min<int64_t>(shortest, opt.scrape.interval.count());
  if (!opt.logs.paths.empty())
    shortest = std::min<int64_t>(shortest, opt.logs.interval.count());
  return std::min<int64_t>(opt.storage.group_window_ms, shortest / 10);
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
  sqlite_store_config scfg;
  scfg.path = opt.common.data_dir + "/fleetd.db";
  scfg.clock = clk;
  scfg.limits.max_bytes = tier.storage_bytes;
  scfg.limits.retention_ms = tier.retention_ms;
  scfg.limits.reserve_bytes = opt.storage.reserve_bytes;
  scfg.limits.commit_interval_ms = opt.storage.commit_interval_ms;
  scfg.limits.group_window_ms = group_window(opt);
  scfg.limits.rounds_file = tier.rounds_file;
  auto store = sqlite_store::open(scfg);
  if (!store)
    return store.error();
  return std::make_shared<sqlite_store>(std::move(*store));
}

// The store of a start: opened for the tier, with the operator's settings
// it persisted applied over `caps` (and to the store).
caf::expected<std::shared_ptr<store_backend>>
open_store(const edge_options& opt, capability_report& caps,
           const local_settings& local, const clock_ptr& clk) {
  auto backend = open_backend(opt, caps.settings, clk);
  if (!backend)
    return backend.error();
  auto cloud = (*backend)->load_settings();
  if (!cloud)
    return cloud.error();
  apply_cloud(caps, *cloud);
  // `fleetd config set` wins over the cloud (docs/collectors.md).
  apply_local(caps, local);
  if (cloud->version > 0 || !local.empty())
    (*backend)->apply(caps.settings);
  return backend;
}

// The storage actor's factory: the store opened at start first; after a
// death SQLite is opened again (its state is on disk), a memory store kept.
// Every incarnation after the first registers with the capability actor
// (`settings`, set once it runs), which tells it the current settings at
// once and every change after, as the sync actors' do.
child_factory storage_factory(std::shared_ptr<store_backend> opened,
                              const edge_options& opt,
                              const capability_report& caps,
                              const clock_ptr& clk, stats_registry* reg,
                              std::shared_ptr<caf::actor> settings) {
  auto memory = caps.settings.sqlite ? nullptr : opened;
  return [opened, memory, opt, caps, clk, reg,
          settings](caf::actor_system& sys) mutable
         -> caf::expected<caf::actor> {
    auto db = opened ? std::move(opened) : memory;
    if (!db) {
      // What `fleetd config set` says now, not at start.
      auto local = load_local_settings(opt.common.data_dir);
      auto now = caps;
      auto again = open_store(opt, now, local ? *local : local_settings{},
                              clk);
      if (!again)
        return again.error();
      db = std::move(*again);
    }
    auto hdl = caf::actor_cast<caf::actor>(
      spawn_counted<caf::detached>(sys, reg, "storage", storage, db));
    if (*settings)
      caf::anon_send(*settings, capabilities_atom::value, hdl);
    return hdl;
  };
}

// Asks the node that holds the data directory, through its console.
caf::expected<debug_report> ask_node(const edge_options& opt,
                                     const std::string& what) {
  auto& dir = opt.common.data_dir;
  auto port = std::atoi(read_small_file(dir + "/console.port").c_str());
  if (port <= 0)
    return make_error(ec::io_error, "a node holds " + dir
                                      + " but its console.port is "
                                        "unreadable");
  node_config cfg{opt.common};
  // A console client: one thread does (tier 3's).
  apply(cfg, opt.scheduler,
        worker_threads(opt.scheduler, device_scheduler(), 3, 1));
  caf::actor_system sys{cfg};
  auto node = connect_own_console(sys, opt.common, static_cast<uint16_t>(port));
  if (!node)
    return node.error();
  caf::scoped_actor self{sys};
  caf::expected<debug_report> out{caf::error{}};
  self->request(*node, std::chrono::seconds(120), debug_atom::value, what)
    .receive([&](debug_report& r) { out = std::move(r); },
             [&](caf::error& err) { out = std::move(err); });
  return out;
}

// True when a node runs on the data directory (it holds the lock); else
// the lock is ours for the life of this process.
bool node_running(const std::string& dir) {
  struct stat st;
  return stat(dir.c_str(), &st) == 0 && !lock_data_dir(dir, "fleetd");
}

// `config get` without a node: what a start would run with.
caf::expected<debug_report> config_offline(const edge_options& opt,
                                           const local_settings& local,
                                           const std::string& key) {
  auto caps = start_settings(opt, local);
  if (!caps)
    return caps.error();
  return config_table(*caps, opt.capability.overrides, opt.sources, local,
                      key);
}

// `fleetd config get [KEY]` / `set KEY=VALUE` / `unset KEY`: the file is
// written here; a running node reads it again and applies it at once.
int run_config(const edge_options& opt, const std::vector<std::string>& args) {
  auto& dir = opt.common.data_dir;
  auto print = [&](const debug_report& r) {
    std::cout << (opt.json ? r.json + "\n" : r.text);
    return 0;
  };
  // A bad key or value is the caller's mistake: 2, as for bad options.
  auto fail = [&](const caf::error& err) {
    std::cerr << "fleetd: config " << args[1] << ": " << render(err)
              << std::endl;
    return err.category() == caf::atom("fleetd")
               && static_cast<ec>(err.code()) == ec::bad_config
             ? 2
             : 1;
  };
  auto& verb = args[1];
  if ((verb == "get" && args.size() > 3)
      || ((verb == "set" || verb == "unset") && args.size() != 3)
      || (verb != "get" && verb != "set" && verb != "unset")) {
    std::cerr << "fleetd: use: fleetd config get [KEY] [--json], fleetd "
                 "config set KEY=VALUE, fleetd config unset KEY"
              << std::endl;
    return 2;
  }
  auto key = args.size() == 3 ? args[2] : std::string{};
  auto local = load_local_settings(dir);
  if (!local)
    return fail(local.error());
  if (verb != "get") {
    auto err = verb == "set" ? set_local(*local, key) : unset_local(*local, key);
    if (err)
      return fail(err);
    if (auto err2 = ensure_directory(dir))
      return fail(err2);
    if (auto err2 = save_local_settings(dir, *local))
      return fail(err2);
  }
  if (!node_running(dir)) {
    auto r = config_offline(opt, *local, verb == "get" ? key : "");
    return r ? print(*r) : fail(r.error());
  }
  auto r = ask_node(opt, verb == "get" ? "config get " + key : "config reload");
  return r ? print(*r) : fail(r.error());
}

// `fleetd debug ping`, `fleetd config ...` and `fleetd sync now`; -1 when
// `args` is none of them.
int run_ops_command(const edge_options& opt,
                    const std::vector<std::string>& args) {
  if (args.size() >= 2 && args[0] == "config")
    return run_config(opt, args);
  if (args == std::vector<std::string>{"debug", "ping"}) {
    auto lcfg = opt.link;
    if (lcfg.key_file.empty())
      lcfg.key_file = opt.common.data_dir + "/device.key";
    auto out = debug_ping(lcfg, opt.ping);
    std::cout << (opt.json ? out.report.json + "\n" : out.report.text);
    return out.healthy ? 0 : 1;
  }
  if (args == std::vector<std::string>{"sync", "now"}) {
    if (!node_running(opt.common.data_dir)) {
      std::cerr << "fleetd: sync now: no node runs on "
                << opt.common.data_dir << std::endl;
      return 1;
    }
    auto r = ask_node(opt, "sync now "
                             + std::to_string(opt.sync_now.timeout.count()));
    if (!r) {
      std::cerr << "fleetd: " << render(r.error()) << std::endl;
      return 1;
    }
    std::cout << (opt.json ? r->json + "\n" : r->text);
    // Past sync.now-timeout the report (either form) says "acked": false.
    return r->json.rfind("{\"acked\":true", 0) == 0 ? 0 : 1;
  }
  return -1;
}

// `fleetd debug ...` / `fleetd maintenance clean`: through the running node's
// console when one holds the data directory, else on the files directly.
int run_command(const edge_options& opt, const std::vector<std::string>& args) {
  if (auto rc = run_ops_command(opt, args); rc >= 0)
    return rc;
  std::string what;
  if (args.size() == 2 && args[0] == "debug"
      && (args[1] == "storage" || args[1] == "queue"
          || args[1] == "capabilities"))
    what = args[1];
  else if (args.size() == 2 && args[0] == "maintenance" && args[1] == "clean")
    what = "clean";
  if (what.empty()) {
    std::cerr << "fleetd: unknown command; use: fleetd debug "
                 "storage|queue|capabilities|ping [--json], fleetd "
                 "maintenance clean [--json], fleetd config get|set|unset, "
                 "fleetd sync now"
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
  if (node_running(dir)) {
    // A node runs on this directory: ask it.
    auto r = ask_node(opt, what);
    return r ? print(*r) : fail(r.error());
  }
  // What a start would run: the cloud's and `config set`'s settings too,
  // so clean cuts at the retention the node keeps.
  auto local = load_local_settings(dir);
  if (!local)
    return fail(local.error());
  auto caps = start_settings(opt, *local);
  if (!caps)
    return fail(caps.error());
  bool has_db = stat((dir + "/fleetd.db").c_str(), &st_dir) == 0;
  if (what == "capabilities")
    return print(debug_report{to_text(*caps), to_json(*caps)});
  if (!caps->settings.sqlite)
    return fail(make_error(ec::io_error, "this node keeps data in memory: "
                                         "only a running node can tell"));
  if (!has_db)
    return fail(make_error(ec::io_error, "no database in " + dir));
  auto backend = open_backend(opt, caps->settings, make_system_clock());
  if (!backend)
    return fail(backend.error());
  auto r = (*backend)->debug(what);
  if (!r)
    return fail(r.error());
  return print(*r);
}

// The sync actors, events first (the first spawned asks first after a
// restart), each supervised; every incarnation registers with the capability
// actor, which tells it the current report at once.
std::vector<std::pair<std::string, caf::actor>>
add_syncs(caf::actor_system& sys, supervisor_config& scfg,
          const edge_options& opt, const capability_report& caps,
          const sync_config& base, stats_registry* reg) {
  std::vector<std::pair<std::string, caf::actor>> out;
  auto& tier = caps.settings;
  for (auto stream : {events_stream, metrics_stream, logs_stream}) {
    auto ycfg = base;
    ycfg.stream = stream;
    ycfg.interval = std::chrono::milliseconds(tier.sync_interval_ms);
    ycfg.batch_size = tier.batch_size;
    ycfg.zstd_level = static_cast<int>(tier.zstd_level);
    ycfg.request_timeout = opt.link.timeout * 2 + std::chrono::seconds(1);
    ycfg.forward_immediately = tier.tier == 3;
    ycfg.config_version = caps.cloud.version;
    auto name = std::string("sync_") + stream;
    out.emplace_back(name, scfg.add(sys, name, true, [ycfg, reg,
                                                      name](caf::actor_system& s) {
      auto hdl = caf::actor_cast<caf::actor>(
        spawn_counted(s, reg, name, sync, ycfg));
      caf::anon_send(caf::actor_cast<caf::actor>(ycfg.settings),
                     capabilities_atom::value, hdl);
      return caf::expected<caf::actor>{hdl};
    }));
  }
  return out;
}

// Spawns the device's actors in start order (storage first, as the others
// report to it); storage and the sync actors supervised behind relays.
// Returns the inspector's view of them; an error when a listener of the
// local ingest cannot be bound.
caf::expected<inspector_config> spawn_actors(caf::actor_system& sys, stop_list& stops,
                              const edge_options& opt,
                              const capability_report& caps,
                              std::shared_ptr<store_backend> backend,
                              const clock_ptr& clk, stats_registry* reg,
                              const metrics_endpoint_ptr& metrics) {
  auto keep = [&](const std::string& name, auto hdl) {
    stops.add(name, caf::actor_cast<caf::actor>(hdl));
    return hdl;
  };
  supervisor_config scfg;
  scfg.limits = opt.supervisor;
  scfg.clock = clk;
  scfg.registry = reg;
  // The capability actor, once spawned: storage registers with it.
  auto settings = std::make_shared<caf::actor>();
  auto st = caf::actor_cast<storage_actor>(
    keep("storage", scfg.add(sys, "storage", true,
                             storage_factory(std::move(backend), opt, caps,
                                             clk, reg, settings))));
  auto first_storage = scfg.children.back().first;
  auto lcfg = opt.link;
  lcfg.use_stream = stream_wanted(lcfg.stream, caps.settings.sync_interval_ms,
                                  caps.settings.zstd_level);
  lcfg.device_id = opt.sync.device_id;
  lcfg.clock = clk;
  if (lcfg.key_file.empty())
    lcfg.key_file = opt.common.data_dir + "/device.key";
  auto link = keep("cloud_link", spawn_counted<caf::detached>(
                                   sys, reg, "cloud_link", cloud_link, lcfg));
  auto kcfg = opt.capability;
  kcfg.data_dir = opt.common.data_dir;
  kcfg.initial = caps;
  kcfg.clock = clk;
  kcfg.cloud = caps.cloud;
  kcfg.storage = st;
  kcfg.local = opt.local;
  kcfg.sources = opt.sources;
  kcfg.on_change = [st](const capability_report& before,
                        const capability_report& now) {
    caf::anon_send(st, event_atom::value, std::string("capability_change"),
                   describe_change(before, now));
  };
  auto cap = keep("capability",
                  spawn_counted(sys, reg, "capability", capability, kcfg));
  // Set before the supervisor runs, so before any restart reads it.
  *settings = caf::actor_cast<caf::actor>(cap);
  // The first incarnation registers here (settings that differ from the
  // tier's from the start, store_logs); a restarted one in the factory.
  if (first_storage)
    caf::anon_send(cap, capabilities_atom::value, first_storage);
  auto bcfg = opt.backoff;
  bcfg.clock = clk;
  bcfg.storage = st;
  bcfg.link = link;
  auto bck = keep("backoff", spawn_counted(sys, reg, "backoff", backoff, bcfg));
  auto ycfg = opt.sync;
  ycfg.clock = clk;
  ycfg.storage = st;
  ycfg.link = link;
  ycfg.backoff = bck;
  // Settings from the cloud go to the capability actor, which applies them.
  ycfg.settings = caf::actor_cast<settings_listener>(cap);
  auto syncs = add_syncs(sys, scfg, opt, caps, ycfg, reg);
  for (auto& y : syncs)
    keep(y.first, y.second);
  auto sup = spawn_counted(sys, reg, "supervisor", supervisor, scfg);
  // Stopped before the relays: nothing is restarted during a stop.
  keep("supervisor", sup);
  auto ccfg = opt.collector;
  ccfg.metrics.proc_root = opt.capability.proc_root;
  ccfg.metrics.sys_root = opt.capability.sys_root;
  ccfg.clock = clk;
  ccfg.storage = st;
  for (auto& y : syncs)
    ccfg.on_stored.push_back(y.second);
  // statfs of a hung network mount blocks: a thread of its own, not the
  // scheduler's.
  auto col = keep("system_collector",
                  spawn_counted<caf::detached>(sys, reg, "system_collector",
                                               system_collector, ccfg));
  // metric_interval (`fleetd config set`) reaches it as settings do.
  caf::anon_send(cap, capabilities_atom::value,
                 caf::actor_cast<caf::actor>(col));
  sync_now_config ncfg = opt.sync_now;
  ncfg.storage = st;
  ncfg.clock = clk;
  for (auto& y : syncs)
    ncfg.syncs.emplace_back(y.first, caf::actor_cast<sync_actor>(y.second));
  auto now = keep("sync_now",
                  spawn_counted(sys, reg, "sync_now", sync_now, ncfg));
  inspector_config icfg;
  icfg.role = "edge";
  icfg.node_id = opt.sync.device_id;
  icfg.clock = clk;
  icfg.actors = {{"system_collector", caf::actor_cast<caf::actor>(col)},
                 {"storage", caf::actor_cast<caf::actor>(st)},
                 {"backoff", caf::actor_cast<caf::actor>(bck)},
                 {"cloud_link", caf::actor_cast<caf::actor>(link)},
                 {"capability", caf::actor_cast<caf::actor>(cap)}};
  if (opt.load.series > 0) {
    auto gcfg = load_collector(opt.load);
    gcfg.clock = clk;
    gcfg.storage = st;
    gcfg.on_stored = ccfg.on_stored;
    auto gen = keep("load_generator", spawn_counted(sys, reg, "load_generator",
                                                  system_collector, gcfg));
    icfg.actors.emplace_back("load_generator", caf::actor_cast<caf::actor>(gen));
  }
  // Validated with the options; a scrape blocks its own thread only.
  auto targets = scrape_targets(opt.scrape);
  for (auto& t : targets ? *targets : std::vector<scrape_target>{}) {
    auto tcfg = scrape_collector(t, opt.scrape);
    tcfg.clock = clk;
    tcfg.storage = st;
    tcfg.on_stored = ccfg.on_stored;
    auto name = tcfg.name;
    auto s = keep(name, spawn_counted<caf::detached>(sys, reg, name,
                                                    system_collector, tcfg));
    icfg.actors.emplace_back(name, caf::actor_cast<caf::actor>(s));
  }
  if (!opt.logs.paths.empty()) {
    auto tcfg_logs = opt.logs;
    tcfg_logs.clock = clk;
    tcfg_logs.storage = st;
    tcfg_logs.on_stored = ccfg.on_stored;
    // File reads may block (a slow disk, NFS): a thread of its own.
    auto tail = keep("log_tail", spawn_counted<caf::detached>(
                                 sys, reg, "log_tail", log_tail, tcfg_logs));
    icfg.actors.emplace_back("log_tail", caf::actor_cast<caf::actor>(tail));
  }
  if (!opt.ingest.listen.empty() || !opt.ingest.socket.empty()) {
    auto lcfg = opt.ingest;
    lcfg.clock = clk;
    lcfg.storage = st;
    lcfg.on_stored = ccfg.on_stored;
    lcfg.metrics = metrics;
    auto ingest = spawn_local_ingest(sys, lcfg);
    if (!ingest)
      return ingest.error();
    keep("local_ingest", *ingest);
    icfg.actors.emplace_back("local_ingest", caf::actor_cast<caf::actor>(*ingest));
  }
  for (auto what : {"storage", "queue", "clean"})
    icfg.debug[what] = caf::actor_cast<caf::actor>(st);
  icfg.debug["capabilities"] = caf::actor_cast<caf::actor>(cap);
  for (auto what : {"config get", "config reload"})
    icfg.debug[what] = caf::actor_cast<caf::actor>(cap);
  icfg.debug["sync now"] = caf::actor_cast<caf::actor>(now);
  icfg.actors.emplace_back("sync_now", caf::actor_cast<caf::actor>(now));
  icfg.actors.insert(icfg.actors.end(), syncs.begin(), syncs.end());
  icfg.actors.emplace_back("supervisor", caf::actor_cast<caf::actor>(sup));
  if (opt.common.test_hooks)
    add_kill_hooks(icfg.debug, scfg, sup);
  return icfg;
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
    "  debug ping [--json]        DNS, TCP, TLS, key and round trips to the "
    "cloud, a verdict\n"
    "  config get [KEY] [--json]  each setting (compression, sync_interval, "
    "metric_interval,\n"
    "                             retention, store_logs) and its source\n"
    "  config set KEY=VALUE       pin a setting here, live and persisted "
    "(wins over the cloud)\n"
    "  config unset KEY           back to the cloud's, the config's or the "
    "tier's value\n"
    "  sync now [--json]          every stream synced now; waits for the "
    "acks (sync.now-timeout)\n"
    "  Commands go through the running node's console, else read the data "
    "directory.\n");
  auto rc = parse_or_exit("fleetd", opts, argc, argv, opt.common,
                          [&] { return validate(opt); });
  if (rc >= 0)
    return rc;
  auto die = [](const caf::error& err) {
    std::cerr << "fleetd: cannot start: " << render(err) << std::endl;
    return 1;
  };
  auto& dir = opt.common.data_dir;
  opt.sources = sources_of(opts, opt);
  if (!opts.args().empty())
    return run_command(opt, opts.args());
  if (auto err = ensure_directory(dir))
    return die(err);
  auto lock = lock_data_dir(dir, "fleetd");
  if (!lock)
    return die(lock.error());
  auto clk = make_scaled_clock(opt.common.clock_speed);
  auto caps = detect_for(opt);
  auto local = load_local_settings(dir);
  if (!local)
    return die(local.error());
  opt.local = *local;
  // What the operator last set from the cloud (and `fleetd config set`
  // here) applies from the start.
  auto backend = open_store(opt, caps, opt.local, clk);
  if (!backend)
    return die(backend.error());
  log_info("fleetd", summary(caps));
  node_config cfg{opt.common};
  // Fixed for the process: a later tier change keeps the threads it started with.
  auto threads = worker_threads(opt.scheduler, device_scheduler(),
                                caps.settings.tier, caps.hw.cpu_cores);
  apply(cfg, opt.scheduler, threads);
  log_info("fleetd", "scheduler: ", describe(opt.scheduler, threads));
  caf::actor_system sys{cfg};
  stop_list stops;
  // node.actor-stats off: the actors run unmeasured.
  auto reg = opt.common.actor_stats ? std::make_shared<stats_registry>()
                                    : nullptr;
  // GET /metrics on the local ingest listener, answered once the inspector is up.
  auto metrics = std::make_shared<metrics_endpoint>();
  auto icfg = spawn_actors(sys, stops, opt, caps, std::move(*backend), clk,
                           reg.get(), metrics);
  if (!icfg) {
    stops.stop_all(sys, opt.common.stop_timeout);
    return die(icfg.error());
  }
  icfg->runtime = reg;
  auto insp = spawn_counted(sys, reg.get(), "inspector", inspector, *icfg);
  stops.add("inspector", caf::actor_cast<caf::actor>(insp));
  metrics->bind(sys, insp);
  auto console = publish_console(sys, insp, opt.common);
  if (!console) {
    stops.stop_all(sys, opt.common.stop_timeout);
    return die(console.error());
  }
  log_info("fleetd", "device ", opt.sync.device_id, " started; data in ",
           dir, ", cloud ", cloud_text(opt.link), ", console ",
           opt.common.console_host, ":", (*console)->port);
  auto sig = wait_for_termination([&] {
    reload_console_tls("fleetd", *console);
    reload_settings("fleetd", opts, argc, argv, [](option_set& o) {
      auto x = std::make_shared<edge_options>();
      declare(o, *x);
      return std::shared_ptr<common_options>(x, &x->common);
    });
  });
  log_info("fleetd", "signal ", sig, ": stopping");
  unpublish_console(sys, *console);
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
  // One malloc arena, not one per thread: saves ~1.6 MB RSS on a device
  // whose threads mostly sleep.
  fleetd::limit_malloc_arenas(1);
  // A drain's batches come and go: their buffers go back, not kept (VmHWM).
  fleetd::fix_malloc_thresholds(128 * 1024);
  return fleetd::run(argc, argv);
}
