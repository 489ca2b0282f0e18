// Journal rows: a versioned, self-contained JournalEntry, zstd-compressed,
// read back exactly; anything else is refused, never a crash.
#include "messages/journal_codec.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include <doctest/doctest.h>

#include "fleetd/v1/journal.pb.h"
#include "messages/error.hpp"
#include "messages/wire.hpp"

using namespace fleetd;

namespace {

journal_entry sample_entry() {
  journal_entry x;
  x.org = "acme";
  x.device = "dev-1";
  x.stream = "metrics";
  x.epoch = "e1";
  x.sequence = 42;
  x.received_ms = 1'700'000'000'123;
  x.samples.push_back({"cpu", {{"core", "0"}}, 1000, 0.5});
  x.samples.push_back({"nan", {}, 1001, std::numeric_limits<double>::quiet_NaN()});
  x.samples.push_back({"negzero", {}, 1002, -0.0});
  x.logs.push_back({{{"source", "syslog"}}, 5, "hello"});
  x.events.push_back({7, "boot", "started", {{"why", "power"}}});
  return x;
}

uint64_t bits(double d) {
  uint64_t out;
  std::memcpy(&out, &d, sizeof out);
  return out;
}

} // namespace

TEST_CASE("a journal entry round-trips exactly, NaN and -0.0 bit for bit") {
  auto x = sample_entry();
  auto row = encode_journal_entry(x);
  CHECK(is_zstd(row));
  auto y = decode_journal_entry(row, 1 << 20);
  REQUIRE_MESSAGE(y, render(y.error()));
  CHECK(y->org == "acme");
  CHECK(y->device == "dev-1");
  CHECK(y->stream == "metrics");
  CHECK(y->epoch == "e1");
  CHECK(y->sequence == 42);
  CHECK(y->received_ms == x.received_ms);
  REQUIRE(y->samples.size() == 3);
  CHECK(y->samples[0].labels == x.samples[0].labels);
  CHECK(bits(y->samples[1].value) == bits(x.samples[1].value));
  CHECK(bits(y->samples[2].value) == bits(-0.0));
  REQUIRE(y->logs.size() == 1);
  CHECK(y->logs[0].line == "hello");
  REQUIRE(y->events.size() == 1);
  CHECK(y->events[0].attributes.at("why") == "power");
}

TEST_CASE("a journal row that is not one is refused decode_failed") {
  CHECK(is_error(decode_journal_entry("plain garbage", 1 << 20).error(),
                 ec::decode_failed));
  auto row = encode_journal_entry(sample_entry());
  auto truncated = row.substr(0, row.size() / 2);
  CHECK_FALSE(decode_journal_entry(truncated, 1 << 20));
  CHECK(is_error(
    decode_journal_entry(zstd_compress(std::string(64, '\xff'), 1), 1 << 20)
      .error(),
    ec::decode_failed));
}

TEST_CASE("a journal row of a newer format is refused, not misread") {
  fleetd::v1::JournalEntry m;
  m.set_version(journal_format_version + 1);
  m.set_org("acme");
  auto row = zstd_compress(m.SerializeAsString(), 1);
  auto y = decode_journal_entry(row, 1 << 20);
  REQUIRE_FALSE(y);
  CHECK(is_error(y.error(), ec::decode_failed));
}

TEST_CASE("a journal row decoding past the bound is refused too_large") {
  auto x = sample_entry();
  x.logs.push_back({{}, 9, std::string(100000, 'x')});
  auto y = decode_journal_entry(encode_journal_entry(x), 4096);
  REQUIRE_FALSE(y);
  CHECK(is_error(y.error(), ec::too_large));
}
