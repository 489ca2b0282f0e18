// The JSON lines parser of pushed logs and events: every member form, RFC
// 3339 and integer timestamps; each kind of bad line refused alone with its
// neighbours kept; limits stop a request before it is materialised; seeded
// mutations (FLEETD_FUZZ_ITERATIONS, default 20000) neither crash it nor
// break what it promises about the records it keeps.
#include <doctest/doctest.h>

#include <random>
#include <string>

#include "fuzz.hpp"
#include "heap_count.hpp"
#include "messages/error.hpp"
#include "messages/json_lines.hpp"
#include "messages/labels.hpp"
#include "messages/prom_text.hpp"

using namespace fleetd;

namespace {

constexpr int64_t now_ns = 1'700'000'000'000'000'000;
constexpr int64_t now_ms = now_ns / 1'000'000;

int64_t rfc(std::string_view x) {
  int64_t out = -1;
  REQUIRE_MESSAGE(parse_rfc3339_ns(x, out), x);
  return out;
}

} // namespace

TEST_CASE("RFC 3339 date-times as nanoseconds") {
  CHECK(rfc("1970-01-01T00:00:00Z") == 0);
  CHECK(rfc("2023-11-14T22:13:20Z") == now_ns);
  CHECK(rfc("2023-11-14t22:13:20.5z") == now_ns + 500'000'000);
  CHECK(rfc("2023-11-14T22:13:20.123456789Z") == now_ns + 123'456'789);
  // Digits past nanoseconds are cut, not rounded.
  CHECK(rfc("2023-11-14T22:13:20.1234567899Z") == now_ns + 123'456'789);
  CHECK(rfc("2023-11-15T00:13:20+02:00") == now_ns);
  CHECK(rfc("2023-11-14T20:43:20-01:30") == now_ns);
  CHECK(rfc("2024-02-29T00:00:00Z") > 0);
  CHECK(rfc("1969-12-31T23:59:59Z") == -1'000'000'000);
  int64_t x = 0;
  for (auto bad : {"", "2023-11-14", "2023-11-14T22:13:20", "2023-11-14 22:13:20Z",
                   "2023-13-01T00:00:00Z", "2023-02-29T00:00:00Z",
                   "2023-11-14T24:00:00Z", "2023-11-14T22:13:20.Z",
                   "2023-11-14T22:13:20+2:00", "2023-11-14T22:13:20Z ",
                   "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z",
                   "2023-11-14T22:13:20+24:00", "+023-11-14T22:13:20Z"}) {
    CAPTURE(bad);
    CHECK(!parse_rfc3339_ns(bad, x));
  }
}

TEST_CASE("log lines: line or message, timestamps, labels") {
  auto b = parse_log_lines(
    "{\"line\":\"hello\"}\n"
    "\n"
    "  {\"message\":\"m\\u00e9\\n2\",\"timestamp\":\"2023-11-14T22:13:21Z\"}\r\n"
    "{\"line\":\"x\",\"timestamp\":1700000002000000007,"
    "\"labels\":{\"app\":\"web\",\"level\":\"info\"}}",
    now_ns);
  CHECK(b.bad_lines == 0);
  CHECK(!b.stopped);
  REQUIRE(b.lines.size() == 3);
  CHECK(b.lines[0].line == "hello");
  CHECK(b.lines[0].timestamp_ns == now_ns);
  CHECK(b.lines[0].labels.empty());
  CHECK(b.lines[1].line == "m\xc3\xa9\n2");
  CHECK(b.lines[1].timestamp_ns == now_ns + 1'000'000'000);
  CHECK(b.lines[2].timestamp_ns == now_ns + 2'000'000'007);
  CHECK(b.lines[2].labels == label_map{{"app", "web"}, {"level", "info"}});
}

TEST_CASE("each bad log line is refused alone; its neighbours are kept") {
  const std::pair<const char*, const char*> cases[] = {
    {"not json", "not JSON"},
    {"[1,2]", "not a JSON object"},
    {"{\"line\":\"a\",\"line\":\"b\"}", "given twice"},
    {"{\"line\":\"a\",\"message\":\"b\"}", "both line and message"},
    {"{\"line\":\"a\",\"level\":\"info\"}", "unknown member 'level'"},
    {"{\"timestamp\":1}", "no line or message"},
    {"{\"line\":5}", "'line' is not a string"},
    {"{\"line\":\"a\\u0000b\"}", "NUL"},
    {"{\"line\":\"a\",\"timestamp\":\"yesterday\"}", "not an RFC 3339"},
    {"{\"line\":\"a\",\"timestamp\":1.5e18}", "whole nanoseconds"},
    {"{\"line\":\"a\",\"timestamp\":-1}", "whole nanoseconds"},
    {"{\"line\":\"a\",\"timestamp\":99999999999999999999}", "whole nanoseconds"},
    {"{\"line\":\"a\",\"timestamp\":true}", "neither"},
    {"{\"line\":\"a\",\"labels\":[]}", "labels is not an object"},
    {"{\"line\":\"a\",\"labels\":{\"1x\":\"v\"}}", "is not [a-zA-Z_]"},
    {"{\"line\":\"a\",\"labels\":{\"k\":\"\"}}", "empty value"},
    {"{\"line\":\"a\",\"labels\":{\"k\":1}}", "is not a string"},
    {"{\"line\":\"a\",\"labels\":{\"k\":\"v\",\"k\":\"w\"}}", "given twice"},
    {"{\"line\":\"a\"} x", "not JSON"},
    {"{\"line\":\"\xff\"}", "not JSON"},
  };
  for (auto& [line, reason] : cases) {
    CAPTURE(line);
    auto text = std::string("{\"line\":\"before\"}\n") + line
                + "\n{\"line\":\"after\"}\n";
    auto b = parse_log_lines(text, now_ns);
    REQUIRE(b.lines.size() == 2);
    CHECK(b.lines[0].line == "before");
    CHECK(b.lines[1].line == "after");
    CHECK(b.bad_lines == 1);
    REQUIRE(b.errors.size() == 1);
    CHECK(b.errors[0].line == 2);
    CHECK_MESSAGE(b.errors[0].reason.find(reason) != std::string::npos,
                  b.errors[0].reason);
  }
}

TEST_CASE("events: kind and message, the kind under app.") {
  auto b = parse_event_lines(
    "{\"kind\":\"deploy\",\"message\":\"v1.2 up\"}\n"
    "{\"message\":\"\",\"kind\":\"a.b:c-d_E9\"}\n"
    "{\"kind\":\"deploy\"}\n"
    "{\"kind\":\"has space\",\"message\":\"m\"}\n"
    "{\"kind\":\"\",\"message\":\"m\"}\n"
    "{\"kind\":\"k\",\"message\":\"m\",\"timestamp\":1}\n"
    "{\"kind\":\"" + std::string(65, 'k') + "\",\"message\":\"m\"}\n",
    now_ms);
  REQUIRE(b.events.size() == 2);
  CHECK(b.events[0].kind == "app.deploy");
  CHECK(b.events[0].message == "v1.2 up");
  CHECK(b.events[0].timestamp_ms == now_ms);
  CHECK(b.events[1].kind == "app.a.b:c-d_E9");
  CHECK(b.events[1].message.empty());
  CHECK(b.bad_lines == 5);
  REQUIRE(b.errors.size() == 5);
  CHECK(b.errors[0].line == 3);
  CHECK(b.errors[0].reason == "kind and message are both required");
  CHECK(b.errors[3].reason.find("unknown member 'timestamp'")
        != std::string::npos);
}

TEST_CASE("limits stop a request before it is materialised") {
  SUBCASE("a line longer than max_line_bytes is refused uncopied") {
    json_lines_limits limits;
    limits.max_line_bytes = 100;
    auto text = "{\"line\":\"" + std::string(200, 'x') + "\"}\n{\"line\":\"ok\"}";
    auto b = parse_log_lines(text, now_ns, limits);
    CHECK(b.lines.size() == 1);
    REQUIRE(b.errors.size() == 1);
    CHECK(b.errors[0].reason == "line longer than 100 bytes");
  }
  SUBCASE("the record limit stops at a whole line") {
    json_lines_limits limits;
    limits.max_samples = 3;
    std::string text;
    for (int i = 0; i < 10; ++i)
      text += "{\"kind\":\"k\",\"message\":\"" + std::to_string(i) + "\"}\n";
    auto b = parse_event_lines(text, now_ms, limits);
    CHECK(b.events.size() == 3);
    CHECK(b.stopped == ec::too_large);
  }
  SUBCASE("errors past max_errors are counted, not kept") {
    json_lines_limits limits;
    limits.max_errors = 4;
    std::string text;
    for (int i = 0; i < 100; ++i)
      text += "bad\n";
    auto b = parse_log_lines(text, now_ns, limits);
    CHECK(b.errors.size() == 4);
    CHECK(b.bad_lines == 100);
  }
  SUBCASE("what the parser holds at its peak stays near the budget") {
    std::string text;
    for (int i = 0; text.size() < 4'000'000; ++i)
      text += "{\"line\":\"l" + std::to_string(i)
              + "\",\"labels\":{\"a\":\"" + std::to_string(i) + "\"}}\n";
    for (uint64_t budget : {uint64_t{1} << 20, uint64_t{4} << 20}) {
      CAPTURE(budget);
      json_lines_limits limits;
      limits.max_decoded_bytes = budget;
      limits.max_samples = 10'000'000;
      auto before = test::heap_reset_peak();
      {
        auto b = parse_log_lines(text, now_ns, limits);
        CHECK(b.stopped == ec::too_large);
        CHECK(b.lines.size() > budget / 1024);
      }
      auto grew = static_cast<uint64_t>(test::heap_peak() - before);
      MESSAGE("budget ", budget / 1024, " KiB: heap peak +", grew / 1024,
              " KiB");
      // The vector's doubling on top of the records, and one line's tree.
      CHECK(grew <= 2 * budget + 64 * 1024);
    }
  }
}

TEST_CASE("seeded mutations neither crash the parser nor break its promises") {
  auto iterations = test::fuzz_iterations(20000);
  const std::string logs_seed =
    "{\"line\":\"a \\\"q\\\" \\u00e9\",\"labels\":{\"app\":\"x\"}}\n"
    "{\"message\":\"m\",\"timestamp\":\"2023-11-14T22:13:20.5+01:00\"}\n"
    "{\"line\":\"n\",\"timestamp\":1700000000000000000}\n";
  const std::string events_seed =
    "{\"kind\":\"deploy\",\"message\":\"v1\"}\n"
    "{\"kind\":\"a.b\",\"message\":\"\\n\"}\n";
  static constexpr char chars[] = "{}[]\":,\\u0123456789.eE-+TZ \n\t\xff\xc3\x00";
  const std::string alphabet(chars, sizeof chars - 1);
  std::mt19937_64 rng(20261207);
  json_lines_limits limits;
  limits.max_samples = 50;
  limits.max_line_bytes = 256;
  limits.max_decoded_bytes = 16 * 1024;
  size_t kept = 0, refused = 0;
  for (long i = 0; i < iterations; ++i) {
    auto logs = parse_log_lines(test::mutate(logs_seed, alphabet, rng),
                                now_ns, limits);
    REQUIRE(logs.lines.size() <= limits.max_samples);
    REQUIRE(logs.errors.size() <= std::min(logs.bad_lines, limits.max_errors));
    for (auto& x : logs.lines) {
      REQUIRE(bad_text_at(x.line) == std::string::npos);
      for (auto& [k, v] : x.labels) {
        REQUIRE(is_label_name(k));
        REQUIRE(!v.empty());
        REQUIRE(bad_text_at(v) == std::string::npos);
      }
    }
    auto events = parse_event_lines(test::mutate(events_seed, alphabet, rng),
                                    now_ms, limits);
    REQUIRE(events.events.size() <= limits.max_samples);
    for (auto& x : events.events) {
      REQUIRE(x.kind.rfind(app_event_prefix, 0) == 0);
      REQUIRE(bad_text_at(x.message) == std::string::npos);
    }
    kept += logs.lines.size() + events.events.size();
    refused += logs.bad_lines + events.bad_lines;
  }
  MESSAGE("mutated requests: " << 2 * iterations << ", records kept " << kept
                               << ", lines refused " << refused);
  CHECK(kept > 0);
  CHECK(refused > 0);
}
