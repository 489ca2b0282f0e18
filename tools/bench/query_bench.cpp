#include "tools/bench/query_bench.hpp"

#include <algorithm>
#include <chrono>
#include <iostream>
#include <random>
#include <sstream>

#include <filesystem>
#include <memory>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "cloud/clickhouse_query_source.hpp"
#include "cloud/clickhouse_sink.hpp"
#include "cloud/embedded_query_source.hpp"
#include "cloud/embedded_store.hpp"
#include "cloud/embedded_tenancy.hpp"
#include "cloud/ingest_endpoint.hpp"
#include "cloud/query.hpp"
#include "cloud/routed_query_source.hpp"
#include "cloud/tenancy.hpp"
#include "messages/error.hpp"
#include "messages/register.hpp"
#include "runtime/http_client.hpp"
#include "messages/json_reader.hpp"
#include "tools/bench/bench_util.hpp"
#include "tools/ch_server/ch_server.hpp"

namespace fleetd::bench {

const char* query_summary
  = "hourly rollups in ClickHouse: a D-day query of one device and metric "
    "through the HTTP query API (GET /v1/query, an API token, the query "
    "actor, the ClickHouse query source) against the direct rollup query "
    "(clickhouse_rollup_query) and ClickHouse's bare count of its rows";

namespace {

using clock_type = std::chrono::steady_clock;

// 2026-01-01T00:00:00Z: where the loaded hours start.
constexpr int64_t start_s = 1767225600;
// Rows per INSERT ... SELECT: bounds the server's sort memory.
constexpr int64_t rows_per_insert = 5000000;

using options = query_options;

std::string parse_args(const std::vector<std::string>& args, options& opt) {
  arg_cursor cur{args};
  while (cur.next()) {
    std::string v;
    int64_t* target = cur.name() == "--devices"   ? &opt.devices
                      : cur.name() == "--metrics" ? &opt.metrics
                      : cur.name() == "--days"    ? &opt.days
                      : cur.name() == "--queries" ? &opt.queries
                                                  : nullptr;
    if (!target)
      return "unknown argument " + cur.name();
    if (!cur.value(v) || !parse_int(v, *target) || *target < 1)
      return cur.name() + " wants a positive whole number";
  }
  return {};
}

double ms_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0)
    .count();
}

double percentile(std::vector<double> xs, double q) {
  std::sort(xs.begin(), xs.end());
  auto i = static_cast<size_t>(q * static_cast<double>(xs.size() - 1) + 0.5);
  return xs[std::min(i, xs.size() - 1)];
}

// Rows generated in the server (system.numbers): no client transfer.
void load(clickhouse_sink& sink, const options& opt, int64_t rows) {
  int64_t hours = opt.days * 24;
  for (int64_t from = 0; from < rows; from += rows_per_insert) {
    auto n = std::min(rows_per_insert, rows - from);
    auto sql = "INSERT INTO fleetd.rollup_hourly SELECT toDateTime("
               + std::to_string(start_s) + " + (number % " + std::to_string(hours)
               + ") * 3600), 'org-1', concat('dev-', toString(intDiv(number, "
               + std::to_string(hours * opt.metrics)
               + "))), concat('metric_', toString(intDiv(number, "
               + std::to_string(hours) + ") % " + std::to_string(opt.metrics)
               + ")), '', number % 997, 360, 0, number % 997, 360 FROM "
                 "system.numbers WHERE number >= "
               + std::to_string(from) + " LIMIT " + std::to_string(n);
    if (auto res = sink.execute(sql); !res)
      fail("loading rollups: " + render(res.error()));
    std::cerr << "query: loaded " << from + n << " of " << rows << " rows\n";
  }
}

struct timings {
  std::vector<double> api;
  std::vector<double> direct;
  std::vector<double> bare;
  int64_t points = 0;
};

// The node's query API in this process, as fleetd-cloud wires it with a
// ClickHouse sink: ingest endpoint (plain HTTP on 127.0.0.1), tenancy
// actor checking a real API token, query actor over the routed source.
struct query_door {
  std::string dir;
  bool own_dir = false;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::vector<caf::actor> actors;
  std::unique_ptr<ingest_endpoint> endpoint;
  std::unique_ptr<http_client> client;
  std::string authorization;

  explicit query_door(const clickhouse_config& ch);
  ~query_door();
};

// org-1 and an API token of it, in the door's tenancy.db.
std::shared_ptr<tenancy_backend> tenancy_with_token(const std::string& dir,
                                                    std::string& token) {
  auto ten = embedded_tenancy::open(dir + "/tenancy.db", std::string(64, 's'),
                                    make_system_clock());
  if (!ten)
    fail("tenancy.db: " + render(ten.error()));
  tenancy_command cmd;
  cmd.op = "org-create";
  cmd.org = "org-1";
  if (auto made = ten->run(cmd); !made)
    fail("org-create: " + render(made.error()));
  cmd.op = "api-token-create";
  auto made = ten->run(cmd);
  if (!made)
    fail("api-token-create: " + render(made.error()));
  token = made->secret;
  return std::make_shared<embedded_tenancy>(std::move(*ten));
}

// The routed source as the node builds it: the store (empty here) and
// ClickHouse's rollups for whole hours.
query_source_ptr routed_source(const std::string& dir,
                               const clickhouse_config& ch) {
  if (!embedded_store::open(dir + "/cloud.db", make_system_clock()))
    fail("cannot create cloud.db");
  auto store = open_embedded_query_source(dir + "/cloud.db");
  auto rollups = open_clickhouse_query_source(ch);
  if (!store || !rollups)
    fail("cannot open the query sources");
  return make_routed_query_source({*store, nullptr, *rollups, nullptr});
}

query_door::query_door(const clickhouse_config& ch) {
  if (auto err = prepare_dir(dir, own_dir); !err.empty())
    fail(err);
  std::string token;
  tenancy_config tcfg;
  tcfg.store = tenancy_with_token(dir, token);
  tcfg.clock = make_system_clock();
  authorization = "Bearer " + token;
  query_config qcfg;
  qcfg.source = routed_source(dir, ch);
  register_messages(cfg);
  sys = std::make_unique<caf::actor_system>(cfg);
  auto ten = sys->spawn<caf::detached>(tenancy, tcfg);
  auto qry = sys->spawn<caf::detached>(query, qcfg);
  actors = {caf::actor_cast<caf::actor>(ten), caf::actor_cast<caf::actor>(qry)};
  endpoint = std::make_unique<ingest_endpoint>(*sys, ingest_actor{},
                                               http_limits{}, health_actor{},
                                               query_api{ten, qry});
  ingest_endpoint_config ecfg;
  ecfg.host = "127.0.0.1";
  ecfg.port = 0;
  ecfg.insecure = true;
  auto port = endpoint->start(ecfg);
  if (!port)
    fail("query endpoint: " + render(port.error()));
  client = std::make_unique<http_client>("127.0.0.1", *port,
                                         std::chrono::seconds{30}, 64 << 20);
}

query_door::~query_door() {
  client.reset();
  endpoint->stop();
  caf::scoped_actor self{*sys};
  for (auto& a : actors)
    self->send_exit(a, caf::exit_reason::user_shutdown);
  for (auto& a : actors)
    self->wait_for(a);
  if (own_dir)
    std::filesystem::remove_all(dir);
}

// Points of a GET /v1/query answer, all series together.
int64_t answer_points(const std::string& body) {
  std::string why;
  auto doc = parse_json(body, why);
  auto* series = doc ? json_member(*doc, "series") : nullptr;
  if (!series)
    fail("query API answer: " + (why.empty() ? body.substr(0, 200) : why));
  int64_t n = 0;
  for (auto& s : series->items)
    if (auto* points = json_member(s, "points"))
      n += static_cast<int64_t>(points->items.size());
  return n;
}

double time_api(query_door& door, const std::string& device,
                const std::string& metric, const options& opt,
                int64_t& points) {
  auto target = "/v1/query?metric=" + metric + "&device=" + device
                + "&step=1h&from=" + std::to_string(start_s * 1000)
                + "&to=" + std::to_string((start_s + opt.days * 86400) * 1000);
  auto t0 = clock_type::now();
  auto res = door.client->get(target, {{"Authorization", door.authorization}});
  auto ms = ms_since(t0);
  if (!res || res->status != 200)
    fail("query API: " + (res ? std::to_string(res->status) + " " + res->body
                              : render(res.error())));
  points += answer_points(res->body);
  return ms;
}

timings run_queries(clickhouse_sink& sink, query_door& door, http_client& bare,
                    const options& opt) {
  std::mt19937_64 rng{42};
  timings t;
  int64_t to_s = start_s + opt.days * 86400;
  for (int64_t q = 0; q < opt.queries; ++q) {
    auto device = "dev-" + std::to_string(rng() % opt.devices);
    auto metric = "metric_" + std::to_string(rng() % opt.metrics);
    // The first query of a series finds it cold: alternate who goes first.
    if (q % 2 == 0)
      t.api.push_back(time_api(door, device, metric, opt, t.points));
    auto t0 = clock_type::now();
    auto points = clickhouse_rollup_query(sink, "org-1", device, metric,
                                          start_s, to_s);
    t.direct.push_back(ms_since(t0));
    if (!points)
      fail("query: " + render(points.error()));
    if (q % 2 == 1)
      t.api.push_back(time_api(door, device, metric, opt, t.points));
    t0 = clock_type::now();
    auto res = bare.post("/",
                         "SELECT count() FROM fleetd.rollup_hourly WHERE "
                         "org_id = 'org-1' AND device_id = '"
                           + device + "' AND metric = '" + metric + "'",
                         {});
    t.bare.push_back(ms_since(t0));
    if (!res || res->status != 200)
      fail("bare query failed");
  }
  return t;
}

query_result measure(const options& opt) {
  ch_server::failure why;
  auto server = ch_server::start(why);
  if (!server)
    fail("ClickHouse: " + why.why);
  clickhouse_config cfg;
  cfg.url = server->url();
  cfg.timeout = std::chrono::minutes{10};
  auto sink = make_clickhouse_sink(cfg);
  if (!sink || (*sink)->create_schema())
    fail("cannot create the schema");
  query_result r;
  r.rows = opt.devices * opt.metrics * opt.days * 24;
  auto t0 = clock_type::now();
  load(**sink, opt, r.rows);
  r.load_s = ms_since(t0) / 1000;
  http_client bare{"127.0.0.1", static_cast<uint16_t>(server->http_port()),
                   std::chrono::seconds{30}, 1 << 20};
  query_door door{cfg};
  auto t = run_queries(**sink, door, bare, opt);
  r.points = t.points;
  r.p50_ms = percentile(t.api, 0.5);
  r.p99_ms = percentile(t.api, 0.99);
  r.direct_p50_ms = percentile(t.direct, 0.5);
  r.direct_p99_ms = percentile(t.direct, 0.99);
  r.bare_p50_ms = percentile(t.bare, 0.5);
  r.bare_p99_ms = percentile(t.bare, 0.99);
  return r;
}

std::string query_line(const options& opt, const query_result& r) {
  std::ostringstream out;
  out << "BENCH query rows=" << r.rows << " devices=" << opt.devices
      << " metrics=" << opt.metrics << " days=" << opt.days
      << " queries=" << opt.queries
      << " points_per_query=" << r.points / opt.queries
      << " p50_ms=" << format(r.p50_ms, 2) << " p99_ms=" << format(r.p99_ms, 2)
      << " direct_p50_ms=" << format(r.direct_p50_ms, 2)
      << " direct_p99_ms=" << format(r.direct_p99_ms, 2) << " ratio_p99="
      << format(r.p99_ms / std::max(r.direct_p99_ms, 1e-9), 2)
      << " bare_p50_ms=" << format(r.bare_p50_ms, 2)
      << " bare_p99_ms=" << format(r.bare_p99_ms, 2)
      << " load_s=" << format(r.load_s, 1) << " load_rows_per_s="
      << static_cast<int64_t>(static_cast<double>(r.rows) / r.load_s);
  return out.str();
}

} // namespace

std::string query_usage() {
  return "usage: fleetd-bench query [--devices N] [--metrics M] [--days D] "
         "[--queries Q]\n"
         "  Loads D days (30) of hourly rollups for N devices (1000) x M "
         "metrics (100)\n  into a throwaway ClickHouse 18.16, then times Q "
         "queries (200) of one random\n  device and metric over the D days. "
         "Target: p99_ms <= 50.\n";
}

int run_query_bench(const std::vector<std::string>& args) {
  options opt;
  if (auto err = parse_args(args, opt); !err.empty()) {
    std::cerr << "fleetd-bench query: " << err << "\n" << query_usage();
    return 2;
  }
  auto r = run_query(opt);
  if (!r.error.empty()) {
    std::cerr << "fleetd-bench query: " << r.error << std::endl;
    return 1;
  }
  std::cout << query_line(opt, r) << std::endl;
  return 0;
}

query_result run_query(const query_options& opt) {
  try {
    return measure(opt);
  } catch (const bench_failure& f) {
    query_result r;
    r.error = f.what;
    return r;
  }
}

} // namespace fleetd::bench
