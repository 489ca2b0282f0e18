// The query API through the real door (ingest_endpoint -> tenancy -> query
// actor -> store source), on the embedded store and PostgreSQL (behind
// PgBouncer): values aggregated per step, API tokens (401s counted), bad
// parameters (400s counted), and tenant isolation: two orgs with a device
// of the same name, hostile query text, and org A's token never returns
// org B's series or lines. The PostgreSQL cases skip when no server can run.
#include "cloud/query.hpp"

#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "cloud/embedded_query_source.hpp"
#include "cloud/embedded_store.hpp"
#include "cloud/embedded_tenancy.hpp"
#include "cloud/ingest_endpoint.hpp"
#include "cloud/pg_query_source.hpp"
#include "cloud/pg_store.hpp"
#include "cloud/pg_tenancy.hpp"
#include "cloud/tenancy.hpp"
#include "cloud_fixture.hpp"
#include "contract_case.hpp"
#include "messages/error.hpp"
#include "messages/wire.hpp"
#include "check_samples.hpp"
#include "pg_fixture.hpp"
#include "pg_schema.hpp"
#include "runtime/http_client.hpp"
#include "skip.hpp"
#include "tenancy_ops.hpp"

using namespace fleetd;
using namespace std::chrono_literals;
using test::op;
using test::sample;

namespace {

constexpr int64_t t0 = 1'700'000'000'000;
const std::string secret(64, 'q');

// The stores of one backend over one database.
struct backend {
  virtual ~backend() = default;
  virtual std::shared_ptr<cloud_store_backend> store() = 0;
  virtual std::shared_ptr<tenancy_backend> tenants() = 0;
  virtual query_source_ptr source() = 0;
  std::shared_ptr<manual_clock> clock = std::make_shared<manual_clock>(t0);
};

struct embedded_backend : backend {
  test::scratch_dir dir{"fleetd-query"};
  std::shared_ptr<cloud_store_backend> store() override {
    auto st = embedded_store::open(dir.file("cloud.db"), clock);
    REQUIRE_MESSAGE(st, render(st.error()));
    return std::make_shared<embedded_store>(std::move(*st));
  }
  std::shared_ptr<tenancy_backend> tenants() override {
    auto t = embedded_tenancy::open(dir.file("tenancy.db"), secret, clock);
    REQUIRE_MESSAGE(t, render(t.error()));
    return std::make_shared<embedded_tenancy>(std::move(*t));
  }
  query_source_ptr source() override {
    auto s = open_embedded_query_source(dir.file("cloud.db"));
    REQUIRE_MESSAGE(s, render(s.error()));
    return *s;
  }
};

struct pg_backend : backend {
  std::string why;
  std::optional<test::pg_database> db
    = test::migrated_pg_database("query", why);
  std::shared_ptr<cloud_store_backend> store() override {
    auto st = pg_store::open(db->pooled_url, clock, test::pooled_options());
    REQUIRE_MESSAGE(st, render(st.error()));
    return std::make_shared<pg_store>(std::move(*st));
  }
  std::shared_ptr<tenancy_backend> tenants() override {
    auto t = pg_tenancy::open(db->pooled_url, secret, clock,
                              test::pooled_options());
    REQUIRE_MESSAGE(t, render(t.error()));
    return std::make_shared<pg_tenancy>(std::move(*t));
  }
  query_source_ptr source() override {
    auto s = open_pg_query_source(db->pooled_url, test::pooled_options());
    REQUIRE_MESSAGE(s, render(s.error()));
    return *s;
  }
};


void write(cloud_store_backend& st, const std::string& device_id,
           const char* stream, metric_samples xs, log_lines logs = {}) {
  ingest_batch b;
  b.device_id = device_id;
  b.stream = stream;
  b.epoch = "e1";
  b.sequence = 1;
  b.samples = std::move(xs);
  b.logs = std::move(logs);
  auto r = st.write(b);
  REQUIRE_MESSAGE(r, render(r.error()));
}

// acme/dev: cpu{core=0} = i and cpu{core=1} = 100 + i at t0 + i s (i < 10);
// weird: NaN at t0, +Inf at t0 + 5 s; two log lines. zenith/dev (same
// device name): the same metrics, values and lines that say "zenith".
void load(cloud_store_backend& st) {
  metric_samples acme;
  metric_samples zenith;
  for (int i = 0; i < 10; ++i) {
    acme.push_back(sample("cpu", {{"core", "0"}}, t0 + i * 1000, i));
    acme.push_back(sample("cpu", {{"core", "1"}}, t0 + i * 1000, 100 + i));
    zenith.push_back(sample("cpu", {{"core", "zenith"}}, t0 + i * 1000,
                            987654 + i));
  }
  acme.push_back(sample("weird", {}, t0,
                        std::numeric_limits<double>::quiet_NaN()));
  acme.push_back(sample("weird", {}, t0 + 5000,
                        std::numeric_limits<double>::infinity()));
  zenith.push_back(sample("weird", {{"zenith", "1"}}, t0, 987654));
  write(st, "acme/dev", metrics_stream, acme);
  write(st, "zenith/dev", metrics_stream, zenith);
  auto ns = [](int64_t ms) { return ms * 1'000'000; };
  write(st, "acme/dev", logs_stream, {},
        {{{{"source", "app"}}, ns(t0 + 1000), "first \"line\""},
         {{{"source", "sys"}}, ns(t0 + 2000), "second"}});
  write(st, "zenith/dev", logs_stream, {},
        {{{{"source", "app"}}, ns(t0 + 1000), "zenith line"}});
}

struct query_fixture : test::cloud_fixture {
  backend& be;
  tenancy_actor ten;
  query_actor qry;
  std::unique_ptr<http_client> client;
  std::string acme_token;
  std::string zenith_token;

  explicit query_fixture(backend& be)
    : cloud_fixture("fleetd-query-fx", t0), be(be) {
    auto tenants = be.tenants();
    for (auto org : {"acme", "zenith"}) {
      auto made = tenants->run(op("org-create", org));
      REQUIRE_MESSAGE(made, render(made.error()));
    }
    load(*be.store());
    acme_token = tenants->run(op("api-token-create", "acme"))->secret;
    zenith_token = tenants->run(op("api-token-create", "zenith"))->secret;
    tenancy_config tcfg;
    tcfg.store = tenants;
    tcfg.clock = clock;
    tcfg.cache_ttl = 0ms;
    ten = keep(sys->spawn<caf::detached>(tenancy, tcfg));
    query_config qcfg;
    qcfg.source = be.source();
    qcfg.max_points = 15;
    qcfg.max_range = 24h;
    qcfg.max_log_lines = 100;
    qry = keep(sys->spawn<caf::detached>(query, qcfg));
    client = std::make_unique<http_client>(
      "127.0.0.1", open_query_door(ten, qry), 10s, 1 << 22);
  }

  ~query_fixture() {
    client.reset();
  }

  http_response get(const std::string& target, const std::string& token) {
    std::vector<std::pair<std::string, std::string>> headers;
    if (!token.empty())
      headers.emplace_back("Authorization", "Bearer " + token);
    auto r = client->get(target, headers);
    REQUIRE_MESSAGE(r, render(r.error()));
    return *r;
  }

  int64_t counter(const std::string& name, bool of_tenancy) {
    actor_stats out;
    auto hdl = of_tenancy ? caf::actor_cast<caf::actor>(ten)
                          : caf::actor_cast<caf::actor>(qry);
    (*self)->request(hdl, 5s, stats_atom::value)
      .receive([&](actor_stats& x) { out = std::move(x); },
               [&](caf::error& err) { FAIL(render(err)); });
    auto i = out.counters.find(name);
    return i == out.counters.end() ? 0 : i->second;
  }
};

std::string range(int64_t from, int64_t to) {
  return "&from=" + std::to_string(from) + "&to=" + std::to_string(to);
}

using contract = void (*)(query_fixture&);

void run_embedded(contract fn) {
  embedded_backend be;
  query_fixture f{be};
  fn(f);
}

void run_pg(contract fn) {
  pg_backend be;
  if (!be.db)
    return test::skip(be.why);
  query_fixture f{be};
  fn(f);
}

void aggregates_per_step(query_fixture& f) {
  auto T = std::to_string(t0);
  auto T5 = std::to_string(t0 + 5000);
  auto r = f.get("/v1/query?metric=cpu&device=dev&step=5s"
                   + range(t0, t0 + 10000),
                 f.acme_token);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  CHECK(r.content_type == "application/json");
  // avg of 0..4 and 5..9, then of 100..104 and 105..109.
  CHECK(r.body
        == "{\"org\":\"acme\",\"device\":\"dev\",\"metric\":\"cpu\",\"from\":"
             + T + ",\"to\":" + std::to_string(t0 + 10000)
             + ",\"step_ms\":5000,\"agg\":\"avg\",\"series\":[{\"labels\":{"
               "\"core\":\"0\"},\"points\":[["
             + T + ",2],[" + T5 + ",7]]},{\"labels\":{\"core\":\"1\"},"
             "\"points\":[[" + T + ",102],[" + T5 + ",107]]}]}\n");
  auto sum = f.get("/v1/query?metric=cpu&device=dev&step=5000&agg=sum"
                     + range(t0, t0 + 10000),
                   f.acme_token);
  CHECK(sum.body.find("[[" + T + ",10],[" + T5 + ",35]]") != std::string::npos);
  auto count = f.get("/v1/query?metric=cpu&device=dev&step=1m&agg=count"
                       + range(t0, t0 + 10000),
                     f.acme_token);
  CHECK(count.body.find("[[" + T + ",10]]") != std::string::npos);
  auto mx = f.get("/v1/query?metric=cpu&device=dev&step=3s&agg=max"
                    + range(t0 + 1000, t0 + 7000),
                  f.acme_token);
  // Steps from `from`: 1..3, 4..6.
  CHECK(mx.body.find("[[" + std::to_string(t0 + 1000) + ",3],["
                     + std::to_string(t0 + 4000) + ",6]]")
        != std::string::npos);
  // NaN is left out of a step (none left: "NaN"); infinities as strings.
  auto weird = f.get("/v1/query?metric=weird&device=dev&step=5s"
                       + range(t0, t0 + 10000),
                     f.acme_token);
  CHECK_MESSAGE(weird.body.find("[[" + T + ",\"NaN\"],[" + T5 + ",\"+Inf\"]]")
                  != std::string::npos,
                weird.body);
  auto logs = f.get("/v1/logs?device=dev" + range(t0, t0 + 10000),
                    f.acme_token);
  REQUIRE_MESSAGE(logs.status == 200, logs.body);
  CHECK(logs.body.find("{\"labels\":{\"source\":\"app\"},\"lines\":[["
                       + std::to_string(t0 + 1000) + "000000,"
                       "\"first \\\"line\\\"\"]]}")
        != std::string::npos);
  CHECK(logs.body.find("\"second\"") != std::string::npos);
  auto one = f.get("/v1/logs?device=dev&limit=1" + range(t0, t0 + 10000),
                   f.acme_token);
  CHECK(one.body.find("\"truncated\":true") != std::string::npos);
  CHECK(one.body.find("second") == std::string::npos);
  CHECK(f.counter("queries", false) == 5);
  CHECK(f.counter("log_queries", false) == 2);
}

void tokens_required(query_fixture& f) {
  auto target = "/v1/query?metric=cpu&device=dev&step=5s"
                + range(t0, t0 + 10000);
  auto none = f.get(target, "");
  CHECK(none.status == 401);
  CHECK(none.error.rfind("missing_key", 0) == 0);
  CHECK(f.get(target, "fqt_" + std::string(64, '0')).status == 401);
  // A device key's shape is no API token.
  CHECK(f.get(target, "fdk_" + f.acme_token.substr(4)).status == 401);
  CHECK(f.get(target, std::string(4000, 'x')).status == 401);
  CHECK(f.get(target, f.acme_token).status == 200);
  auto tenants = f.be.tenants();
  auto listed = tenants->run(op("api-token-list", "acme"));
  REQUIRE(listed);
  REQUIRE(tenants->run(op("api-token-revoke", "acme", listed->rows[0][1])));
  auto revoked = f.get(target, f.acme_token);
  CHECK(revoked.status == 401);
  CHECK(revoked.error.rfind("revoked_key", 0) == 0);
  CHECK(f.counter("api_auth_missing_key", true) == 1);
  CHECK(f.counter("api_auth_unknown_key", true) == 3);
  CHECK(f.counter("api_auth_revoked_key", true) == 1);
  CHECK(f.counter("api_auth_ok", true) == 1);
  CHECK(f.counter("queries", false) == 1);
}

void bad_parameters(query_fixture& f) {
  auto r = range(t0, t0 + 10000);
  const std::string bad[] = {
    "/v1/query?device=dev&step=5s" + r,
    "/v1/query?metric=cpu&step=5s" + r,
    "/v1/query?metric=cpu&device=dev" + r,
    "/v1/query?metric=cpu&device=dev&step=999ms" + r,
    "/v1/query?metric=cpu&device=dev&step=0" + r,
    "/v1/query?metric=cpu&device=dev&step=-5s" + r,
    "/v1/query?metric=cpu&device=dev&step=5parsecs" + r,
    "/v1/query?metric=cpu&device=dev&step=99999999999999999999" + r,
    "/v1/query?metric=cpu&device=dev&step=5s" + range(t0, t0),
    "/v1/query?metric=cpu&device=dev&step=5s" + range(t0 + 1, t0),
    "/v1/query?metric=cpu&device=dev&step=5s&from=x&to=1",
    "/v1/query?metric=cpu&device=dev&step=1h" + range(0, t0),
    "/v1/query?metric=cpu&device=dev&step=1s" + range(t0, t0 + 31000),
    "/v1/query?metric=" + std::string(257, 'm') + "&device=dev&step=5s" + r,
    "/v1/query?metric=a%00b&device=dev&step=5s" + r,
    "/v1/query?metric=a%ff&device=dev&step=5s" + r,
    "/v1/query?metric=a%zz&device=dev&step=5s" + r,
    "/v1/query?metric=a%2&device=dev&step=5s" + r,
    "/v1/query?metric=cpu&metric=cpu&device=dev&step=5s" + r,
    "/v1/query?metric=cpu&device=dev&step=5s&org=zenith" + r,
    "/v1/query?metric=cpu&device=dev&step=5s&agg=median" + r,
    "/v1/query?metric=cpu&device=zenith%2Fdev&step=5s" + r,
    "/v1/query?metric=cpu&device=" + std::string(65, 'd') + "&step=5s" + r,
    "/v1/logs?device=dev&limit=0" + r,
    "/v1/logs?device=dev&limit=101" + r,
    "/v1/logs?device=dev&metric=cpu" + r,
  };
  for (auto& target : bad) {
    CAPTURE(target.substr(0, 120));
    auto got = f.get(target, f.acme_token);
    CHECK(got.status == 400);
    CHECK(got.error.rfind("bad_request: ", 0) == 0);
    CHECK(got.body.size() < 400);
  }
  CHECK(f.counter("bad_request", false) == std::size(bad));
  // More stored points than query.max-points (15): 413.
  auto many = f.get("/v1/query?metric=cpu&device=dev&step=1s"
                      + range(t0, t0 + 10000),
                    f.acme_token);
  CHECK(many.status == 413);
  CHECK(f.counter("too_many_points", false) == 1);
}

// Whatever acme's token asks, nothing of zenith's comes back; zenith's own
// token sees its own rows (so the check can fail).
void orgs_kept_apart(query_fixture& f) {
  auto r = range(t0, t0 + 10000);
  auto own = f.get("/v1/query?metric=cpu&device=dev&step=5s" + r,
                   f.zenith_token);
  REQUIRE(own.status == 200);
  CHECK(own.body.find("987656") != std::string::npos);
  CHECK(f.get("/v1/logs?device=dev" + r, f.zenith_token).body.find("zenith")
        != std::string::npos);
  const std::string metrics[] = {
    "cpu", "cpu'--", "cpu' OR '1'='1", "%25", "_", "%25cpu%25", "c_u",
    "cpu%27%3B%20DROP%20TABLE%20points%3B--", "weird", "%2A",
    "cpu%22%29%20OR%20TRUE%20--", "zenith/cpu", "..%2F..%2Fcpu",
    std::string(256, 'c'), "%E2%80%AE", "\\", "cpu%5C%27", "cpu%00",
    "%ff", std::string(300, 'c'),
  };
  const std::string devices[] = {"dev", "%25", "_", "d_v", "dev%25", "..",
                                 "zenith", "dev.", "-", "dev%00",
                                 "zenith%2Fdev", std::string(65, 'd')};
  for (auto& m : metrics)
    for (auto& d : devices) {
      for (auto agg : {"avg", "count"}) {
        auto got = f.get("/v1/query?metric=" + m + "&device=" + d
                           + "&step=5s&agg=" + agg + r,
                         f.acme_token);
        CAPTURE(m.substr(0, 40));
        CAPTURE(d);
        CHECK((got.status == 200 || got.status == 400));
        CHECK(got.body.find("\"core\":\"zenith\"") == std::string::npos);
        CHECK(got.body.find("{\"zenith\":") == std::string::npos);
        CHECK(got.body.find("9876") == std::string::npos);
        CHECK(got.body.find("\"org\":\"zenith\"") == std::string::npos);
      }
      auto lines = f.get("/v1/logs?device=" + d + r, f.acme_token);
      CHECK(lines.body.find("zenith line") == std::string::npos);
    }
}

} // namespace

CONTRACT_CASE("the query API answers a device's metric aggregated per step "
              "and its log lines, as JSON",
              aggregates_per_step)
CONTRACT_CASE("no, an unknown or a revoked API token is 401, counted",
              tokens_required)
CONTRACT_CASE("every bad or unbounded parameter is 400 naming it, counted; "
              "too many stored points 413",
              bad_parameters)
CONTRACT_CASE("an org's token never returns another org's series or lines, "
              "whatever the query text",
              orgs_kept_apart)
