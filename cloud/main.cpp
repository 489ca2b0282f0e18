// fleetd-cloud: the cloud node (ingest endpoint -> ingest -> cloud store).
#include <iostream>
#include <algorithm>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/inspector.hpp"
#include "cloud/cloud_store.hpp"
#include "cloud/embedded_journal.hpp"
#include "cloud/embedded_store.hpp"
#include "cloud/fleet_sink.hpp"
#include "cloud/embedded_tenancy.hpp"
#include "cloud/ingest.hpp"
#include "cloud/ingest_endpoint.hpp"
#include "cloud/operator_console.hpp"
#include "cloud/pg_journal.hpp"
#include "cloud/pg_migrate.hpp"
#include "cloud/pg_store.hpp"
#include "cloud/pg_tenancy.hpp"
#include "cloud/sink_runner.hpp"
#include "cloud/sinks.hpp"
#include "cloud/embedded_query_source.hpp"
#include "cloud/pg_query_source.hpp"
#include "cloud/query.hpp"
#include "cloud/routed_query_source.hpp"
#include "cloud/retention.hpp"
#include "cloud/rollout.hpp"
#include "cloud/tenancy.hpp"
#include "cloud/web_console.hpp"
#include "messages/error.hpp"
#include "runtime/config_check.hpp"
#include "runtime/counted.hpp"
#include "runtime/http_server.hpp"
#include "runtime/stats_reader.hpp"
#include "runtime/logger.hpp"
#include "runtime/metrics_page.hpp"
#include "runtime/node.hpp"
#include "runtime/scheduler.hpp"
#include "runtime/supervisor.hpp"

namespace fleetd {
namespace {

// Each part declares the options that fill its config (declare + validate
// beside the struct); main only wires the configs together.
struct cloud_options {
  common_options common;
  std::string node_id;
  store_config store;
  retention_config retention;
  ingest_endpoint_config endpoint;
  ingest_config ingest;
  tenancy_config tenancy;
  query_config query;
  restart_limits supervisor;
  journal_config journal;
  sink_runner_config runner;
  sinks_options sinks;
  fleet_sink_config fleet;
  scheduler_options scheduler;
  rollout_config rollout;
  operator_console_config operator_console;
};

void declare(option_set& opts, cloud_options& x) {
  declare_common_options(opts, x.common, "/var/lib/fleetd-cloud", 7401);
  opts.add("node.id", x.node_id, "cloud-1", "Name of this cloud node");
  declare(opts, x.store);
  declare(opts, x.retention);
  declare(opts, x.endpoint);
  declare(opts, x.ingest);
  declare(opts, x.tenancy);
  declare(opts, x.query);
  declare(opts, x.supervisor);
  declare(opts, x.journal);
  declare(opts, x.runner);
  declare(opts, x.sinks);
  declare(opts, x.fleet);
  declare(opts, x.scheduler, cloud_scheduler());
  declare(opts, x.rollout);
  declare(opts, x.operator_console);
}

caf::error validate(const cloud_options& x) {
  if (auto err = validate(x.store))
    return err;
  if (auto err = validate(x.scheduler))
    return err;
  if (auto err = validate(x.retention, x.store))
    return err;
  if (x.store.backend == "postgresql" && x.ingest.anonymous)
    return bad_config("ingest.anonymous: devices without an org cannot be "
                      "stored in PostgreSQL (store.backend)");
  if (auto err = validate(x.endpoint))
    return err;
  if (auto err = validate(x.ingest))
    return err;
  if (auto err = validate(x.tenancy))
    return err;
  // Nodes making their own secrets would not know each other's keys.
  if (x.store.backend == "postgresql" && x.tenancy.secret_file.empty())
    return bad_config("tenancy.secret-file: required with store.backend = "
                      "postgresql; every node of the database reads the same "
                      "secret");
  if (auto err = validate(x.query))
    return err;
  if (auto err = validate(x.supervisor))
    return err;
  if (auto err = validate(x.journal))
    return err;
  if (auto err = validate(x.rollout))
    return err;
  if (auto err = validate(x.operator_console, x.common))
    return err;
  if (x.ingest.max_decoded_bytes < x.endpoint.max_body_bytes)
    return bad_config("ingest.max-decoded-bytes: must be at least "
                      "ingest.max-body-bytes");
  if (x.ingest.anonymous && !x.endpoint.insecure)
    return bad_config("ingest.anonymous: only with ingest.insecure on a "
                      "loopback address");
  return caf::none;
}

using store_ptr = std::shared_ptr<cloud_store_backend>;

// How the node connects as its role (store, tenancy, retention).
pg::connect_options node_pg_options(const store_config& x) {
  pg::connect_options opts;
  opts.statement_timeout_ms = x.postgresql_statement_timeout_ms;
  return opts;
}

// Opens the configured store; PostgreSQL's schema is migrated first when
// the owner's URL is given.
caf::expected<store_ptr> open_store(const cloud_options& opt,
                                    const clock_ptr& clk) {
  auto& x = opt.store;
  if (x.backend == "embedded") {
    auto st = embedded_store::open(opt.common.data_dir + "/cloud.db", clk,
                                   opt.journal);
    if (!st)
      return st.error();
    return store_ptr{std::make_shared<embedded_store>(std::move(*st))};
  }
  if (!x.postgresql_owner_url.empty()) {
    auto owner = pg::connection::open(x.postgresql_owner_url);
    if (!owner)
      return owner.error();
    auto done = migrate(*owner);
    if (!done)
      return done.error();
    log_info("fleetd-cloud", "PostgreSQL schema at version ",
             done->to_version, " (", done->applied, " applied now)");
  }
  auto st = pg_store::open(x.postgresql_url, clk, node_pg_options(x),
                           x.postgresql_writers, opt.journal);
  if (!st)
    return st.error();
  return store_ptr{std::make_shared<pg_store>(std::move(*st))};
}

using tenancy_ptr = std::shared_ptr<tenancy_backend>;

// Opens the tenancy store beside the cloud store: tenancy.db in the data
// directory, or the node's PostgreSQL (no file of its own then).
caf::expected<tenancy_ptr> open_tenancy(const cloud_options& opt,
                                        const clock_ptr& clk) {
  auto& dir = opt.common.data_dir;
  if (opt.store.backend == "postgresql") {
    auto secret = load_secret(opt.tenancy.secret_file);
    if (!secret)
      return secret.error();
    auto t = pg_tenancy::open(opt.store.postgresql_url, std::move(*secret),
                              clk, node_pg_options(opt.store));
    if (!t)
      return t.error();
    return tenancy_ptr{std::make_shared<pg_tenancy>(std::move(*t))};
  }
  auto secret = load_or_create_secret(opt.tenancy.secret_file.empty()
                                        ? dir + "/tenancy.secret"
                                        : opt.tenancy.secret_file);
  if (!secret)
    return secret.error();
  auto t = embedded_tenancy::open(dir + "/tenancy.db", std::move(*secret), clk);
  if (!t)
    return t.error();
  return tenancy_ptr{std::make_shared<embedded_tenancy>(std::move(*t))};
}

// The cloud store's factory: the store opened at start first, then (after a
// death) opened again, so a restart reloads its state from the database.
child_factory store_factory(store_ptr opened, cloud_options opt,
                            clock_ptr clk, stats_registry* reg) {
  return [opened, opt, clk, reg](caf::actor_system& sys) mutable
         -> caf::expected<caf::actor> {
    auto db = std::move(opened);
    if (!db) {
      auto again = open_store(opt, clk);
      if (!again)
        return again.error();
      db = std::move(*again);
    }
    return caf::actor_cast<caf::actor>(
      spawn_counted<caf::detached>(sys, reg, "cloud_store", cloud_store, db));
  };
}

using sink_ptr = std::shared_ptr<sink_backend>;

// A sink's own journal reader, opened again by each incarnation.
journal_opener reader_opener(const cloud_options& opt, const clock_ptr& clk) {
  return [dir = opt.common.data_dir, cfg = opt.journal, store = opt.store,
          clk]() -> caf::expected<std::shared_ptr<journal_reader>> {
    if (store.backend == "postgresql") {
      auto j = pg_journal::open(store.postgresql_url, clk, cfg,
                                node_pg_options(store));
      if (!j)
        return j.error();
      return std::shared_ptr<journal_reader>{
        std::make_shared<pg_journal>(std::move(*j))};
    }
    auto j = embedded_journal::open(dir + "/cloud.db", clk, cfg);
    if (!j)
      return j.error();
    return std::shared_ptr<journal_reader>{
      std::make_shared<embedded_journal>(std::move(*j))};
  };
}

// One supervised sink_runner per configured sink, listed by the inspector.
void add_sinks(caf::actor_system& sys, supervisor_config& scfg,
               stop_list& stops, const cloud_options& opt,
               const std::vector<sink_ptr>& sinks, const clock_ptr& clk,
               std::vector<std::pair<std::string, caf::actor>>& listed,
               stats_registry* reg) {
  auto rcfg = opt.runner;
  rcfg.open_reader = reader_opener(opt, clk);
  rcfg.holder = opt.node_id;
  rcfg.clock = clk;
  for (auto& s : sinks)
    rcfg.enabled.push_back(s->name());
  for (auto& s : sinks) {
    auto cfg = rcfg;
    cfg.backend = s;
    auto name = "sink_" + s->name();
    auto r = scfg.add(sys, name, false, [cfg, reg, name](caf::actor_system& as) {
      return caf::expected<caf::actor>{caf::actor_cast<caf::actor>(
        spawn_counted<caf::detached>(as, reg, name, sink_runner, cfg))};
    });
    stops.add(name, r);
    listed.emplace_back(name, r);
  }
}

// The configured sinks; the journal is written only when one reads it.
caf::expected<std::vector<sink_ptr>> configure_sinks(cloud_options& opt) {
  auto sinks = make_sinks(opt.sinks);
  if (!sinks)
    return sinks.error();
  auto& f = opt.fleet;
  f.backend = opt.store.backend;
  f.postgresql_url = opt.store.postgresql_url;
  f.db_path = opt.common.data_dir + "/cloud.db";
  f.statement_timeout_ms = opt.store.postgresql_statement_timeout_ms;
  // Twice the journal's retention: no entry can be replayed after that.
  f.marker_retention = 2 * opt.journal.retention;
  auto fleet = make_fleet_sink(f);
  if (!fleet)
    return fleet.error();
  if (*fleet)
    sinks->push_back(std::move(*fleet));
  opt.journal.enabled = !sinks->empty();
  opt.ingest.journal_retry_after_ms = opt.journal.retry_after.count();
  return sinks;
}

// The retention actor when store.retention-days is set (PostgreSQL only),
// on a connection of its own; else an invalid handle.
caf::actor spawn_retention(caf::actor_system& sys, stop_list& stops,
                           const cloud_options& opt, const clock_ptr& clk,
                           stats_registry* reg) {
  if (opt.retention.days <= 0)
    return {};
  auto rcfg = opt.retention;
  rcfg.postgresql_url = opt.store.postgresql_url;
  rcfg.connect = node_pg_options(opt.store);
  rcfg.clock = clk;
  auto ret = caf::actor_cast<caf::actor>(
    spawn_counted<caf::detached>(sys, reg, "retention", retention, rcfg));
  stops.add("retention", ret);
  return ret;
}

// The node's store as a query source, on a connection of its own.
caf::expected<query_source_ptr> open_store_source(const cloud_options& opt) {
  if (opt.store.backend == "postgresql")
    return open_pg_query_source(opt.store.postgresql_url,
                                node_pg_options(opt.store));
  return open_embedded_query_source(opt.common.data_dir + "/cloud.db");
}

// The query API's source: the sinks' backends for what each is built for
// (docs/query-api.md), the node's store for the rest.
caf::expected<query_source_ptr> open_query_source(const cloud_options& opt) {
  auto store = open_store_source(opt);
  if (!store)
    return store.error();
  auto readers = make_sink_readers(opt.sinks);
  if (!readers)
    return readers.error();
  auto& r = *readers;
  auto out = make_routed_query_source({std::move(*store),
                                       r[query_role::series],
                                       r[query_role::hourly_series],
                                       r[query_role::logs]});
  log_info("fleetd-cloud", "query API reads ", out->name());
  return out;
}

// What the node opens before its actors: the stores it drives, blocking.
struct cloud_parts {
  std::vector<sink_ptr> sinks;
  store_ptr store;
  tenancy_ptr tenants;
  query_source_ptr source;
  std::shared_ptr<rollout_book> rollouts;
};

caf::expected<cloud_parts> open_parts(cloud_options& opt,
                                      const clock_ptr& clk) {
  cloud_parts out;
  auto sinks = configure_sinks(opt);
  if (!sinks)
    return sinks.error();
  out.sinks = std::move(*sinks);
  auto store = open_store(opt, clk);
  if (!store)
    return store.error();
  out.store = std::move(*store);
  auto tenants = open_tenancy(opt, clk);
  if (!tenants)
    return tenants.error();
  out.tenants = std::move(*tenants);
  auto source = open_query_source(opt);
  if (!source)
    return source.error();
  out.source = std::move(*source);
  // Beside the embedded store in its file; a PostgreSQL node keeps them in
  // a file of its own (not shared between nodes).
  auto book = rollout_book::open(
    opt.common.data_dir
    + (opt.store.backend == "embedded" ? "/cloud.db" : "/rollout.db"));
  if (!book)
    return book.error();
  out.rollouts = std::make_shared<rollout_book>(std::move(*book));
  return out;
}

// The start line, after warnings for settings meant for tests only.
void log_started(const cloud_options& opt, uint16_t port,
                 uint16_t console_port) {
  if (opt.endpoint.insecure)
    log_warning("fleetd-cloud", "ingest.insecure = true: devices sync over "
                                "plain HTTP without TLS (loopback only)");
  if (opt.ingest.anonymous)
    log_warning("fleetd-cloud", "ingest.anonymous = true: requests without a "
                                "device key are stored as the device they "
                                "name");
  log_info("fleetd-cloud", opt.node_id, " started; ingest ",
           opt.endpoint.insecure ? "http://" : "https://",
           opt.endpoint.host, ":", port, "/v1/sync, console ",
           opt.common.console_host, ":", console_port, ", data in ",
           opt.common.data_dir);
}

/// What main keeps of the cloud's actors.
struct cloud_actors {
  ingest_actor ingest;
  supervisor_actor supervisor;
  inspector_actor inspector;
  query_api api;
};

// Spawns the cloud's actors in start order (the store first, as ingest
// writes to it, ingest asks tenancy), each supervised behind a relay that
// outlives its deaths.
cloud_actors spawn_actors(caf::actor_system& sys, stop_list& stops,
                          const cloud_options& opt, cloud_parts parts,
                          const clock_ptr& clk,
                          const std::shared_ptr<stats_registry>& runtime) {
  auto reg = runtime.get();
  supervisor_config scfg;
  scfg.limits = opt.supervisor;
  scfg.clock = clk;
  scfg.registry = reg;
  auto st = scfg.add(sys, "cloud_store", true,
                     store_factory(std::move(parts.store), opt, clk, reg));
  stops.add("cloud_store", st);
  auto tcfg = opt.tenancy;
  // Kept across restarts: its state is in its database, its caches in the
  // actor.
  tcfg.store = std::move(parts.tenants);
  tcfg.clock = clk;
  auto ten = scfg.add(sys, "tenancy", true, [tcfg, reg](caf::actor_system& s) {
    return caf::expected<caf::actor>{caf::actor_cast<caf::actor>(
      spawn_counted<caf::detached>(s, reg, "tenancy", tenancy, tcfg))};
  });
  stops.add("tenancy", ten);
  // Not essential: without it rollouts wait, ingest goes on. Its state is
  // in its book, kept across restarts.
  auto rcfg = opt.rollout;
  rcfg.store = caf::actor_cast<cloud_store_actor>(st);
  rcfg.book = std::move(parts.rollouts);
  rcfg.clock = clk;
  auto rol = scfg.add(sys, "rollout", false, [rcfg, reg](caf::actor_system& s) {
    return caf::expected<caf::actor>{caf::actor_cast<caf::actor>(
      spawn_counted<caf::detached>(s, reg, "rollout", rollout, rcfg))};
  });
  stops.add("rollout", rol);
  auto icfg = opt.ingest;
  icfg.store = caf::actor_cast<cloud_store_actor>(st);
  icfg.outcomes = caf::actor_cast<outcome_listener>(rol);
  icfg.tenancy = caf::actor_cast<tenancy_actor>(ten);
  auto ing = scfg.add(sys, "ingest", true, [icfg, reg](caf::actor_system& s) {
    return caf::expected<caf::actor>{
      caf::actor_cast<caf::actor>(spawn_counted(s, reg, "ingest", ingest, icfg))};
  });
  stops.add("ingest", ing);
  std::vector<std::pair<std::string, caf::actor>> listed;
  add_sinks(sys, scfg, stops, opt, parts.sinks, clk, listed, reg);
  // Not essential: without it queries fail, ingest goes on. The source
  // (its connection) is kept across restarts.
  auto qcfg = opt.query;
  qcfg.source = std::move(parts.source);
  auto qry = scfg.add(sys, "query", false, [qcfg, reg](caf::actor_system& s) {
    return caf::expected<caf::actor>{caf::actor_cast<caf::actor>(
      spawn_counted<caf::detached>(s, reg, "query", query, qcfg))};
  });
  stops.add("query", qry);
  auto sup = spawn_counted(sys, reg, "supervisor", supervisor, scfg);
  // Stopped before the relays: nothing is restarted during a stop.
  stops.add("supervisor", caf::actor_cast<caf::actor>(sup));
  inspector_config pcfg;
  pcfg.role = "cloud";
  pcfg.node_id = opt.node_id;
  pcfg.clock = clk;
  pcfg.actors = {{"ingest", ing},
                 {"cloud_store", st},
                 {"tenancy", ten},
                 {"rollout", rol},
                 {"supervisor", caf::actor_cast<caf::actor>(sup)}};
  pcfg.actors.insert(pcfg.actors.end(), listed.begin(), listed.end());
  if (auto ret = spawn_retention(sys, stops, opt, clk, reg))
    pcfg.actors.emplace_back("retention", ret);
  pcfg.actors.emplace_back("query", qry);
  pcfg.devices = st;
  pcfg.tenancy = ten;
  pcfg.rollout = rol;
  if (opt.common.test_hooks)
    add_kill_hooks(pcfg.debug, scfg, sup);
  pcfg.runtime = runtime;
  auto insp = spawn_counted(sys, reg, "inspector", inspector, pcfg);
  stops.add("inspector", caf::actor_cast<caf::actor>(insp));
  return {caf::actor_cast<ingest_actor>(ing), sup, insp,
          query_api{caf::actor_cast<tenancy_actor>(ten),
                    caf::actor_cast<query_actor>(qry)}};
}

// A part that is no actor, listed by the inspector's status as `name`.
caf::actor report_reader(caf::actor_system& sys, const inspector_actor& insp,
                         const std::string& name,
                         std::function<actor_stats()> read) {
  auto stats = caf::actor_cast<caf::actor>(sys.spawn(stats_reader, read));
  caf::scoped_actor self{sys};
  self->send(insp, report_atom::value, name, stats);
  return stats;
}

// The endpoint's connection counters, listed by the inspector's status as
// "ingest_http" (its state: how devices connect).
caf::actor report_ingest_http(caf::actor_system& sys,
                              const inspector_actor& insp,
                              const ingest_endpoint& endpoint,
                              const ingest_endpoint_config& cfg) {
  auto mode = cfg.insecure          ? "insecure"
              : cfg.tls.ca.empty() ? "https"
                                    : "https+client-cert";
  auto read = [server = endpoint.server(), mode = std::string(mode)] {
    actor_stats s;
    s.name = "ingest_http";
    s.state = mode;
    for (auto& [name, value] : named_counters(server->counters()))
      s.counters[name] = value;
    return s;
  };
  return report_reader(sys, insp, "ingest_http", read);
}

int run(int argc, char** argv) {
  block_termination_signals();
  cloud_options opt;
  option_set opts("fleetd-cloud",
                  "The fleetd cloud node: accepts device syncs on POST "
                  "/v1/sync and keeps them in its embedded store or "
                  "PostgreSQL (store.backend).");
  declare(opts, opt);
  auto rc = parse_or_exit("fleetd-cloud", opts, argc, argv, opt.common,
                          [&] { return validate(opt); });
  if (rc >= 0)
    return rc;
  auto die = [](const caf::error& err) {
    std::cerr << "fleetd-cloud: cannot start: " << render(err) << std::endl;
    return 1;
  };
  auto& dir = opt.common.data_dir;
  if (auto err = ensure_directory(dir))
    return die(err);
  // One node per data directory: two would ack from one store twice over.
  auto lock = lock_data_dir(dir, "fleetd-cloud");
  if (!lock)
    return die(lock.error());
  auto clk = make_scaled_clock(opt.common.clock_speed);
  auto parts = open_parts(opt, clk);
  if (!parts)
    return die(parts.error());
  node_config cfg{opt.common};
  auto threads = worker_threads(opt.scheduler, cloud_scheduler(), 1, 0);
  apply(cfg, opt.scheduler, threads);
  log_info("fleetd-cloud", "scheduler: ", describe(opt.scheduler, threads));
  caf::actor_system sys{cfg};
  stop_list stops;
  // node.actor-stats off: the actors run unmeasured.
  auto reg = opt.common.actor_stats ? std::make_shared<stats_registry>()
                                    : nullptr;
  auto [ing, sup, insp, api] = spawn_actors(sys, stops, opt,
                                            std::move(*parts), clk, reg);
  // GET /metrics and the web console /console on the ingest port.
  auto metrics = std::make_shared<metrics_endpoint>();
  metrics->bind(sys, insp, fleet_delivery_metrics);
  auto web = std::make_shared<web_console>(
    sys, web_console_config{insp, api.tenancy, clk, metrics});
  ingest_endpoint endpoint{sys, ing, opt.endpoint.limits(), sup, api,
                           [web](http_request& req,
                                 http_server::respond_fn& respond) {
                             return web->route(req, respond);
                           }};
  auto port = endpoint.start(opt.endpoint);
  if (!port) {
    stops.stop_all(sys, opt.common.stop_timeout);
    return die(port.error());
  }
  if (auto err = write_file_atomically(dir + "/ingest.port",
                                       std::to_string(*port) + "\n")) {
    endpoint.stop();
    stops.stop_all(sys, opt.common.stop_timeout);
    return die(err);
  }
  stops.add("ingest_http", report_ingest_http(sys, insp, endpoint, opt.endpoint));
  stops.add("web_console", report_reader(sys, insp, "web_console",
                                         [web] { return web->stats(); }));
  // The same console for operators' certificates (console.http-listen).
  auto op = operator_console::start(opt.operator_console, opt.common, web);
  if (!op) {
    endpoint.stop();
    stops.stop_all(sys, opt.common.stop_timeout);
    return die(op.error());
  }
  if (auto o = *op)
    stops.add("console_http", report_reader(sys, insp, "console_http",
                                            [o] { return o->stats(); }));
  auto console = publish_console(sys, insp, opt.common);
  if (!console) {
    if (*op)
      (*op)->stop();
    endpoint.stop();
    stops.stop_all(sys, opt.common.stop_timeout);
    return die(console.error());
  }
  log_started(opt, *port, (*console)->port);
  auto sig = wait_for_termination([&] {
    if (auto err = endpoint.reload_tls())
      log_error("fleetd-cloud", "SIGHUP: TLS files not reloaded, serving "
                                "with the previous ones: ", render(err));
    else if (!opt.endpoint.insecure)
      log_info("fleetd-cloud", "SIGHUP: TLS certificate and key reloaded");
    reload_console_tls("fleetd-cloud", *console);
    if (*op)
      if (auto err = (*op)->reload_tls())
        log_error("fleetd-cloud", "SIGHUP: console.http-listen keeps its "
                                  "previous TLS files: ", render(err));
    reload_settings("fleetd-cloud", opts, argc, argv, [](option_set& o) {
      auto x = std::make_shared<cloud_options>();
      declare(o, *x);
      return std::shared_ptr<common_options>(x, &x->common);
    });
  });
  log_info("fleetd-cloud", "signal ", sig, ": stopping");
  // Stop taking requests first, then the actors in reverse start order.
  endpoint.stop();
  if (*op)
    (*op)->stop();
  unpublish_console(sys, *console);
  auto late = stops.stop_all(sys, opt.common.stop_timeout);
  if (late > 0) {
    log_warning("fleetd-cloud", late, " actor(s) did not stop in time; exiting");
    std::_Exit(0);
  }
  log_info("fleetd-cloud", "stopped");
  return 0;
}

} // namespace
} // namespace fleetd

int main(int argc, char** argv) {
  // An arena a core, not up to eight: each detached actor's thread would
  // otherwise keep what it freed in its own.
  fleetd::limit_malloc_arenas(
    static_cast<int>(std::max(2u, std::thread::hardware_concurrency())));
  return fleetd::run(argc, argv);
}
