#include "tools/bench/node_read_bench.hpp"

#include <chrono>
#include <csignal>
#include <iostream>
#include <sstream>

#include "edge/node_metrics.hpp"
#include "messages/error.hpp"
#include "messages/prom_text.hpp"
#include "runtime/http_client.hpp"
#include "runtime/text.hpp"
#include "tools/bench/bench_util.hpp"
#include "tools/pg_server/process.hpp"
#include "tools/pg_server/waiting.hpp"

namespace fleetd::bench {

const char* node_read_summary
  = "one round of the system collector's node_exporter-compatible reader, "
    "against node_exporter scraping the same collectors on this machine";

std::string node_read_usage() {
  return "usage: fleetd-bench node-read [--rounds R] [--collectors LIST]\n"
         "  BENCH node-read rounds=R series=N fleetd_read_us=... "
         "ne_collect_us=... ne_scrape_us=... series_<collector>=...\n"
         "  fleetd_read_us: wall time of one read (warm reader); "
         "ne_collect_us: node_exporter's own\n"
         "  node_scrape_collector_duration_seconds summed; ne_scrape_us: "
         "wall time of GET /metrics\n";
}

namespace {

constexpr const char* node_exporter = "/usr/bin/prometheus-node-exporter";

struct node_read_options {
  int64_t rounds = 200;
  std::string collectors = node_defaults::enabled;
};

bool parse(const std::vector<std::string>& args, node_read_options& o) {
  for (size_t i = 0; i + 1 < args.size(); i += 2) {
    auto& k = args[i];
    auto& v = args[i + 1];
    bool ok = k == "--rounds"       ? parse_int(v, o.rounds) && o.rounds > 0
              : k == "--collectors" ? (o.collectors = v, true)
                                    : false;
    if (!ok)
      return false;
  }
  return args.size() % 2 == 0;
}

double micros_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(
           std::chrono::steady_clock::now() - t0)
    .count();
}

} // namespace

int run_node_read_bench(const std::vector<std::string>& args) {
  node_read_options o;
  if (!parse(args, o)) {
    std::cerr << node_read_usage();
    return 2;
  }
  node_metrics_config cfg;
  cfg.enabled = o.collectors;
  if (auto err = validate(cfg))
    fail(render(err));
  if (!executable(node_exporter))
    fail(std::string{node_exporter} + " is not installed");
  temp_dir dir{"fleetd-node-read"};
  auto port = free_port();
  child_spec spec;
  spec.argv = {node_exporter,
               "--web.listen-address=127.0.0.1:" + std::to_string(port),
               "--collector.disable-defaults"};
  for (auto c : split_list(o.collectors, ','))
    spec.argv.push_back("--collector." + std::string{c});
  spec.log = dir.path() + "/node_exporter.log";
  spec.cwd = "/";
  auto pid = spawn(spec);
  if (pid < 0)
    fail("cannot start node_exporter");
  http_client client{"127.0.0.1", static_cast<uint16_t>(port),
                     std::chrono::seconds(10), 16 << 20};
  poll_until(
    [&] {
      auto r = client.get("/metrics");
      return r && r->status == 200;
    },
    std::chrono::milliseconds(15'000));
  node_metrics_reader reader{cfg};
  std::vector<double> ours, ne_collect, ne_scrape;
  size_t series = 0;
  for (int64_t r = 0; r < o.rounds; ++r) {
    metric_samples xs;
    auto t0 = std::chrono::steady_clock::now();
    reader.read(0, xs, nullptr);
    ours.push_back(micros_since(t0));
    series = xs.size();
    t0 = std::chrono::steady_clock::now();
    auto page = client.get("/metrics");
    ne_scrape.push_back(micros_since(t0));
    if (!page || page->status != 200) {
      stop(pid, SIGTERM);
      fail("node_exporter scrape failed; log:\n" + read_tail(spec.log));
    }
    double sum = 0;
    for (auto& x : parse_prom_text(page->body, 0).samples)
      if (x.name == "node_scrape_collector_duration_seconds")
        sum += x.value;
    ne_collect.push_back(sum * 1e6);
  }
  stop(pid, SIGTERM);
  std::ostringstream line;
  line << "BENCH node-read rounds=" << o.rounds << " series=" << series
       << " fleetd_read_us=" << format(median(ours), 1)
       << " ne_collect_us=" << format(median(ne_collect), 1)
       << " ne_scrape_us=" << format(median(ne_scrape), 1);
  for (auto c : split_list(o.collectors, ',')) {
    node_metrics_config one;
    one.enabled = std::string{c};
    line << " series_" << c << "="
         << read_system_metrics(one, 0, nullptr).size();
  }
  std::cout << line.str() << "\n";
  return 0;
}

} // namespace fleetd::bench
