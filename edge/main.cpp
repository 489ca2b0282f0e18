// fleetd: the device node (collector -> storage -> sync -> cloud link).
#include <cstdlib>
#include <iostream>
#include <unistd.h>

#include <caf/actor_system.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/inspector.hpp"
#include "edge/cloud_link.hpp"
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
  int64_t load_series = 0;
  option_set::duration load_interval{};
  int64_t load_rounds = 0;
};

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
  opts.add("sync.interval", x.sync_interval, 10s,
           "How often the sync actor looks for new data when idle", 10ms);
  opts.add("sync.batch-size", x.sync_batch_size, 1000, "points",
           "Most points in one batch", 1, 1000000);
  opts.add("sync.zstd-level", x.sync_zstd_level, 3, "level",
           "zstd level for batches (0: send uncompressed)", 0, 19);
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
}

int run(int argc, char** argv) {
  block_termination_signals();
  edge_options opt;
  option_set opts("fleetd", "The fleetd device node: collects system metrics, "
                            "keeps them in SQLite and syncs them to the cloud.");
  declare(opts, opt);
  auto rc = parse_or_exit("fleetd", opts, argc, argv, opt.common, [&] {
    if (opt.device_id.empty())
      return make_error(ec::bad_config, "device.id: must not be empty");
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
  if (auto err = ensure_directory(dir))
    return die(err);
  auto clk = make_system_clock();
  storage_config scfg;
  scfg.path = dir + "/fleetd.db";
  scfg.clock = clk;
  auto store = edge_store::open(scfg);
  if (!store)
    return die(store.error());
  node_config cfg{opt.common};
  caf::actor_system sys{cfg};
  stop_list stops;
  auto st = sys.spawn<caf::detached>(
    storage, std::make_shared<edge_store>(std::move(*store)));
  stops.add("storage", caf::actor_cast<caf::actor>(st));
  cloud_link_config lcfg;
  lcfg.host = opt.cloud_host;
  lcfg.port = static_cast<uint16_t>(opt.cloud_port);
  lcfg.timeout = opt.cloud_timeout;
  auto link = sys.spawn<caf::detached>(cloud_link, lcfg);
  stops.add("cloud_link", caf::actor_cast<caf::actor>(link));
  sync_config ycfg;
  ycfg.device_id = opt.device_id;
  ycfg.stream = metrics_stream;
  ycfg.interval = opt.sync_interval;
  ycfg.batch_size = opt.sync_batch_size;
  ycfg.zstd_level = static_cast<int>(opt.sync_zstd_level);
  ycfg.backoff_base = opt.backoff_base;
  ycfg.backoff_cap = opt.backoff_cap;
  ycfg.request_timeout = opt.cloud_timeout * 2 + std::chrono::seconds(1);
  ycfg.clock = clk;
  ycfg.storage = st;
  ycfg.link = link;
  auto syn = sys.spawn(sync, ycfg);
  stops.add("sync", caf::actor_cast<caf::actor>(syn));
  system_collector_config ccfg;
  ccfg.disk_path = dir;
  ccfg.interval = opt.collector_interval;
  ccfg.max_rounds = opt.collector_rounds;
  ccfg.clock = clk;
  ccfg.storage = st;
  auto col = sys.spawn(system_collector, ccfg);
  stops.add("system_collector", caf::actor_cast<caf::actor>(col));
  std::vector<std::pair<std::string, caf::actor>> extra;
  if (opt.load_series > 0) {
    load_generator_config gcfg;
    gcfg.series = opt.load_series;
    gcfg.interval = opt.load_interval;
    gcfg.max_rounds = opt.load_rounds;
    gcfg.clock = clk;
    gcfg.storage = st;
    auto gen = sys.spawn(load_generator, gcfg);
    stops.add("load_generator", caf::actor_cast<caf::actor>(gen));
    extra.emplace_back("load_generator", caf::actor_cast<caf::actor>(gen));
  }
  inspector_config icfg;
  icfg.role = "edge";
  icfg.node_id = opt.device_id;
  icfg.clock = clk;
  icfg.actors = {{"system_collector", caf::actor_cast<caf::actor>(col)},
                 {"storage", caf::actor_cast<caf::actor>(st)},
                 {"sync", caf::actor_cast<caf::actor>(syn)},
                 {"cloud_link", caf::actor_cast<caf::actor>(link)}};
  icfg.actors.insert(icfg.actors.end(), extra.begin(), extra.end());
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
  auto sig = wait_for_termination();
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
