// The query API of a real fleetd-cloud whose sinks write a real
// VictoriaMetrics, a real ClickHouse and the Loki stand-in: a device syncs,
// then whole-hour steps answer from ClickHouse's rollups (counts per series
// equal to the device's own points) and logs from Loki (every line the
// device wrote), through open_parts' routed source; another org's token
// gets none of it, whatever the query text. Skips without the servers.
#include <map>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "ch_fixture.hpp"
#include "helpers.hpp"
#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "runtime/http_client.hpp"
#include "messages/json_reader.hpp"
#include "runtime/text.hpp"
#include "skip.hpp"
#include "support.hpp"
#include "support/loki_standin.hpp"
#include "vm_fixture.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr int64_t rounds = 4;
constexpr int64_t lines_per_round = 3;
constexpr int64_t hour_ms = 3600 * 1000;
constexpr const char* metric = "fleetd_load_value";

// Per label set: the device's points of `metric`; and their time span.
struct device_counts {
  std::map<label_map, int64_t> points;
  int64_t from = INT64_MAX;
  int64_t to = 0;
};

// device_points lines: "name{HEX(labels)} ts bits".
device_counts count_points(const std::string& dev_db) {
  device_counts out;
  for (auto& r : device_points(dev_db)) {
    auto a = r.find('{');
    auto b = r.find("} ", a);
    if (r.substr(0, a) != metric)
      continue;
    ++out.points[decode_labels(unhex(r.substr(a + 1, b - a - 1)))];
    int64_t ts = std::stoll(r.substr(b + 2, r.find(' ', b + 2) - b - 2));
    out.from = std::min(out.from, ts);
    out.to = std::max(out.to, ts + 1);
  }
  return out;
}

// Per label set: the sum of an answer's points (agg=count).
std::map<label_map, int64_t> counted(const std::string& body) {
  std::map<label_map, int64_t> out;
  std::string why;
  auto doc = parse_json(body, why);
  REQUIRE_MESSAGE(doc, why);
  auto* series = json_member(*doc, "series");
  REQUIRE(series);
  for (auto& s : series->items) {
    label_map labels;
    for (auto& [k, v] : json_member(s, "labels")->members)
      labels[k] = v.text;
    for (auto& p : json_member(s, "points")->items)
      out[labels] += std::stoll(p.items[1].text);
  }
  return out;
}

struct api {
  http_client client;
  std::string dir;
  api(uint16_t port, std::string d)
    : client("127.0.0.1", port, 10s, 8 << 20), dir(std::move(d)) {
  }
  http_response get(const std::string& target, const std::string& org) {
    auto token = read_file(dir + "/" + org + ".token");
    token = token.substr(0, token.find('\n'));
    auto r = client.get(target, {{"Authorization", "Bearer " + token}});
    REQUIRE_MESSAGE(r, render(r.error()));
    return *r;
  }
};

std::vector<std::string> device_args(const std::string& dir, uint16_t port,
                                     const std::string& enroll) {
  return {"--node.data-dir=" + dir, "--device.id=dev",
          "--cloud.port=" + std::to_string(port),
          "--cloud.enroll-token=" + enroll, "--console.port=0",
          "--collector.rounds=1", "--load.series=3", "--load.interval=150ms",
          "--load.rounds=" + std::to_string(rounds),
          "--load.log-lines=" + std::to_string(lines_per_round),
          "--load.event-every=2", "--sync.interval=50ms", "--sync.backoff-base=20ms",
          "--sync.backoff-cap=300ms"};
}

// A fleetd-cloud whose three sinks write the servers, orgs acme and zenith
// with API tokens (<tmp>/<org>.token), and acme's device "dev" synced.
struct synced_node {
  std::unique_ptr<vm_server> vm;
  ch_server* ch = nullptr;
  loki_standin loki;
  temp_dir tmp;
  std::unique_ptr<process> cloud;
  std::unique_ptr<process> device;
  uint16_t ingest = 0;

  // False (with `why`) when a server cannot run here.
  bool start(std::string& why) {
    vm = start_vm(why);
    ch = vm ? shared_ch_server(why) : nullptr;
    if (!vm || !ch)
      return false;
    auto loki_port = loki.start();
    REQUIRE(loki_port);
    auto cloud_dir = tmp.path() + "/cloud";
    cloud = std::make_unique<process>(
      program("fleetd-cloud"),
      std::vector<std::string>{
        "--node.data-dir=" + cloud_dir, "--ingest.port=0", "--console.port=0",
        "--sinks.victoria.url=" + vm->url(),
        "--sinks.clickhouse.url=" + ch->url(),
        "--sinks.loki.url=http://127.0.0.1:" + std::to_string(*loki_port)},
      tmp.path() + "/cloud.log");
    ingest = port_from(cloud_dir + "/ingest.port");
    auto console = port_from(cloud_dir + "/console.port");
    REQUIRE_MESSAGE(ingest != 0, read_file(tmp.path() + "/cloud.log"));
    for (auto org : {"acme", "zenith"}) {
      REQUIRE(fleetctl(tmp.path(), console, {"org", "create", org}).first == 0);
      write_file(tmp.path() + "/" + org + ".token",
                 fleetctl_secret(tmp.path(), console,
                                 {"token", "create", "--org", org}));
    }
    sync_device(console);
    return true;
  }

  void sync_device(uint16_t console) {
    auto enroll = fleetctl_secret(tmp.path(), console,
                                  {"enroll", "create", "--org", "acme"});
    auto dir = tmp.path() + "/device";
    device = std::make_unique<process>(program("fleetd"),
                                       device_args(dir, ingest, enroll),
                                       tmp.path() + "/device.log");
    auto dev_console = port_from(dir + "/console.port");
    REQUIRE(dev_console != 0);
    REQUIRE_MESSAGE(device_synced_all(dev_console, dir + "/fleetd.db", rounds,
                                      30s),
                    read_file(tmp.path() + "/device.log"));
  }
};

} // namespace

TEST_CASE("fleetd-cloud answers whole hours from ClickHouse rollups and logs "
          "from Loki, only to the data's org") {
  synced_node n;
  std::string why;
  if (!n.start(why))
    return skip(why);
  auto& tmp = n.tmp;
  auto& loki = n.loki;
  auto* ch = n.ch;
  auto ingest = n.ingest;
  auto dev_dir = tmp.path() + "/device";
  auto want = count_points(dev_dir + "/fleetd.db");
  REQUIRE(want.points.size() == 3);
  // Whole hours around the device's points: ClickHouse answers.
  auto from = want.from / hour_ms * hour_ms;
  auto to = (want.to + hour_ms - 1) / hour_ms * hour_ms;
  auto range = "&from=" + std::to_string(from) + "&to=" + std::to_string(to);
  api q{ingest, tmp.path()};
  auto hours = "/v1/query?metric=" + std::string{metric}
               + "&device=dev&step=1h&agg=count" + range;
  CHECK_MESSAGE(eventually([&] {
                  auto r = q.get(hours, "acme");
                  return r.status == 200 && counted(r.body) == want.points;
                }, 30s),
                q.get(hours, "acme").body);
  auto lines = "/v1/logs?device=dev&limit=5000" + range;
  auto line_count = [&](const std::string& org) {
    auto body = q.get(lines, org).body;
    size_t n = 0;
    for (auto at = body.find("\"lines\":["); at != std::string::npos;
         at = body.find(",[", at + 1))
      ++n;
    return body.find("\"streams\":[]") != std::string::npos ? 0 : n;
  };
  CHECK(eventually([&] {
    return line_count("acme") == static_cast<size_t>(rounds * lines_per_round);
  }, 30s));
  // zenith's token: nothing, whatever the text names.
  for (std::string m : {std::string{metric}, std::string{metric} + "\"} or {org_id=\"acme\"",
                        std::string{metric} + "' OR '1'='1"}) {
    auto r = q.get("/v1/query?metric=" + url_escape(m)
                     + "&device=dev&step=1h&agg=count" + range,
                   "zenith");
    CHECK(r.status == 200);
    CHECK(r.body.find("\"series\":[]") != std::string::npos);
  }
  CHECK(line_count("zenith") == 0);
  // The answers came from the backends, not from the node's store: Loki
  // answered the log queries, and without ClickHouse hours fail (503)
  // while logs still answer.
  CHECK(read_file(tmp.path() + "/cloud.log")
          .find("query API reads routed(store embedded, series victoria, "
                "hourly clickhouse, logs loki)")
        != std::string::npos);
  CHECK(loki.answered(200) > 0);
  ch->stop();
  CHECK(q.get(hours, "acme").status == 503);
  CHECK(q.get(lines, "acme").status == 200);
  ch_server::failure failed;
  REQUIRE_MESSAGE(ch->restart(failed), failed.why);
  CHECK(q.get(hours, "acme").status == 200);
}
