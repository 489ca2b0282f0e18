// Every message type registered in messages/register.cpp survives CAF 0.17's
// binary serialization and a trip through caf::message.
#include <doctest/doctest.h>

#include <cctype>
#include <cstdint>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/message.hpp>

#include "messages/error.hpp"
#include "messages/register.hpp"
#include "messages/types.hpp"

namespace fleetd {

// Field-by-field equality, test-only. Doubles compare bitwise so that a
// round trip that changes a value in its last bit does not pass.
namespace {

bool same_bits(double x, double y) {
  return std::memcmp(&x, &y, sizeof(double)) == 0;
}

} // namespace

bool operator==(const metric_sample& x, const metric_sample& y) {
  return x.name == y.name && x.labels == y.labels
         && x.timestamp_ms == y.timestamp_ms && same_bits(x.value, y.value);
}

bool operator==(const unbatched_points& x, const unbatched_points& y) {
  return x.last_id == y.last_id && x.next_sequence == y.next_sequence
         && x.samples == y.samples;
}

bool operator==(const queued_batch& x, const queued_batch& y) {
  return std::tie(x.stream, x.sequence, x.last_id, x.points, x.created_ms,
                  x.retry_count, x.body)
         == std::tie(y.stream, y.sequence, y.last_id, y.points, y.created_ms,
                     y.retry_count, y.body);
}

bool operator==(const cloud_settings& x, const cloud_settings& y) {
  return std::tie(x.version, x.batch_size, x.sync_interval_ms, x.retention_ms,
                  x.zstd_level)
         == std::tie(y.version, y.batch_size, y.sync_interval_ms,
                     y.retention_ms, y.zstd_level);
}

bool operator==(const sync_ack& x, const sync_ack& y) {
  return std::tie(x.success, x.last_sequence_ack, x.error_code,
                  x.error_message, x.retry_after_ms, x.status, x.config)
         == std::tie(y.success, y.last_sequence_ack, y.error_code,
                     y.error_message, y.retry_after_ms, y.status, y.config);
}

bool operator==(const ingest_batch& x, const ingest_batch& y) {
  return x.device_id == y.device_id && x.stream == y.stream
         && x.sequence == y.sequence && x.samples == y.samples;
}

bool operator==(const ingest_outcome& x, const ingest_outcome& y) {
  return std::tie(x.last_acked, x.duplicate, x.stored)
         == std::tie(y.last_acked, y.duplicate, y.stored);
}

bool operator==(const http_reply& x, const http_reply& y) {
  return std::tie(x.status, x.content_type, x.body)
         == std::tie(y.status, y.content_type, y.body);
}

bool operator==(const actor_stats& x, const actor_stats& y) {
  return std::tie(x.name, x.state, x.counters)
         == std::tie(y.name, y.state, y.counters);
}

bool operator==(const node_status& x, const node_status& y) {
  return std::tie(x.role, x.node_id, x.version, x.uptime_ms, x.started_ms)
           == std::tie(y.role, y.node_id, y.version, y.uptime_ms, y.started_ms)
         && x.actors == y.actors;
}

bool operator==(const device_info& x, const device_info& y) {
  return std::tie(x.device_id, x.stream, x.points_received,
                  x.batches_received, x.duplicates, x.last_acked_sequence,
                  x.gaps, x.last_seen_ms)
         == std::tie(y.device_id, y.stream, y.points_received,
                     y.batches_received, y.duplicates, y.last_acked_sequence,
                     y.gaps, y.last_seen_ms);
}

} // namespace fleetd

using namespace fleetd;

namespace {

struct config : caf::actor_system_config {
  config() {
    register_messages(*this);
  }
};

struct fixture {
  config cfg;
  caf::actor_system sys{cfg};

  template <class T>
  T binary_round_trip(const T& in) {
    std::vector<char> buf;
    {
      caf::binary_serializer sink{sys, buf};
      auto copy = in;
      auto err = sink(copy);
      REQUIRE_MESSAGE(!err, sys.render(err));
    }
    REQUIRE(!buf.empty());
    T out{};
    caf::binary_deserializer source{sys, buf};
    auto err = source(out);
    REQUIRE_MESSAGE(!err, sys.render(err));
    CHECK_MESSAGE(source.remaining() == 0, "bytes left after deserializing");
    return out;
  }

  // Serializes a caf::message holding `in`; deserializing it needs the
  // type's registered name, so this also checks register_messages.
  template <class T>
  T message_copy(const T& in) {
    auto msg = caf::make_message(in);
    REQUIRE(msg.template match_elements<T>());
    std::vector<char> buf;
    {
      caf::binary_serializer sink{sys, buf};
      auto err = sink(msg);
      REQUIRE_MESSAGE(!err, sys.render(err));
    }
    caf::message copy;
    caf::binary_deserializer source{sys, buf};
    auto err = source(copy);
    REQUIRE_MESSAGE(!err, sys.render(err));
    REQUIRE(copy.size() == 1);
    REQUIRE(copy.template match_elements<T>());
    return copy.template get_as<T>(0);
  }

  template <class T>
  T message_round_trip(const T& in) {
    CHECK(caf::make_message(in).template get_as<T>(0) == in);
    return message_copy(in);
  }

  // The binary form of `in`: two values serialize to the same bytes exactly
  // when every inspected field is equal (doubles bit for bit).
  template <class T>
  std::vector<char> bytes_of(const T& in) {
    std::vector<char> buf;
    caf::binary_serializer sink{sys, buf};
    auto copy = in;
    auto err = sink(copy);
    REQUIRE_MESSAGE(!err, sys.render(err));
    return buf;
  }

  // Every field survives serialization and the registered message path.
  template <class T>
  void check_bytes_round_trip(const T& in) {
    auto want = bytes_of(in);
    CHECK(bytes_of(binary_round_trip(in)) == want);
    CHECK(bytes_of(message_copy(in)) == want);
  }

  template <class T>
  void check_round_trips(const T& in) {
    CHECK(binary_round_trip(in) == in);
    CHECK(message_round_trip(in) == in);
    check_bytes_round_trip(in);
  }
};

metric_sample sample(std::string name, label_map labels, int64_t ts,
                     double value) {
  metric_sample s;
  s.name = std::move(name);
  s.labels = std::move(labels);
  s.timestamp_ms = ts;
  s.value = value;
  return s;
}

metric_samples some_samples() {
  return {sample("cpu.usage", {{"core", "0"}, {"host", "edge-01"}},
                 1700000000123, 42.125),
          sample("mem.free", {}, -1, -0.000123456789),
          sample("", {{"", ""}}, 0, 0.0),
          sample("disk.io", {{"dev", "sda\xC3\xA9"}},
                 std::numeric_limits<int64_t>::max(),
                 1.7976931348623157e308),
          sample("tiny", {{"a", "b"}}, std::numeric_limits<int64_t>::min(),
                 2.2250738585072014e-308)};
}

} // namespace

TEST_CASE_FIXTURE(fixture, "a metric_sample round-trips field by field") {
  for (auto& s : some_samples())
    check_round_trips(s);
}

TEST_CASE_FIXTURE(fixture, "metric_samples round-trip, including empty ones") {
  check_round_trips(some_samples());
  check_round_trips(metric_samples{});
}

TEST_CASE_FIXTURE(fixture, "unbatched_points round-trip") {
  unbatched_points x;
  x.last_id = 981;
  x.next_sequence = 17;
  x.samples = some_samples();
  check_round_trips(x);
  check_round_trips(unbatched_points{});
}

queued_batch make_batch(int64_t seq) {
  queued_batch x;
  x.stream = "metrics";
  x.sequence = seq;
  x.last_id = seq * 100;
  x.points = 100;
  x.created_ms = 1700000000000 + seq;
  x.retry_count = 3;
  x.body = std::string("\x28\xB5\x2F\xFD\0\x01\xFF", 7) + std::string(300, 'z');
  return x;
}

TEST_CASE_FIXTURE(fixture, "queued_batch keeps binary bodies byte for byte") {
  auto x = make_batch(7);
  REQUIRE(x.body.size() == 307);
  auto y = binary_round_trip(x);
  CHECK(y == x);
  CHECK(y.body.size() == 307);
  check_round_trips(x);
}

TEST_CASE_FIXTURE(fixture, "queued_batches round-trip") {
  check_round_trips(queued_batches{make_batch(1), make_batch(2), make_batch(3)});
  check_round_trips(queued_batches{});
}

TEST_CASE_FIXTURE(fixture, "sync_ack round-trips") {
  sync_ack x;
  x.success = true;
  x.last_sequence_ack = 12345678901;
  check_round_trips(x);
  sync_ack y;
  y.success = false;
  y.last_sequence_ack = 4;
  y.error_code = "checksum_mismatch";
  y.error_message = "batch checksum does not match";
  y.retry_after_ms = 2500;
  check_round_trips(y);
}

TEST_CASE_FIXTURE(fixture, "ingest_batch round-trips") {
  ingest_batch x;
  x.device_id = "dev-42";
  x.stream = "metrics";
  x.sequence = 9;
  x.samples = some_samples();
  x.epoch = "e-1";
  x.checksum = std::string("\x00\xff\x01\x02\x03\x04\x05\x06", 8);
  x.config_version = 3;
  x.columnar = std::string("\x03\x00\x00", 3);
  x.logs = {log_line{{{"job", "x"}}, 5, "line"}};
  x.events = {event_record{6, "kind", "message", {{"a", "b"}}}};
  x.retry_count = 2;
  x.capability = device_capability{1, 2, 3, 4, 5, 6, true, false};
  x.decode_budget = 12345;
  check_round_trips(x);
}

TEST_CASE_FIXTURE(fixture, "ingest_outcome round-trips") {
  ingest_outcome x;
  x.last_acked = 77;
  x.duplicate = true;
  x.stored = 0;
  check_round_trips(x);
  x.duplicate = false;
  x.stored = 500;
  check_round_trips(x);
}

TEST_CASE_FIXTURE(fixture, "http_reply round-trips") {
  http_reply x;
  x.status = 65535;
  x.content_type = "application/x-protobuf";
  x.body = std::string("\0\1\2", 3);
  check_round_trips(x);
  x.status = 413;
  check_round_trips(x);
}

actor_stats make_stats(std::string name) {
  actor_stats x;
  x.name = std::move(name);
  x.state = "running";
  x.counters = {{"batches", 12},
                {"errors", -1},
                {"bytes", std::numeric_limits<int64_t>::max()}};
  return x;
}

TEST_CASE_FIXTURE(fixture, "actor_stats round-trips") {
  check_round_trips(make_stats("storage"));
  check_round_trips(actor_stats{});
}

TEST_CASE_FIXTURE(fixture, "node_status round-trips with its actors") {
  node_status x;
  x.role = "edge";
  x.node_id = "edge-01";
  x.version = "0.1.0";
  x.uptime_ms = 86400000;
  x.started_ms = 1'700'000'000'123;
  x.actors = {make_stats("storage"), make_stats("sync/metrics")};
  check_round_trips(x);
}

device_info make_device(std::string id) {
  device_info x;
  x.device_id = std::move(id);
  x.stream = "metrics";
  x.points_received = 1000000;
  x.batches_received = 1000;
  x.duplicates = 3;
  x.last_acked_sequence = 1000;
  x.gaps = 1;
  x.last_seen_ms = 1700000000999;
  return x;
}

TEST_CASE_FIXTURE(fixture, "device_info and device_infos round-trip") {
  check_round_trips(make_device("dev-1"));
  check_round_trips(device_infos{make_device("dev-1"), make_device("dev-2")});
  check_round_trips(device_infos{});
}

TEST_CASE_FIXTURE(fixture, "a message with several registered types "
                           "round-trips through the serializer") {
  auto in = caf::make_message(make_batch(5), sync_ack{true, 5, "", "", 0, 200, cloud_settings{3, 50, 60000, 0, -1}},
                              std::string("metrics"), int64_t{5});
  std::vector<char> buf;
  {
    caf::binary_serializer sink{sys, buf};
    REQUIRE(!sink(in));
  }
  caf::message out;
  caf::binary_deserializer source{sys, buf};
  REQUIRE(!source(out));
  REQUIRE((out.match_elements<queued_batch, sync_ack, std::string, int64_t>()));
  CHECK(out.get_as<queued_batch>(0) == make_batch(5));
  CHECK(out.get_as<sync_ack>(1) == sync_ack{true, 5, "", "", 0, 200, cloud_settings{3, 50, 60000, 0, -1}});
  CHECK(out.get_as<std::string>(2) == "metrics");
  CHECK(out.get_as<int64_t>(3) == 5);
}

TEST_CASE_FIXTURE(fixture, "fleetd errors render with their code name and "
                           "context") {
  auto err = make_error(ec::checksum_mismatch, "batch 7");
  CHECK(err.category() == caf::atom("fleetd"));
  CHECK(err.code() == static_cast<uint8_t>(ec::checksum_mismatch));
  CHECK(render(err) == "checksum_mismatch: batch 7");
  CHECK(render(make_error(ec::too_large)) == "too_large");
  CHECK(render(caf::error{}) == "ok");
  CHECK(sys.render(err).find("checksum_mismatch: batch 7")
        != std::string::npos);
  // Errors travel inside messages, too.
  std::vector<char> buf;
  {
    caf::binary_serializer sink{sys, buf};
    REQUIRE(!sink(err));
  }
  caf::error copy;
  caf::binary_deserializer source{sys, buf};
  REQUIRE(!source(copy));
  CHECK(copy == err);
  CHECK(render(copy) == "checksum_mismatch: batch 7");
}

TEST_CASE("every error code has a distinct lower-case name") {
  std::set<std::string> names;
  for (int i = 0; i <= static_cast<int>(ec::shutting_down); ++i) {
    std::string name = to_string(static_cast<ec>(i));
    CHECK(name != "unknown");
    for (auto c : name)
      CHECK((std::islower(static_cast<unsigned char>(c)) || c == '_'));
    CHECK(names.insert(name).second);
  }
}

// -- the registered types without an operator== of their own ------------------

TEST_CASE_FIXTURE(fixture, "log lines and events round-trip byte for byte") {
  log_line l{{{"job", "fleetd"}, {"unit", "x\xC3\xA9"}}, -7, "a line\n"};
  check_bytes_round_trip(l);
  check_bytes_round_trip(log_lines{l, log_line{}});
  check_bytes_round_trip(log_lines{});
  event_record e{1700000000000, "capability_change", "tier 1 -> 2",
                 {{"from", "1"}}};
  check_bytes_round_trip(e);
  check_bytes_round_trip(event_records{e, event_record{}});
  check_bytes_round_trip(event_records{});
}

TEST_CASE_FIXTURE(fixture, "link reports and states round-trip byte for "
                           "byte") {
  check_bytes_round_trip(link_report{"metrics", true, 1500, true, "err"});
  check_bytes_round_trip(link_report{});
  check_bytes_round_trip(link_status{"offline", 4, 1700000000001, "refused"});
}

TEST_CASE_FIXTURE(fixture, "the series session and an ack round-trip byte "
                           "for byte") {
  check_bytes_round_trip(wire_session{some_samples(), std::string("\0h\1", 3)});
  check_bytes_round_trip(wire_session{});
  check_bytes_round_trip(
    acked_batch{"metrics", 12, 5, some_samples(), std::string("\0\1", 2)});
  check_bytes_round_trip(acked_batch{});
}

TEST_CASE_FIXTURE(fixture, "settings and their changes round-trip") {
  cloud_settings c{4, 100, 30000, 3600000, 7};
  check_round_trips(c);
  check_bytes_round_trip(settings_change{c, 0x1F, true});
  check_bytes_round_trip(settings_change{});
}

TEST_CASE_FIXTURE(fixture, "hardware, tier settings, capability reports and "
                           "debug reports round-trip byte for byte") {
  hardware hw;
  hw.total_ram = 8'000'000'000;
  hw.available_ram = 1;
  hw.total_disk = 2;
  hw.available_disk = 3;
  hw.cpu_cores = 4;
  hw.notes = {"cgroup v2 memory.max 512MB", ""};
  check_bytes_round_trip(hw);
  tier_settings t;
  t.tier = 2;
  t.sqlite = false;
  t.storage_bytes = 5;
  t.memory_points = 6;
  t.retention_ms = 7;
  t.sync_interval_ms = 8;
  t.batch_size = 9;
  t.zstd_level = 10;
  check_round_trips(t);
  capability_report r;
  r.hw = hw;
  r.detected_tier = 1;
  r.settings = t;
  r.reasons = {"pinned", "ram"};
  r.cloud = cloud_settings{1, 2, 3, 4, 5};
  check_bytes_round_trip(r);
  check_bytes_round_trip(debug_report{"text\n", "{\"a\":1}"});
}
