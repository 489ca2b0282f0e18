// The web console's request handling without a browser: bounded query
// parameters, org scoping of the overview, the delivery ratio, and what a
// hostile path or a missing token gets (the browser test is
// tests/integration/web_console_test.cpp).
#include <optional>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include <doctest/doctest.h>

#include "cloud/web_console.hpp"
#include "messages/json_reader.hpp"
#include "messages/prom_text.hpp"
#include "runtime/clock.hpp"
#include "json_checks.hpp"

using namespace fleetd;
using namespace fleetd::test;

namespace {

device_info stream_of(const std::string& id, const std::string& stream,
                      int64_t tier, int64_t seen, int64_t points) {
  device_info d;
  d.device_id = id;
  d.stream = stream;
  d.capability.tier = tier;
  d.last_seen_ms = seen;
  d.points_received = points;
  d.batches_received = 1;
  return d;
}

// What the console answered a request, when it answered at once.
struct answer {
  bool routed = false;
  std::optional<http_reply> reply;
};

answer ask(web_console& web, const std::string& method,
           const std::string& target, const std::string& auth = "") {
  http_request req;
  req.method = method;
  req.target = target;
  req.authorization = auth;
  answer out;
  http_server::respond_fn respond = [&out](http_reply rep) {
    out.reply = std::move(rep);
  };
  out.routed = web.route(req, respond);
  return out;
}

} // namespace

TEST_CASE("console query parameters are bounded and checked") {
  auto ok = parse_console_query("device=dev-1.a&hours=48&online_s=60");
  REQUIRE(ok);
  CHECK(ok->device == "dev-1.a");
  CHECK(ok->hours == 48);
  CHECK(ok->online_s == 60);
  CHECK(parse_console_query("")->hours == 24);
  for (auto bad : {"device=../etc", "device=a%2fb", "device=", "hours=0",
                   "hours=721", "hours=1e3", "hours=-1", "hours=9999999999",
                   "online_s=5", "nope=1", "device=a&device=b", "device=%zz",
                   "a&b&c&d&e&f&g&h&i"}) {
    CHECK_MESSAGE(!parse_console_query(bad), bad);
  }
  CHECK(!parse_console_query("device=" + std::string(129, 'a')));
  CHECK(!parse_console_query(std::string(600, 'x')));
}

TEST_CASE("the overview shows only the token's org, by tier and online") {
  int64_t now = 1'000'000'000;
  device_infos xs = {stream_of("acme/a", "metrics", 2, now - 1000, 10),
                     stream_of("acme/a", "logs", 2, now - 9000, 5),
                     stream_of("acme/b", "metrics", 1, now - 600'000, 7),
                     stream_of("zenith/c", "metrics", 3, now, 99),
                     stream_of("acme", "metrics", 3, now, 99),
                     stream_of("acmex/d", "metrics", 3, now, 99)};
  auto doc = parsed(overview_json("acme", xs, now, 300'000));
  CHECK(member(doc, "devices_total").text == "2");
  CHECK(member(doc, "online").text == "1");
  CHECK(member(doc, "offline").text == "1");
  CHECK(member(member(doc, "tiers"), "1").text == "1");
  CHECK(member(member(doc, "tiers"), "2").text == "1");
  auto& devices = member(doc, "devices").items;
  REQUIRE(devices.size() == 2);
  CHECK(member(devices[0], "device").text == "a");
  CHECK(member(devices[0], "streams").text == "2");
  CHECK(member(devices[0], "points_received").text == "15");
  CHECK(member(devices[0], "last_seen_age_ms").text == "1000");
  CHECK(member(devices[0], "sync_lag_ms").text == "9000");
  CHECK(member(devices[0], "online").text == "true");
  CHECK(member(devices[1], "online").text == "false");
}

TEST_CASE("delivery: the ratio counts declared drops and missing records") {
  delivery_rows rows = {{"acme/a", "metrics", 3'600'000, 90, 4, 5, 5, 97, 95},
                        {"acme/a", "logs", 3'600'000, 0, 0, 0, 0, 0, 0}};
  auto doc = parsed(delivery_json("a", 0, rows));
  CHECK(member(doc, "received").text == "90");
  CHECK(member(doc, "collected").text == "97");
  CHECK(member(doc, "stored").text == "95");
  CHECK(member(member(doc, "rows").items[0], "collected").text == "97");
  CHECK(std::stod(member(doc, "ratio").text) == doctest::Approx(0.9));
  auto& items = member(doc, "rows").items;
  REQUIRE(items.size() == 2);
  CHECK(std::stod(member(items[1], "ratio").text) == 1.0);
  auto page = parse_prom_text(delivery_metrics_text(rows), 0);
  CHECK(page.bad_lines == 0);
  REQUIRE(page.samples.size() == 7);
  CHECK(page.samples[0].name == "fleetd_delivery_ratio");
  CHECK(page.samples[0].value == doctest::Approx(0.9));
  CHECK(page.samples[5].labels.at("kind") == "collected");
  CHECK(page.samples[5].value == 97);
  CHECK(page.samples[6].labels.at("kind") == "stored");
  CHECK(page.samples[6].value == 95);
}

TEST_CASE("hostile paths get 404, other methods 405, no token 401") {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  web_console web{sys, web_console_config{{}, {}, make_system_clock(), {}}};
  auto page = ask(web, "GET", "/console");
  REQUIRE(page.reply);
  CHECK(page.reply->status == 200);
  CHECK(page.reply->content_type.rfind("text/html", 0) == 0);
  CHECK(page.reply->body.find("console.js") != std::string::npos);
  CHECK(ask(web, "GET", "/console/console.js").reply->content_type.rfind(
          "text/javascript", 0)
        == 0);
  for (auto path : {"/console/../etc/passwd", "/console/%2e%2e/etc/passwd",
                    "/console//console.js", "/console/console.js/",
                    "/console/api/", "/console/api/nope",
                    "/console/api/../console.js", "/console/.",
                    "/console/CONSOLE.JS"}) {
    auto a = ask(web, "GET", path);
    REQUIRE_MESSAGE(a.reply, path);
    CHECK_MESSAGE(a.reply->status == 404, path);
  }
  CHECK(ask(web, "POST", "/console").reply->status == 405);
  CHECK(ask(web, "GET", "/console/api/overview?hours=0").reply->status == 400);
  auto denied = ask(web, "GET", "/console/api/overview");
  REQUIRE(denied.reply);
  CHECK(denied.reply->status == 401);
  // Not the console's: the ingest endpoint answers these.
  CHECK(!ask(web, "GET", "/healthz").routed);
  CHECK(!ask(web, "GET", "/consoles").routed);
  CHECK(!ask(web, "GET", "/metrics").routed);
  auto stats = web.stats();
  CHECK(stats.counters["refused_unauthorized"] == 1);
  CHECK(stats.counters["refused_not_found"] == 9);
  CHECK(stats.counters["refused_bad_request"] == 2);
}

TEST_CASE("the operator's view: org= selects an org, none shows every org "
          "with each row's org; a token may not choose one") {
  auto q = parse_console_query("org=acme-2.x&device=a");
  REQUIRE(q);
  CHECK(q->org == "acme-2.x");
  CHECK(parse_console_query("")->org.empty());
  for (auto bad : {"org=", "org=.acme", "org=a/b", "org=a%2fb",
                   "org=a&org=b"})
    CHECK_MESSAGE(!parse_console_query(bad), bad);
  CHECK(!parse_console_query("org=" + std::string(65, 'a')));

  int64_t now = 1'000'000'000;
  device_infos xs = {stream_of("acme/a", "metrics", 2, now - 1000, 10),
                     stream_of("zenith/a", "metrics", 1, now, 7),
                     stream_of("zenith/a", "logs", 1, now - 2000, 3)};
  auto doc = parsed(overview_json("", xs, now, 300'000));
  CHECK(member(doc, "org").text.empty());
  CHECK(member(doc, "devices_total").text == "2");
  auto& devices = member(doc, "devices").items;
  REQUIRE(devices.size() == 2);
  CHECK(member(devices[0], "org").text == "acme");
  CHECK(member(devices[0], "device").text == "a");
  CHECK(member(devices[1], "org").text == "zenith");
  CHECK(member(devices[1], "points_received").text == "10");
  // One org's view names no org in its rows, as a token's.
  auto one = parsed(overview_json("zenith", xs, now, 300'000));
  REQUIRE(member(one, "devices").items.size() == 1);
  CHECK(json_member(member(one, "devices").items[0], "org") == nullptr);

  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  web_console web{sys, web_console_config{{}, {}, make_system_clock(), {}}};
  CHECK(ask(web, "GET", "/console/api/overview?org=acme", "Bearer fqt_x")
          .reply->status
        == 400);
  auto op = [&web](const std::string& target, bool cert = true) {
    http_request req;
    req.method = "GET";
    req.target = target;
    req.client_cert = cert;
    std::optional<http_reply> out;
    http_server::respond_fn respond = [&out](http_reply rep) {
      out = std::move(rep);
    };
    web.route_operator(req, respond);
    REQUIRE(out);
    return out->status;
  };
  CHECK(op("/console") == 200);
  CHECK(op("/console", false) == 403);
  CHECK(op("/healthz") == 404);
  CHECK(op("/v1/sync") == 404);
  CHECK(op("/console/api/delivery?device=a") == 400);
  CHECK(op("/console/api/overview?org=a/b") == 400);
  auto stats = web.stats();
  CHECK(stats.counters["operator_requests"] == 6);
  CHECK(stats.counters["refused_unauthorized"] == 1);
  CHECK(stats.counters["refused_not_found"] == 2);
  CHECK(stats.counters["refused_bad_request"] == 3);
}
