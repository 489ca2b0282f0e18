// The query API over the data stack's backends, through the real door
// (ingest_endpoint -> tenancy -> query actor -> routed source): steps under
// an hour from a real VictoriaMetrics, whole hours from a real ClickHouse's
// rollups, log lines from the Loki stand-in; each written by its sink. Org
// A's token never returns org B's series, rollups or lines, whatever the
// query text. Skips when VictoriaMetrics or ClickHouse cannot run here.
#include "cloud/routed_query_source.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <tuple>

#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "ch_fixture.hpp"
#include "cloud/clickhouse_query_source.hpp"
#include "cloud/embedded_query_source.hpp"
#include "cloud/loki_query_source.hpp"
#include "cloud/loki_sink.hpp"
#include "cloud/query.hpp"
#include "cloud/vm_query_source.hpp"
#include "cloud_fixture.hpp"
#include "helpers.hpp"
#include "messages/error.hpp"
#include "runtime/http_client.hpp"
#include "runtime/text.hpp"
#include "skip.hpp"
#include "support/loki_standin.hpp"
#include "tenancy_ops.hpp"
#include "vm_fixture.hpp"

using namespace fleetd;
using namespace std::chrono_literals;
using test::op;

namespace {

constexpr int64_t hour_ms = 3600 * 1000;
constexpr int64_t step_ms = 10 * 60 * 1000;

// Three whole hours ago: inside VictoriaMetrics' 1-day retention, far from
// its 30 s latency offset.
int64_t base_ms() {
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
               .count();
  return now / hour_ms * hour_ms - 3 * hour_ms;
}

std::string num(int64_t x) {
  return std::to_string(x);
}

// What the sinks read of an entry: its journal id, org and device.
journal_entry entry(int64_t id, const std::string& org,
                    const std::string& device) {
  journal_entry e;
  std::tie(e.id, e.org, e.device) = std::tie(id, org, device);
  return e;
}

// acme/dev: cpu{core=0} = i and cpu{core=1} = 100 + i at T + i * 10 min
// (i < 12: two hours); a line "acme line". zenith/dev and zenith/zdev (a
// device name of zenith's only): cpu{core=zenith} and secret = 987654 + i,
// lines "zenith line 987654".
journal_entries two_orgs(int64_t t) {
  journal_entries out;
  auto acme = entry(1, "acme", "dev");
  for (int i = 0; i < 12; ++i) {
    acme.samples.push_back({"cpu", {{"core", "0"}}, t + i * step_ms, 1.0 * i});
    acme.samples.push_back(
      {"cpu", {{"core", "1"}}, t + i * step_ms, 100.0 + i});
  }
  acme.logs.push_back({{{"source", "app"}}, (t + 1000) * 1'000'000, "acme line"});
  out.push_back(acme);
  int64_t id = 1;
  for (auto dev : {"dev", "zdev"}) {
    auto z = entry(++id, "zenith", dev);
    for (int i = 0; i < 12; ++i)
      for (auto name : {"cpu", "secret"})
        z.samples.push_back(
          {name, {{"core", "zenith"}}, t + i * step_ms, 987654.0 + i});
    z.logs.push_back(
      {{{"source", "app"}}, (t + 1000) * 1'000'000, "zenith line 987654"});
    out.push_back(z);
  }
  return out;
}

int databases = 0;

// The three backends, each written by its sink, and their readers.
struct stack {
  std::unique_ptr<vm_server> vm;
  test::ch_server* ch = nullptr;
  std::unique_ptr<test::loki_standin> loki;
  query_backends readers;
  int64_t t = base_ms();

  bool open(std::string& why) {
    vm = test::start_vm(why);
    if (vm)
      ch = test::shared_ch_server(why);
    if (!vm || !ch)
      return false;
    test::loki_standin_config lc;
    lc.now_ns = [t = t] { return (t + 3 * hour_ms) * 1'000'000; };
    loki = std::make_unique<test::loki_standin>(lc);
    auto port = loki->start();
    REQUIRE(port);
    vm_sink_config v;
    v.url = vm->url();
    clickhouse_config c;
    c.url = ch->url();
    c.database = "query_test_" + num(++databases);
    c.user = "fleetd";
    c.password = ch->password();
    loki_sink_config l;
    l.url = "http://127.0.0.1:" + num(*port);
    write(v, c, l);
    auto vr = open_vm_query_source(v);
    auto cr = open_clickhouse_query_source(c);
    auto lr = open_loki_query_source(l);
    REQUIRE(vr);
    REQUIRE(cr);
    REQUIRE(lr);
    readers.series = *vr;
    readers.hourly_series = *cr;
    readers.logs = *lr;
    return true;
  }

  void write(const vm_sink_config& v, const clickhouse_config& c,
             const loki_sink_config& l) {
    auto data = two_orgs(t);
    auto vs = make_vm_sink(v);
    auto cs = make_clickhouse_sink(c);
    auto ls = make_loki_sink(l);
    REQUIRE(vs);
    REQUIRE(cs);
    REQUIRE(ls);
    CHECK(!(*vs)->write(data));
    CHECK(!(*cs)->write(data));
    CHECK(!(*ls)->write(data));
    REQUIRE(!vm->flush());
    // New series become searchable a moment after the flush.
    series_query q{"zenith", "zdev", "secret", t, t + 2 * hour_ms, step_ms};
    auto src = open_vm_query_source(v);
    REQUIRE(src);
    CHECK(test::eventually(
      [&] {
        auto got = (*src)->series(q, 1000);
        return got && got->size() == 1 && got->front().points.size() == 12;
      },
      10s));
  }
};

struct door : test::cloud_fixture {
  tenancy_actor ten;
  query_actor qry;
  std::unique_ptr<http_client> client;
  std::string acme_token;
  std::string zenith_token;

  door(query_source_ptr source, int64_t now)
    : cloud_fixture("fleetd-routed-query", now) {
    auto db = embedded_tenancy::open(dir.file("tenancy.db"),
                                     std::string(64, 's'), clock);
    REQUIRE_MESSAGE(db, render(db.error()));
    auto tenants = std::make_shared<embedded_tenancy>(std::move(*db));
    for (auto org : {"acme", "zenith"})
      REQUIRE(tenants->run(op("org-create", org)));
    acme_token = tenants->run(op("api-token-create", "acme"))->secret;
    zenith_token = tenants->run(op("api-token-create", "zenith"))->secret;
    tenancy_config tcfg;
    tcfg.store = tenants;
    tcfg.clock = clock;
    ten = keep(sys->spawn<caf::detached>(tenancy, tcfg));
    query_config qcfg;
    qcfg.source = std::move(source);
    qcfg.max_range = 24h;
    qry = keep(sys->spawn<caf::detached>(query, qcfg));
    client = std::make_unique<http_client>(
      "127.0.0.1", open_query_door(ten, qry), 10s, 1 << 22);
  }

  ~door() {
    client.reset();
  }

  http_response get(const std::string& target, const std::string& token) {
    auto r = client->get(target, {{"Authorization", "Bearer " + token}});
    REQUIRE_MESSAGE(r, render(r.error()));
    return *r;
  }
};

// The store the routed source falls back to: an embedded one, empty.
query_source_ptr empty_store(test::scratch_dir& dir) {
  auto clock = std::make_shared<manual_clock>(0);
  REQUIRE(embedded_store::open(dir.file("cloud.db"), clock));
  auto s = open_embedded_query_source(dir.file("cloud.db"));
  REQUIRE(s);
  return *s;
}

std::string range(int64_t from, int64_t to) {
  return "&from=" + num(from) + "&to=" + num(to);
}

// The backends written, and the door in front of them; `door` is null when
// the case skips (skip() has been called then).
struct backends_case {
  stack s;
  test::scratch_dir dir{"fleetd-routed"};
  std::unique_ptr<door> d;

  backends_case() {
    std::string why;
    if (!s.open(why)) {
      test::skip(why);
      return;
    }
    s.readers.store = empty_store(dir);
    d = std::make_unique<door>(make_routed_query_source(s.readers),
                               s.t + 3 * hour_ms);
  }
};

} // namespace

TEST_CASE("whole hours go to the rollups, other steps to VictoriaMetrics, "
          "the store answers what no backend is configured for") {
  query_backends b;
  test::scratch_dir dir{"fleetd-route"};
  b.store = empty_store(dir);
  auto vm_cfg = vm_sink_config{};
  vm_cfg.url = "http://127.0.0.1:1";
  b.series = *open_vm_query_source(vm_cfg);
  clickhouse_config ch_cfg;
  ch_cfg.url = "http://127.0.0.1:1";
  b.hourly_series = *open_clickhouse_query_source(ch_cfg);
  auto h = hour_ms;
  CHECK(route(b, {"o", "d", "m", 0, 24 * h, h}) == b.hourly_series);
  CHECK(route(b, {"o", "d", "m", 5 * h, 29 * h, 3 * h}) == b.hourly_series);
  CHECK(route(b, {"o", "d", "m", 0, 24 * h, h - 1000}) == b.series);
  CHECK(route(b, {"o", "d", "m", 1, 24 * h, h}) == b.series);
  CHECK(route(b, {"o", "d", "m", 0, 24 * h + 1, h}) == b.series);
  CHECK(route(b, {"o", "d", "m", 0, 24 * h, 90 * 60 * 1000}) == b.series);
  auto only_store = b;
  only_store.series = nullptr;
  CHECK(route(only_store, {"o", "d", "m", 0, h, 1000}) == b.store);
  CHECK(route(only_store, {"o", "d", "m", 0, h, h}) == b.hourly_series);
  only_store.hourly_series = nullptr;
  CHECK(route(only_store, {"o", "d", "m", 0, h, h}) == b.store);
  // Without any backend the store is the source itself.
  CHECK(make_routed_query_source({b.store, {}, {}, {}}) == b.store);
}

TEST_CASE("VictoriaMetrics is read on the single node, or through vmselect "
          "in the org's own tenant") {
  vm_sink_config single;
  single.url = "http://vm:8428/prefix";
  auto t = vm_query_target(single, "acme");
  REQUIRE(t);
  CHECK(t->host == "vm");
  CHECK(t->path == "/prefix/api/v1/query_range");
  vm_sink_config cluster;
  cluster.url = "http://vminsert:8480/insert/{tenant}/prometheus";
  cluster.tenants = "acme=7,zenith=8:2";
  // Without a vmselect URL nothing can be read: the store answers.
  CHECK(vm_query_target(cluster, "acme").error() == ec::bad_config);
  auto none = open_vm_query_source(cluster);
  REQUIRE(none);
  CHECK(*none == nullptr);
  cluster.select_url = "https://vmselect:8481/select/{tenant}/prometheus";
  t = vm_query_target(cluster, "zenith");
  REQUIRE(t);
  CHECK(t->tls);
  CHECK(t->port == 8481);
  CHECK(t->path == "/select/8:2/prometheus/api/v1/query_range");
  // An org without a tenant holds nothing there; it is never read elsewhere.
  CHECK(vm_query_target(cluster, "other").error() == ec::invalid_record);
}

TEST_CASE("hostile text stays inside the selectors' strings") {
  CHECK(vm_selector("cpu", "dev") == R"({__name__="cpu",device_id="dev"})");
  CHECK(vm_selector("c\"}or{x=\"", "d\\")
        == R"({__name__="c\"}or{x=\"",device_id="d\\"})");
  CHECK(query_string(std::string{"a\nb\x01\x7f\"", 6})
        == R"("a\nb\x01\x7f\"")");
  CHECK(vm_device_label("org_id").empty());
  CHECK(vm_device_label("device_id").empty());
  CHECK(vm_device_label("exported_org_id") == "org_id");
  CHECK(vm_device_label("exported_exported_device_id")
        == "exported_device_id");
  CHECK(vm_device_label("exported_core") == "exported_core");
  CHECK(vm_device_label("core") == "core");
}

TEST_CASE("the query API answers from VictoriaMetrics, ClickHouse rollups "
          "and Loki, each exactly as the store would") {
  backends_case c;
  if (!c.d)
    return;
  auto& d = *c.d;
  auto t = c.s.t;
  // 10 min steps: one sample each, from VictoriaMetrics.
  auto fine = d.get("/v1/query?metric=cpu&device=dev&step=10m"
                      + range(t, t + 2 * hour_ms),
                    d.acme_token);
  REQUIRE_MESSAGE(fine.status == 200, fine.body);
  CHECK(fine.body.find("{\"labels\":{\"core\":\"0\"},\"points\":[[" + num(t)
                       + ",0],[" + num(t + step_ms) + ",1],")
        != std::string::npos);
  // 25 min steps, the last one shorter (it ends at `to`, 45 min): the
  // samples at 0, 10, 20 min, then at 30 and 40 min.
  auto odd = d.get("/v1/query?metric=cpu&device=dev&step=25m&agg=sum"
                     + range(t, t + 45 * 60 * 1000),
                   d.acme_token);
  CHECK_MESSAGE(odd.body.find("[[" + num(t) + ",3],[" + num(t + 25 * 60000)
                                + ",7]]")
                  != std::string::npos,
                odd.body);
  // Whole hours from the rollups: avg = sum / count per hour and per 2 h.
  for (auto [agg, want] :
       {std::pair{"avg", ",2.5],[" + num(t + hour_ms) + ",8.5]]"},
        std::pair{"sum", ",15],[" + num(t + hour_ms) + ",51]]"},
        std::pair{"count", ",6],[" + num(t + hour_ms) + ",6]]"},
        std::pair{"min", ",0],[" + num(t + hour_ms) + ",6]]"},
        std::pair{"max", ",5],[" + num(t + hour_ms) + ",11]]"}}) {
    auto r = d.get("/v1/query?metric=cpu&device=dev&step=1h&agg="
                     + std::string{agg} + range(t, t + 3 * hour_ms),
                   d.acme_token);
    CAPTURE(agg);
    CHECK_MESSAGE(r.body.find("\"core\":\"0\"},\"points\":[[" + num(t) + want)
                    != std::string::npos,
                  r.body);
  }
  auto two = d.get("/v1/query?metric=cpu&device=dev&step=2h"
                     + range(t, t + 2 * hour_ms),
                   d.acme_token);
  CHECK(two.body.find("\"points\":[[" + num(t) + ",5.5]]") != std::string::npos);
  CHECK(two.body.find("\"points\":[[" + num(t) + ",105.5]]")
        != std::string::npos);
  auto logs = d.get("/v1/logs?device=dev" + range(t, t + hour_ms),
                    d.acme_token);
  REQUIRE_MESSAGE(logs.status == 200, logs.body);
  CHECK(logs.body.find("{\"labels\":{\"source\":\"app\"},\"lines\":[["
                       + num((t + 1000) * 1'000'000) + ",\"acme line\"]]}")
        != std::string::npos);
}

TEST_CASE("an org's token never returns another org's series, rollups or "
          "lines from the backends, whatever the query text") {
  backends_case c;
  if (!c.d)
    return;
  auto& d = *c.d;
  auto r = range(c.s.t, c.s.t + 2 * hour_ms);
  // zenith's own token sees its rows everywhere: the checks below can fail.
  for (auto step : {"10m", "1h"})
    CHECK(d.get("/v1/query?metric=secret&device=zdev&step=" + std::string{step}
                  + r,
                d.zenith_token)
            .body.find("9876")
          != std::string::npos);
  CHECK(d.get("/v1/logs?device=zdev" + r, d.zenith_token)
          .body.find("zenith line")
        != std::string::npos);
  const std::string metrics[] = {
    "cpu", "secret", R"(cpu"})", R"(cpu",org_id="zenith)",
    R"(cpu"} or {org_id="zenith"} or {__name__=")",
    R"(secret",device_id=~".*)", "cpu\\", "cpu\\\"", "cpu\n",
    R"({org_id="zenith"})", "cpu' OR '1'='1", R"(cpu\' OR 1=1 --)",
    "cpu)[1h]) or secret[1h", "*",
  };
  const std::string devices[] = {"dev", "zdev", "zenith", "d_v", ".."};
  for (auto& m : metrics)
    for (auto& dev : devices) {
      for (std::string step : {"10m", "1h", "90m"}) {
        auto got = d.get("/v1/query?metric=" + url_escape(m) + "&device="
                           + dev + "&step=" + step + r,
                         d.acme_token);
        CAPTURE(m);
        CAPTURE(dev);
        CAPTURE(step);
        CHECK_MESSAGE((got.status == 200 || got.status == 400), got.body);
        CHECK(got.body.find("9876") == std::string::npos);
        CHECK(got.body.find("\"core\":\"zenith\"") == std::string::npos);
      }
    }
  for (auto& dev : devices) {
    auto lines = d.get("/v1/logs?device=" + dev + r, d.acme_token);
    CHECK((lines.status == 200 || lines.status == 400));
    CHECK(lines.body.find("zenith line") == std::string::npos);
  }
}
