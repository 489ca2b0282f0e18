// The Loki stand-in refuses what Loki's push API refuses, each with Loki's
// status code, and keeps what Loki keeps (acceptance 4 of issue 13).
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "runtime/http_client.hpp"
#include "runtime/text.hpp"
#include "support/loki_standin.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

// The injected clock: every age rule is measured from here.
constexpr int64_t now_ns = 1'700'000'000'000'000'000;
constexpr int64_t minute_ns = 60'000'000'000;

using headers = std::vector<std::pair<std::string, std::string>>;

struct fixture {
  explicit fixture(loki_standin_config cfg = {}) : loki(with_clock(cfg)) {
    auto p = loki.start();
    REQUIRE(p);
    client = std::make_unique<http_client>("127.0.0.1", *p, 10s,
                                           1024 * 1024);
  }

  static loki_standin_config with_clock(loki_standin_config cfg) {
    cfg.now_ns = [] { return now_ns; };
    return cfg;
  }

  http_response post(const std::string& body, headers hs) {
    auto r = client->post("/loki/api/v1/push", body, hs);
    REQUIRE(r);
    return *r;
  }

  // A JSON push as tenant "acme".
  http_response push(const std::string& body, const std::string& org = "acme") {
    return post(body, {{"Content-Type", "application/json"},
                       {"X-Scope-OrgID", org}});
  }

  loki_standin loki;
  std::unique_ptr<http_client> client;
};

std::string one_stream(const std::string& labels, const std::string& values) {
  return R"({"streams":[{"stream":)" + labels + R"(,"values":[)" + values
         + "]}]}";
}

std::string value(int64_t ts, const std::string& line) {
  return "[\"" + std::to_string(ts) + "\",\"" + line + "\"]";
}

const loki_labels dev1{{"device_id", "d1"}};
const std::string dev1_json = R"({"device_id":"d1"})";

} // namespace

TEST_CASE("a valid JSON push is stored per tenant and stream, 204") {
  fixture f;
  auto r = f.push(one_stream(dev1_json, value(now_ns, "a") + ","
                                          + value(now_ns + 1, "b")));
  CHECK(r.status == 204);
  auto got = f.loki.entries("acme", dev1);
  REQUIRE(got.size() == 2);
  CHECK(got[0] == loki_entry{now_ns, "a"});
  CHECK(got[1] == loki_entry{now_ns + 1, "b"});
  CHECK(f.loki.entry_count("other") == 0);
}

TEST_CASE("a push without application/json is refused 415") {
  fixture f;
  auto body = one_stream(dev1_json, value(now_ns, "a"));
  CHECK(f.post(body, {{"X-Scope-OrgID", "acme"}}).status == 415);
  CHECK(f.post(body, {{"Content-Type", "text/plain"},
                      {"X-Scope-OrgID", "acme"}})
          .status
        == 415);
  CHECK(f.post(body, {{"Content-Type", "application/x-protobuf"},
                      {"X-Scope-OrgID", "acme"}})
          .status
        == 415);
  CHECK(f.post(body, {{"Content-Type", "application/json"},
                      {"Content-Encoding", "br"},
                      {"X-Scope-OrgID", "acme"}})
          .status
        == 415);
  CHECK(f.post(body, {{"Content-Type", "application/json; charset=utf-8"},
                      {"X-Scope-OrgID", "acme"}})
          .status
        == 204);
  CHECK(f.loki.answered(415) == 4);
}

TEST_CASE("malformed JSON is refused 400") {
  fixture f;
  for (std::string bad :
       {R"({"streams":[}")", R"({"streams":[],})", "",
        R"({"streams":[{"stream":{"a":"b"},"values":[["1","x"]]}]} x)",
        "{\"streams\":[{\"stream\":{\"a\":\"\xff\"}}]}",
        R"({"streams":[{"stream":{"a":"\ud800"}}]})"}) {
    CAPTURE(bad);
    auto r = f.push(bad);
    CHECK(r.status == 400);
    CHECK(r.body.find("malformed JSON") != std::string::npos);
  }
  CHECK(f.loki.entry_count("acme") == 0);
}

TEST_CASE("a push of the wrong shape is refused 400 as a whole") {
  fixture f;
  for (std::string bad :
       {std::string{R"({"streams":{}})"},
        one_stream(R"({"a":1})", value(now_ns, "x")),
        one_stream(dev1_json, R"(["1","x"],[)" + std::to_string(now_ns)
                                + R"(,"x"])"),
        one_stream(dev1_json, R"([")" + std::to_string(now_ns) + R"("])"),
        one_stream(dev1_json, R"([")" + std::to_string(now_ns)
                                + R"(",7])"),
        one_stream(dev1_json, R"([")" + std::to_string(now_ns)
                                + R"(","x",{"trace":"1"}])")}) {
    CAPTURE(bad);
    CHECK(f.push(bad).status == 400);
  }
  CHECK(f.loki.entry_count("acme") == 0);
}

TEST_CASE("timestamps that are not strings of integer nanoseconds: 400") {
  fixture f;
  for (std::string ts : {"1.5", "", "-", "1e9", "99999999999999999999", " 1"}) {
    CAPTURE(ts);
    auto r = f.push(one_stream(dev1_json, R"([")" + ts + R"(","x"])"));
    CHECK(r.status == 400);
  }
  CHECK(f.loki.entry_count("acme") == 0);
}

TEST_CASE("a stream without labels is refused 400, the others kept") {
  fixture f;
  auto body = R"({"streams":[{"stream":{},"values":[)" + value(now_ns, "a")
              + R"(]},{"values":[)" + value(now_ns, "b")
              + R"(]},{"stream":{"only":""},"values":[)" + value(now_ns, "c")
              + R"(]},{"stream":)" + dev1_json + R"(,"values":[)"
              + value(now_ns, "d") + "]}]}";
  auto r = f.push(body);
  CHECK(r.status == 400);
  CHECK(r.body.find("at least one label pair") != std::string::npos);
  CHECK(r.body.find("total ignored: 3 out of 4") != std::string::npos);
  CHECK(f.loki.entries("acme", dev1) == std::vector<loki_entry>{{now_ns, "d"}});
}

TEST_CASE("invalid, duplicate, too many or too long labels are refused 400") {
  loki_standin_config cfg;
  cfg.max_label_names = 3;
  cfg.max_label_value_bytes = 8;
  fixture f{cfg};
  for (std::string labels :
       {R"({"1abc":"x"})", R"({"a-b":"x"})", R"({"a.b":"x"})",
        R"({"a":"x","a":"y"})", R"({"a":"1","b":"2","c":"3","d":"4"})",
        R"({"a":"123456789"})"}) {
    CAPTURE(labels);
    CHECK(f.push(one_stream(labels, value(now_ns, "x"))).status == 400);
  }
  CHECK(f.loki.entry_count("acme") == 0);
  CHECK(f.push(one_stream(R"({"_ok9":"12345678"})", value(now_ns, "x")))
          .status
        == 204);
}

TEST_CASE("an entry too far behind its stream's newest is refused 400") {
  fixture f;
  auto hour = 60 * minute_ns;
  CHECK(f.push(one_stream(dev1_json, value(now_ns, "new"))).status == 204);
  // Within the window, out of order: accepted.
  CHECK(f.push(one_stream(dev1_json, value(now_ns - hour + 1, "late")))
          .status
        == 204);
  auto r = f.push(one_stream(dev1_json, value(now_ns - hour - 1, "too late")
                                          + "," + value(now_ns + 5, "fine")));
  CHECK(r.status == 400);
  CHECK(r.body.find("entry too far behind") != std::string::npos);
  CHECK(r.body.find("total ignored: 1 out of 2") != std::string::npos);
  auto got = f.loki.entries("acme", dev1);
  REQUIRE(got.size() == 3);
  CHECK(got[2] == loki_entry{now_ns + 5, "fine"});
  // The window is per stream: another stream takes the old entry.
  CHECK(f.push(one_stream(R"({"device_id":"d2"})",
                          value(now_ns - hour - 1, "too late")))
          .status
        == 204);
}

TEST_CASE("entries too old or too far in the future are refused 400") {
  fixture f;
  auto week = 7 * 24 * 60 * minute_ns;
  auto r = f.push(one_stream(dev1_json, value(now_ns - week - 1, "old")));
  CHECK(r.status == 400);
  CHECK(r.body.find("timestamp too old") != std::string::npos);
  r = f.push(one_stream(dev1_json, value(now_ns + 10 * minute_ns + 1, "new")));
  CHECK(r.status == 400);
  CHECK(r.body.find("timestamp too new") != std::string::npos);
  CHECK(f.push(one_stream(dev1_json, value(now_ns - week, "oldest")))
          .status
        == 204);
  CHECK(f.loki.entry_count("acme") == 1);
}

TEST_CASE("an oversize body is refused 413, a too long line 400") {
  loki_standin_config cfg;
  cfg.max_body_bytes = 4096;
  cfg.max_line_bytes = 100;
  fixture f{cfg};
  auto r = f.push(one_stream(dev1_json, value(now_ns, std::string(5000, 'x'))));
  CHECK(r.status == 413);
  r = f.push(one_stream(dev1_json, value(now_ns, std::string(101, 'x')) + ","
                                     + value(now_ns, std::string(100, 'y'))));
  CHECK(r.status == 400);
  CHECK(r.body.find("Max entry size") != std::string::npos);
  CHECK(f.loki.entries("acme", dev1).size() == 1);
}

TEST_CASE("a missing, invalid or unknown tenant is refused 401") {
  loki_standin_config cfg;
  cfg.tenants = {"acme"};
  fixture f{cfg};
  auto body = one_stream(dev1_json, value(now_ns, "a"));
  CHECK(f.post(body, {{"Content-Type", "application/json"}}).status == 401);
  CHECK(f.push(body, "..").status == 401);
  CHECK(f.push(body, "a b").status == 401);
  CHECK(f.push(body, std::string(151, 'a')).status == 401);
  CHECK(f.push(body, "globex").status == 401);
  CHECK(f.push(body, "acme").status == 204);
  CHECK(f.loki.answered(401) == 5);
}

TEST_CASE("single-tenant Loki ignores X-Scope-OrgID: tenant fake") {
  loki_standin_config cfg;
  cfg.multi_tenant = false;
  fixture f{cfg};
  auto body = one_stream(dev1_json, value(now_ns, "a"));
  CHECK(f.post(body, {{"Content-Type", "application/json"}}).status == 204);
  CHECK(f.loki.entry_count("fake") == 1);
}

TEST_CASE("429, 500 and 503 on demand, then pushes succeed") {
  fixture f;
  auto body = one_stream(dev1_json, value(now_ns, "a"));
  for (unsigned status : {429u, 500u, 503u}) {
    f.loki.fail_next(status, 2);
    CHECK(f.push(body).status == status);
    CHECK(f.push(body).status == status);
    CHECK(f.push(body).status == 204);
  }
  CHECK(f.loki.pushes() == 9);
  f.loki.fail_next(503, 1, 1);
  CHECK(f.push(body).status == 204);
  CHECK(f.push(body).status == 503);
  CHECK(f.push(body).status == 204);
  CHECK(f.loki.entry_count("acme") == 1);
}

TEST_CASE("an identical timestamp and line is stored once") {
  fixture f;
  auto body = one_stream(dev1_json, value(now_ns, "a") + ","
                                      + value(now_ns, "b") + ","
                                      + value(now_ns, "a"));
  CHECK(f.push(body).status == 204);
  CHECK(f.push(body).status == 204);
  CHECK(f.loki.entries("acme", dev1).size() == 2);
}

TEST_CASE("only POST /loki/api/v1/push is served") {
  fixture f;
  auto r = f.client->post("/loki/api/v1/pushx", "{}",
                          {{"Content-Type", "application/json"}});
  REQUIRE(r);
  CHECK(r->status == 404);
  r = f.client->get("/loki/api/v1/push");
  REQUIRE(r);
  CHECK(r->status == 405);
}

TEST_CASE("NUL, escapes and multi-byte UTF-8 in a line survive") {
  fixture f;
  auto r = f.push(one_stream(dev1_json, R"([")" + std::to_string(now_ns)
                                          + R"(","a\u0000b\n\u00e9\ud83d\ude00"])"));
  CHECK(r.status == 204);
  auto got = f.loki.entries("acme", dev1);
  REQUIRE(got.size() == 1);
  CHECK(got[0].line == std::string("a\0b\n\xc3\xa9\xf0\x9f\x98\x80", 10));
}

TEST_CASE("a new stream past the tenant's stream limit is refused 429") {
  loki_standin_config cfg;
  cfg.max_streams_per_tenant = 1;
  fixture f{cfg};
  CHECK(f.push(one_stream(dev1_json, value(now_ns, "a"))).status == 204);
  auto body = R"({"streams":[{"stream":{"device_id":"d2"},"values":[)"
              + value(now_ns, "x") + R"(]},{"stream":)" + dev1_json
              + R"(,"values":[)" + value(now_ns + 1, "b") + "]}]}";
  auto r = f.push(body);
  CHECK(r.status == 429);
  CHECK(r.body.find("stream limit") != std::string::npos);
  CHECK(f.loki.entries("acme", dev1).size() == 2);
  CHECK(f.loki.streams("acme").size() == 1);
  // Another tenant has a limit of its own.
  CHECK(f.push(one_stream(R"({"device_id":"d2"})", value(now_ns, "x")),
               "globex")
          .status
        == 204);
}

namespace {

// GET query_range as `org` with `query` (escaped here) and `rest`.
http_response query(fixture& f, const std::string& org,
                    const std::string& selector, const std::string& rest) {
  headers hs;
  if (!org.empty())
    hs.emplace_back("X-Scope-OrgID", org);
  auto r = f.client->get("/loki/api/v1/query_range?query="
                           + url_escape(selector) + rest,
                         hs);
  REQUIRE(r);
  return *r;
}

std::string span(int64_t start, int64_t end) {
  return "&start=" + std::to_string(start) + "&end=" + std::to_string(end);
}

// acme: d1 (a at now, b at now+1) and d2 (c at now+2); zenith: d1 (z).
void load_two_tenants(fixture& f) {
  REQUIRE(f.push(one_stream(dev1_json, value(now_ns, "a") + ","
                                         + value(now_ns + 1, "b")))
            .status
          == 204);
  REQUIRE(f.push(one_stream(R"({"device_id":"d2"})", value(now_ns + 2, "c")))
            .status
          == 204);
  REQUIRE(f.push(one_stream(dev1_json, value(now_ns, "z")), "zenith").status
          == 204);
}

} // namespace

TEST_CASE("query_range answers the tenant's selected streams in [start, "
          "end), by direction and limit") {
  fixture f;
  load_two_tenants(f);
  auto all = span(now_ns, now_ns + 10);
  auto r = query(f, "acme", R"({device_id="d1"})", all + "&direction=forward");
  REQUIRE(r.status == 200);
  CHECK(r.content_type == "application/json");
  CHECK(r.body
        == "{\"status\":\"success\",\"data\":{\"resultType\":\"streams\","
           "\"result\":[{\"stream\":{\"device_id\":\"d1\"},\"values\":[[\""
             + std::to_string(now_ns) + "\",\"a\"],[\""
             + std::to_string(now_ns + 1) + "\",\"b\"]]}],\"stats\":{}}}\n");
  // End exclusive; backward by default: the newest first.
  auto newest = query(f, "acme", R"({device_id="d1"})",
                      span(now_ns, now_ns + 1) + "&limit=5");
  CHECK(newest.body.find("\"a\"") != std::string::npos);
  CHECK(newest.body.find("\"b\"") == std::string::npos);
  auto one = query(f, "acme", R"({device_id!="d1", device_id="d2"})",
                   all + "&limit=1");
  CHECK(one.body.find("\"c\"") != std::string::npos);
  CHECK(one.body.find("\"a\"") == std::string::npos);
  // Another tenant's streams never answer, whatever the selector says.
  for (auto sel : {R"({device_id="d1"})", R"({device_id="d1", tenant="acme"})",
                   R"({device_id=`d1`})"}) {
    auto z = query(f, "zenith", sel, all);
    CHECK(z.status == 200);
    CHECK(z.body.find("\"a\"") == std::string::npos);
  }
  CHECK(query(f, "zenith", R"({device_id="d1"})", all).body.find("\"z\"")
        != std::string::npos);
}

TEST_CASE("query_range refuses what Loki refuses and what the stand-in does "
          "not model: 400, 401, 405") {
  fixture f;
  load_two_tenants(f);
  auto all = span(now_ns, now_ns + 10);
  CHECK(query(f, "", R"({device_id="d1"})", all).status == 401);
  CHECK(query(f, "a/b", R"({device_id="d1"})", all).status == 401);
  const std::string bad_selectors[] = {
    "", "{}", R"(device_id="d1")", R"({device_id=""})",
    R"({device_id!="d1"})", R"({device_id="d1")", R"({device_id="d1\q"})",
    R"({device_id="d1"} |= "x")", R"(rate({device_id="d1"}[1m]))",
    R"({device_id=~"d.*"})", R"({1x="d1"})", "{device_id=\"d\n1\"}",
    R"({device_id="d1",})", R"({device_id="\x4"})",
  };
  for (auto& sel : bad_selectors) {
    CAPTURE(sel);
    CHECK(query(f, "acme", sel, all).status == 400);
  }
  auto sel = R"({device_id="d1"})";
  for (auto rest : {span(now_ns + 10, now_ns), span(now_ns, now_ns),
                    all + "&limit=0", all + "&limit=5001",
                    all + "&direction=sideways",
                    std::string{"&start=2023-01-01T00:00:00Z"},
                    std::string{"&start=1.5"}, all + "&limit=%zz"}) {
    CAPTURE(rest);
    CHECK(query(f, "acme", sel, rest).status == 400);
  }
  CHECK(query(f, "acme", sel, all + "&limit=5000").status == 200);
  auto post = f.client->post("/loki/api/v1/query_range", "",
                             {{"X-Scope-OrgID", "acme"}});
  REQUIRE(post);
  CHECK(post->status == 405);
}

TEST_CASE("query_range reads Go's escapes in selector strings") {
  fixture f;
  auto odd = std::string{"d\"\\\n\x01}"};
  REQUIRE(f.push(one_stream(R"({"device_id":"d\"\\\n\u0001}"})",
                            value(now_ns, "odd")))
            .status
          == 204);
  auto r = query(f, "acme", "{device_id=" + query_string(odd) + "}",
                 span(now_ns, now_ns + 1));
  REQUIRE(r.status == 200);
  CHECK(r.body.find("\"odd\"") != std::string::npos);
  CHECK(query(f, "acme", R"({device_id="d\"\\"})", span(now_ns, now_ns + 1))
          .body.find("\"odd\"")
        == std::string::npos);
}
