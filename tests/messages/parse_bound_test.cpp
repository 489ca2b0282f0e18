// The bound of what parsing a body allocates, computed from its bytes: it
// covers real requests, and amplifying ones are refused before the parse.
#include <doctest/doctest.h>

#include <string>

#include <zstd.h>

#include "fleetd/v1/sync.pb.h"
#include "heap_count.hpp"
#include "messages/error.hpp"
#include "messages/parse_bound.hpp"
#include "messages/wire.hpp"

using namespace fleetd;
namespace pb = fleetd::v1;

namespace {

constexpr uint64_t mib = 1024 * 1024;
constexpr uint64_t unlimited = ~uint64_t{0};

std::string varint(uint64_t v) {
  std::string out;
  for (; v >= 0x80; v >>= 7)
    out += static_cast<char>(v | 0x80);
  out += static_cast<char>(v);
  return out;
}

// Field `field` of wire type 2 (length-delimited) holding `bytes`.
std::string delimited(int field, const std::string& bytes) {
  return varint(static_cast<uint64_t>(field) << 3 | 2) + varint(bytes.size())
         + bytes;
}

std::string repeat(const std::string& unit, size_t bytes) {
  std::string out;
  out.reserve(bytes + unit.size());
  while (out.size() < bytes)
    out += unit;
  return out;
}

std::string zstd(const std::string& plain) {
  std::string out(ZSTD_compressBound(plain.size()), '\0');
  auto n = ZSTD_compress(out.data(), out.size(), plain.data(), plain.size(), 19);
  REQUIRE(!ZSTD_isError(n));
  out.resize(n);
  return out;
}

uint64_t bound_of(const std::string& body) {
  auto n = parse_bound(body, pb::SyncRequest::descriptor(), unlimited);
  REQUIRE_MESSAGE(n, render(n.error()));
  return *n;
}

encode_settings settings() {
  encode_settings es;
  es.device_id = "edge-01";
  es.sequence = 3;
  es.now_ms = 1'700'000'000'000;
  es.zstd_level = 0;
  return es;
}

} // namespace

TEST_CASE("the bound covers what parsing real requests allocates") {
  metric_samples samples;
  log_lines lines;
  event_records events;
  for (int i = 0; i < 500; ++i) {
    samples.push_back({"cpu_seconds_total", {{"cpu", std::to_string(i % 4)}},
                       1'700'000'000'000 + i, i * 0.5});
    lines.push_back({{{"file", "/var/log/syslog"}}, i, "a line of text"});
    events.push_back({i, "sync_failure", "link down", {{"why", "timeout"}}});
  }
  auto cap = capability_of(capability_report{});
  std::string bodies[] = {
    encode_metrics_request(settings(), samples),
    encode_logs_request(settings(), lines),
    encode_events_request(settings(), events),
    encode_columnar_request(settings(), std::string(5000, 'c')),
    with_send_fields(encode_metrics_request(settings(), samples), 2, &cap),
  };
  for (auto& body : bodies) {
    pb::SyncRequest req;
    REQUIRE(req.ParseFromString(body));
    auto used = static_cast<uint64_t>(req.SpaceUsedLong());
    auto bound = bound_of(body);
    CAPTURE(body.size());
    CHECK(bound >= used);
    // Not so loose that an honest request runs out of budget.
    CHECK(bound <= 4 * used + 4096);
  }
}

TEST_CASE("amplifying bodies are refused before the parse allocates") {
  // 16 MiB decoded from a few KiB of zstd, each unit a few bytes that
  // protobuf would turn into an object (or array slot) many times larger.
  const size_t size = 16 * mib;
  struct {
    std::string what;
    std::string plain;
  } cases[] = {
    {"empty series", delimited(3, repeat(std::string("\x0a\x00", 2), size))},
    {"empty labels", delimited(3, delimited(1, repeat(std::string("\x12\x00", 2),
                                                      size)))},
    {"empty events", delimited(5, repeat(std::string("\x0a\x00", 2), size))},
    {"packed zero timestamps", delimited(3, delimited(3, std::string(size, '\0')))},
    {"empty log lines", delimited(4, repeat(std::string("\x22\x00", 2), size))},
    {"unknown fields", repeat(std::string("\xf8\x01\x00", 3), size)},
  };
  for (auto& c : cases) {
    CAPTURE(c.what);
    auto body = zstd(c.plain);
    CHECK(body.size() < 8 * 1024);
    CHECK(bound_of(c.plain) > 4 * size);
    auto before = test::heap_reset_peak();
    auto got = decode_request(body, true, 64 * mib);
    auto grew = static_cast<uint64_t>(test::heap_peak() - before);
    REQUIRE_FALSE(got);
    CHECK(got.error() == ec::too_large);
    CHECK(render(got.error()).find("parsed request") != std::string::npos);
    // The decompressed body (charged, in one allocation of the size its
    // frame declares) and little more: nothing was parsed.
    MESSAGE(c.what, ": heap peak +", grew / 1024, " KiB");
    CHECK(grew < size + 2 * mib);
  }
}

TEST_CASE("bytes that are no message are refused by the walk") {
  struct {
    std::string what;
    std::string bytes;
  } cases[] = {
    {"a group", std::string("\x0b\x0c", 2)},
    {"a length past the end", delimited(1, "abc").substr(0, 3)},
    {"a varint of eleven bytes", "\x38" + std::string(10, '\xff') + "\x01"},
    {"field number zero", std::string("\x00\x01", 2)},
    {"a truncated fixed field", std::string("\x21\x00\x00", 3)},
  };
  for (auto& c : cases) {
    CAPTURE(c.what);
    auto got = parse_bound(c.bytes, pb::SyncRequest::descriptor(), unlimited);
    REQUIRE_FALSE(got);
    CHECK(got.error() == ec::decode_failed);
  }
}

TEST_CASE("the walk stops once past its limit") {
  auto plain = delimited(5, repeat(std::string("\x0a\x00", 2), 4 * mib));
  auto n = parse_bound(plain, pb::SyncRequest::descriptor(), mib);
  REQUIRE(n);
  CHECK(*n > mib);
  CHECK(*n < 2 * mib);
}
