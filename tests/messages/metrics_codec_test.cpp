// Columnar metrics batches: lossless round trips and refusal of bad input.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <algorithm>
#include <atomic>
#include <new>
#include <random>
#include <string>

#include "messages/decode_budget.hpp"
#include "messages/error.hpp"
#include "messages/metrics_codec.hpp"
#include "messages/types.hpp"
#include "check_samples.hpp"

using namespace fleetd;
using test::sample;

namespace {

// Equal samples, doubles compared bit for bit.
void check_same(const metric_samples& got, const metric_samples& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].name == want[i].name);
    CHECK(got[i].labels == want[i].labels);
    CHECK(got[i].timestamp_ms == want[i].timestamp_ms);
    CHECK(bits_of(got[i].value) == bits_of(want[i].value));
  }
}

// decode_columnar_indexed on a copy of `start` agrees with decode_columnar
// on another: both refuse, or both give the same points (series by index)
// and leave the same session.
void check_indexed_agrees(std::string_view bytes, const codec_context& start) {
  auto by_name = start;
  auto by_index = start;
  auto want = decode_columnar(bytes, by_name);
  decode_budget budget{by_index.max_decoded_bytes};
  auto got = decode_columnar_indexed(bytes, by_index, budget);
  REQUIRE(static_cast<bool>(want) == static_cast<bool>(got));
  CHECK(by_index.digest() == by_name.digest());
  if (!want)
    return;
  REQUIRE(got->size() == want->size());
  for (size_t i = 0; i < got->size(); ++i) {
    auto& p = (*got)[i];
    REQUIRE(p.series < by_index.series.size());
    CHECK(by_index.series[p.series].first == (*want)[i].name);
    CHECK(by_index.series[p.series].second == (*want)[i].labels);
    CHECK(p.timestamp_ms == (*want)[i].timestamp_ms);
    CHECK(bits_of(p.value) == bits_of((*want)[i].value));
  }
}

// decode_delta leaves `start` as it was, and applying its delta to a copy
// gives the session decode_columnar gives; other expected samples are
// refused, `start` again untouched.
void check_delta_agrees(std::string_view bytes, const codec_context& start,
                        const metric_samples& xs) {
  auto by_delta = start;
  auto decoded = start;
  REQUIRE(decode_columnar(bytes, decoded));
  auto d = decode_delta(bytes, by_delta, &xs);
  REQUIRE(d);
  CHECK(by_delta.digest() == start.digest());
  CHECK(by_delta.series == start.series);
  CHECK(by_delta.index == start.index);
  CHECK(d->base == start.series.size());
  REQUIRE(!apply_delta(by_delta, *d));
  CHECK(by_delta.digest() == decoded.digest());
  CHECK(by_delta.series == decoded.series);
  CHECK(by_delta.index == decoded.index);
  if (xs.empty())
    return;
  auto other = xs;
  other.back().value = other.back().value == 1.0 ? 2.0 : 1.0;
  auto untouched = start;
  auto refused = decode_delta(bytes, untouched, &other);
  REQUIRE(!refused);
  CHECK(refused.error().code() == make_error(ec::decode_failed).code());
  CHECK(untouched.digest() == start.digest());
  CHECK(untouched.series == start.series);
  // A delta fits only the session it was taken from.
  auto moved = decoded;
  if (!d->reset && !d->added.empty())
    CHECK(apply_delta(moved, *d));
}

void round_trip(const metric_samples& xs) {
  codec_context enc;
  codec_context dec;
  auto bytes = encode_columnar(xs, enc);
  auto got = decode_columnar(bytes, dec);
  REQUIRE(got);
  check_same(*got, xs);
}

// One batch of a session: encoded against `enc`, decoded by `dec` to the
// same samples, and both sides end in the same state; its bytes.
std::string session_step(const metric_samples& xs, codec_context& enc,
                         codec_context& dec) {
  auto bytes = encode_columnar(xs, enc);
  auto got = decode_columnar(bytes, dec);
  REQUIRE(got);
  check_same(*got, xs);
  REQUIRE(decode_columnar(bytes, enc));
  CHECK(enc.digest() == dec.digest());
  return bytes;
}


// Scrapes of `nseries` series every 10 s: counters, gauges, decimals, floats.
metric_samples scrapes(int nseries, int nscrapes, int64_t t0, uint32_t seed) {
  std::mt19937_64 rng(seed);
  metric_samples out;
  std::vector<double> counters(nseries, 0);
  for (int k = 0; k < nscrapes; ++k) {
    int64_t ts = t0 + k * 10000 + static_cast<int64_t>(rng() % 3);
    for (int i = 0; i < nseries; ++i) {
      double v = 0;
      switch (i % 4) {
        case 0: counters[i] += static_cast<double>(rng() % 1000); v = counters[i]; break;
        case 1: v = static_cast<double>(rng() % 100) / 100.0; break;
        case 2: v = std::ldexp(static_cast<double>(rng() >> 11), -53); break;
        default: v = double_of(rng()); break; // any bit pattern, NaNs too
      }
      out.push_back(sample("metric_" + std::to_string(i / 4),
                           {{"kind", std::to_string(i % 4)},
                            {"instance", "dev-" + std::to_string(i)}},
                           ts, v));
    }
  }
  return out;
}

} // namespace

TEST_CASE("empty batch round-trips") {
  round_trip({});
  codec_context enc;
  auto bytes = encode_columnar({}, enc);
  // Version, base, digest (8), three counts, order flag, five empty streams.
  CHECK(bytes.size() == 19);
}

TEST_CASE("edge-case values round-trip bit for bit") {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> vals = {
    0.0, -0.0, 1.0, -1.0, inf, -inf,
    std::numeric_limits<double>::quiet_NaN(),
    -std::numeric_limits<double>::quiet_NaN(),
    double_of(0x7FF0000000000001ULL), // signalling NaN payload
    double_of(0x7FF8DEADBEEF0001ULL), // quiet NaN payload
    std::numeric_limits<double>::denorm_min(),
    std::numeric_limits<double>::min(), std::numeric_limits<double>::max(),
    -std::numeric_limits<double>::max(), std::numeric_limits<double>::epsilon(),
    9007199254740992.0, 9007199254740993.0, -9007199254740992.0,
    1e300, 1e-300, 0.1, 0.2, 0.30000000000000004, 2.1572e-05, 4.194304e+06,
    1.0 / 3.0, 123456789.123456789};
  metric_samples xs;
  int64_t ts = 1700000000000;
  for (double v : vals)
    xs.push_back(sample("m", {}, ts += 10000, v));
  round_trip(xs);
  // Each value alone in its series (every column kind on its own).
  metric_samples ys;
  for (size_t i = 0; i < vals.size(); ++i)
    ys.push_back(sample("s" + std::to_string(i), {}, 5, vals[i]));
  round_trip(ys);
  // Only -0.0 (must not become +0.0 through the integer path).
  round_trip({sample("z", {}, 1, -0.0), sample("z", {}, 2, -0.0)});
}

TEST_CASE("every value column kind round-trips") {
  std::mt19937_64 rng(5);
  auto series = [&](const std::string& name, auto gen) {
    metric_samples xs;
    for (int k = 0; k < 40; ++k)
      xs.push_back(sample(name, {}, 1000 + k * 10000, gen(k)));
    return xs;
  };
  std::vector<metric_samples> cases = {
    series("const_int", [](int) { return 7.0; }),
    series("const_dec", [](int) { return 0.25; }),
    series("const_nan", [](int) { return double_of(0x7FF4000000000123ULL); }),
    series("const_neg_zero", [](int) { return -0.0; }),
    series("pages", [&](int) { return 4096.0 * static_cast<double>(rng() % 100000); }),
    series("counter_pages", [](int k) { return 4096.0 * (1000 + 37 * k * k); }),
    series("counter", [](int k) { return 1e6 + 1234.0 * k; }),
    series("random_gauge", [&](int) { return static_cast<double>(rng() % 1000000) / 1e9; }),
    series("usec_mul", [&](int k) { return static_cast<double>(5794470 + 881 * k + rng() % 7) * 1e-6; }),
    series("usec_div", [&](int k) { return static_cast<double>(5794470 + 881 * k) / 1e6; }),
    series("big_scaled", [](int k) { return 1795639735.3813145 + 10.02 * k; }),
    series("huge_int", [](int k) { return 1e18 + 4096.0 * k; }),
    series("floats", [&](int) { return std::ldexp(static_cast<double>(rng() >> 11), -40); }),
    series("mixed", [&](int k) { return k == 20 ? std::nan("") : static_cast<double>(k); }),
    series("one_inf", [](int k) { return k == 3 ? -std::numeric_limits<double>::infinity() : 1.5; }),
  };
  metric_samples all;
  for (auto& c : cases) {
    round_trip(c);
    // A single point of each.
    round_trip({c.front()});
    all.insert(all.end(), c.begin(), c.end());
  }
  round_trip(all);
  // Columns of constants cost next to nothing.
  codec_context enc;
  CHECK(encode_columnar(cases[0], enc).size() < 48);
}

TEST_CASE("edge-case timestamps and strings round-trip") {
  metric_samples xs = {
    sample("", {}, std::numeric_limits<int64_t>::min(), 1),
    sample("", {}, std::numeric_limits<int64_t>::max(), 2),
    sample("", {}, 0, 3),
    sample("", {}, -1, 4),
    sample("a b", {{"", ""}, {"k", "v\tx\n\"\xC3\xA9"}}, 7, 5),
    sample("a b", {{"", ""}, {"k", "v\tx\n\"\xC3\xA9"}}, 7, 6),
  };
  round_trip(xs);
  // Names and labels are UTF-8 text without NUL (docs/wire-format.md).
  for (auto bad : {std::string("v\0x", 3), std::string("v\xE9")}) {
    codec_context enc, dec;
    auto bytes = encode_columnar({sample("a", {{"k", bad}}, 7, 5)}, enc);
    auto got = decode_columnar(bytes, dec);
    REQUIRE_FALSE(got);
    CHECK(static_cast<ec>(got.error().code()) == ec::invalid_record);
    CHECK(dec.series.empty());
  }
}

TEST_CASE("random values, many series, any order") {
  for (uint32_t seed = 1; seed <= 5; ++seed) {
    auto xs = scrapes(1000, 30, 1795639735368, seed);
    round_trip(xs);
    // Shuffled: the explicit order column.
    std::mt19937 rng(seed);
    std::shuffle(xs.begin(), xs.end(), rng);
    round_trip(xs);
  }
  // Random everything, including timestamps.
  std::mt19937_64 rng(42);
  metric_samples xs;
  for (int i = 0; i < 5000; ++i)
    xs.push_back(sample("r" + std::to_string(rng() % 50),
                        {{"x", std::to_string(rng() % 3)}},
                        static_cast<int64_t>(rng()),
                        double_of(rng())));
  round_trip(xs);
}

TEST_CASE("series present in only some scrapes") {
  metric_samples xs;
  for (int k = 0; k < 30; ++k)
    for (int i = 0; i < 20; ++i)
      if ((i * k) % 7 != 3)
        xs.push_back(sample("m" + std::to_string(i), {}, k * 10000,
                            static_cast<double>(k * i)));
  round_trip(xs);
}

TEST_CASE("session context sends each series once") {
  codec_context enc;
  codec_context dec;
  auto b1 = scrapes(200, 30, 1000000, 7);
  auto b2 = scrapes(200, 30, 1300000, 8);
  // b3 adds series.
  auto b3 = scrapes(300, 30, 1600000, 9);
  auto e1 = encode_columnar(b1, enc);
  commit_columnar(enc, b1);
  auto e2 = encode_columnar(b2, enc);
  commit_columnar(enc, b2);
  auto e3 = encode_columnar(b3, enc);
  commit_columnar(enc, b3);
  CHECK(enc.series.size() == 300);
  codec_context fresh;
  auto e2_alone = encode_columnar(b2, fresh);
  CHECK(e2.size() + 200 * 10 < e2_alone.size());
  auto d1 = decode_columnar(e1, dec);
  REQUIRE(d1);
  check_same(*d1, b1);
  auto d2 = decode_columnar(e2, dec);
  REQUIRE(d2);
  check_same(*d2, b2);
  auto d3 = decode_columnar(e3, dec);
  REQUIRE(d3);
  check_same(*d3, b3);
  CHECK(dec.series == enc.series);
  // Replaying a batch against the wrong table is refused, context unchanged.
  auto again = decode_columnar(e2, dec);
  CHECK(!again);
  CHECK(dec.series.size() == 300);
  codec_context empty;
  CHECK(!decode_columnar(e2, empty));
  CHECK(empty.series.empty());
}

TEST_CASE("corrupt or truncated input is an error, not a crash") {
  auto xs = scrapes(40, 10, 1795639735368, 3);
  codec_context enc;
  auto bytes = encode_columnar(xs, enc);
  // Every truncation.
  for (size_t n = 0; n < bytes.size(); ++n) {
    codec_context dec;
    auto got = decode_columnar(std::string_view(bytes).substr(0, n), dec);
    CHECK(!got);
    CHECK(dec.series.empty());
  }
  // Trailing garbage.
  {
    codec_context dec;
    CHECK(!decode_columnar(bytes + "x", dec));
  }
  // Random byte flips: may decode to something else, must never crash.
  std::mt19937_64 rng(11);
  for (int i = 0; i < 20000; ++i) {
    auto bad = bytes;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f)
      bad[rng() % bad.size()] = static_cast<char>(rng());
    codec_context dec;
    auto got = decode_columnar(bad, dec);
    if (!got)
      CHECK(dec.series.empty());
  }
  // Random garbage, including huge varint counts.
  for (int i = 0; i < 20000; ++i) {
    std::string junk(rng() % 64, '\0');
    for (auto& c : junk)
      c = static_cast<char>(rng());
    if (!junk.empty())
      junk[0] = static_cast<char>(columnar_format_version);
    codec_context dec;
    (void) decode_columnar(junk, dec);
  }
  // A huge series count after a valid header.
  codec_context dec;
  std::string huge = {static_cast<char>(columnar_format_version), 0};
  for (int i = 0; i < 8; ++i)
    huge.push_back(static_cast<char>(dec.digest() >> (8 * i)));
  huge += std::string(9, '\xff') + '\x01';
  CHECK(!decode_columnar(huge, dec));
}

namespace {

// Every truncation is refused and leaves the context (a copy of `start`)
// alone; byte flips and trailing bytes never crash.
void check_corruption(const std::string& bytes, uint64_t seed,
                      const codec_context& start = {}) {
  auto digest = start.digest();
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto dec = start;
    CHECK(!decode_columnar(std::string_view(bytes).substr(0, n), dec));
    CHECK(dec.series.size() == start.series.size());
    CHECK(dec.digest() == digest);
  }
  {
    auto dec = start;
    CHECK(!decode_columnar(bytes + '\0', dec));
  }
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 20000; ++i) {
    auto bad = bytes;
    int flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < flips; ++f)
      bad[rng() % bad.size()] = static_cast<char>(rng());
    auto dec = start;
    if (!decode_columnar(bad, dec))
      CHECK(dec.digest() == digest);
    if (i % 10 == 0)
      check_indexed_agrees(bad, start);
  }
}

// Collector timings (whole nanoseconds printed as seconds), pressure
// counters (float64(us) / 1000 / 1000), and counters with a spike.
metric_samples v2_columns(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> ns(10.0, 1.0);
  metric_samples xs;
  int64_t us = 5794470;
  for (int k = 0; k < 30; ++k) {
    int64_t ts = 1795639735368 + k * 10020 + static_cast<int64_t>(rng() % 5);
    for (int c = 0; c < 8; ++c)
      xs.push_back(sample("duration_seconds", {{"collector", std::to_string(c)}},
                          ts, static_cast<double>(1 + static_cast<int64_t>(ns(rng))) / 1e9));
    us += static_cast<int64_t>(rng() % 200000);
    xs.push_back(sample("pressure_seconds_total", {}, ts,
                        static_cast<double>(us) / 1000.0 / 1000.0));
    xs.push_back(sample("spiky_total", {}, ts,
                        static_cast<double>(k == 17 ? uint64_t{1} << 62 : k * 3)));
  }
  return xs;
}

} // namespace

TEST_CASE("v2 value columns: two divisions, minimum offset, Rice codes") {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    auto xs = v2_columns(seed);
    round_trip(xs);
    std::mt19937 rng(static_cast<uint32_t>(seed));
    auto ys = xs;
    std::shuffle(ys.begin(), ys.end(), rng);
    round_trip(ys);
  }
  // Pressure counters are scaled integers (m / 10^3 / 10^3), not XOR (which
  // takes 6-7 bytes a point for these).
  {
    metric_samples ps;
    for (auto& s : v2_columns(3))
      if (s.name == "pressure_seconds_total") ps.push_back(s);
    codec_context enc;
    CHECK(encode_columnar(ps, enc).size() < 30 * 5);
  }
  // Nanosecond timings (up to ~2^19): Rice codes of the offsets from the
  // column minimum take about 2.5 bytes a point, byte planes 3 (720 bytes
  // for the 240 points), plus about 240 bytes of names and labels.
  {
    metric_samples ds;
    for (auto& s : v2_columns(4))
      if (s.name == "duration_seconds") ds.push_back(s);
    codec_context enc;
    auto bytes = encode_columnar(ds, enc);
    CHECK(bytes.size() < 900);
  }
  // Values whose two-division form needs the exact rounding of each step.
  metric_samples zs;
  for (int64_t us = 0; us < 3000; us += 7)
    zs.push_back(sample("us", {}, us, static_cast<double>(us * 1000003) / 1000.0 / 1000.0));
  round_trip(zs);
}

TEST_CASE("v2 value columns: corrupt or truncated input is an error") {
  codec_context enc;
  auto xs = v2_columns(9);
  check_corruption(encode_columnar(xs, enc), 17);
  // A Rice column alone, and one with an escaped (huge) quotient.
  metric_samples rice;
  for (int k = 0; k < 40; ++k)
    rice.push_back(sample("r", {}, k * 10000,
                          static_cast<double>((k * 7919) % 1000 + (k == 5 ? 1000000 : 0))));
  auto bytes = encode_columnar(rice, enc);
  round_trip(rice);
  check_corruption(bytes, 23);
  // The last column's value body ends the batch: a Rice column's last byte
  // with a non-zero padding bit is refused.
  metric_samples last;
  for (int k = 0; k < 7; ++k)
    last.push_back(sample("t", {}, k * 10000, static_cast<double>((k * 37) % 11)));
  auto b2 = encode_columnar(last, enc);
  round_trip(last);
  REQUIRE(b2.size() > 4);
  // The streams end 01 07 (plain, reconstruction 0) 01 00 (scale 0) 01 00
  // (zz m[0]) 01 83 (Rice, k = 3) 04, then 30 bits for zz 8, 16, 2, 10,
  // 18, 4 in 4 bytes: the top 2 bits pad.
  CHECK(static_cast<uint8_t>(b2[b2.size() - 6]) == 0x83);
  auto padded = b2;
  padded.back() = static_cast<char>(padded.back() | 0x80);
  codec_context dec;
  CHECK(!decode_columnar(padded, dec));
  // Unknown reconstruction or mode, or a scale above 15, is refused.
  metric_samples one = {sample("x", {}, 1, 0.5), sample("x", {}, 2, 0.25)};
  auto b1 = encode_columnar(one, enc);
  REQUIRE(decode_columnar(b1, dec));
  // The streams: 01 07 (plain), 01 02 (scale 2), 01 64 (zz 50), 01 01 (one
  // plane), 01 32 (zz 25).
  size_t kind_at = b1.size() - 9;
  CHECK(static_cast<uint8_t>(b1[kind_at]) == 0x07);
  CHECK(static_cast<uint8_t>(b1[kind_at + 2]) == 2);
  // Reconstruction 3, modes 11 and 15, a reference to no earlier slot, a
  // continuation of a series without history.
  for (int v : {0x37, 0x0B, 0x0F, 0x09, 0x47, 0x41}) {
    auto bad = b1;
    bad[kind_at] = static_cast<char>(v);
    codec_context d;
    CHECK(!decode_columnar(bad, d));
  }
  auto bad_scale = b1;
  bad_scale[kind_at + 2] = 16;
  codec_context d;
  CHECK(!decode_columnar(bad_scale, d));
}

namespace {

// Five-minute batches of a device's series: a counter, a gauge in 4 KiB
// pages, free and available bytes of one filesystem (a constant apart),
// nanosecond timings, a constant and a float with NaN and infinities.
std::vector<metric_samples> device_batches(int nbatches, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<metric_samples> out;
  double counter = 1e9;
  int64_t pages = 250000;
  int64_t free_bytes = 40LL << 30;
  for (int b = 0; b < nbatches; ++b) {
    metric_samples xs;
    for (int k = 0; k < 30; ++k) {
      int64_t ts = 1795639735368 + (b * 30 + k) * 10020
                   + static_cast<int64_t>(rng() % 7);
      counter += static_cast<double>(rng() % 100000);
      pages += static_cast<int64_t>(rng() % 201) - 100;
      free_bytes -= static_cast<int64_t>(rng() % 64) * 4096;
      xs.push_back(sample("c_total", {}, ts, counter));
      xs.push_back(sample("mem_bytes", {}, ts, static_cast<double>(pages * 4096)));
      xs.push_back(sample("fs_free", {{"mp", "/"}}, ts, static_cast<double>(free_bytes)));
      xs.push_back(sample("fs_avail", {{"mp", "/"}}, ts,
                          static_cast<double>(free_bytes - (2LL << 30))));
      xs.push_back(sample("dur_seconds", {}, ts,
                          static_cast<double>(20000 + rng() % 30000) / 1e9));
      xs.push_back(sample("const", {}, ts, 42.0));
      double f = std::ldexp(static_cast<double>(rng() >> 11), -50);
      if (k == 29 && b % 2 == 0) f = std::nan("");
      if (k == 0 && b % 3 == 1) f = std::numeric_limits<double>::infinity();
      xs.push_back(sample("odd", {}, ts, f));
    }
    out.push_back(std::move(xs));
  }
  return out;
}

} // namespace

TEST_CASE("a session continues each series' history across batches") {
  auto batches = device_batches(6, 5);
  codec_context enc;
  codec_context dec;
  size_t continued = 0;
  size_t fresh = 0;
  for (auto& b : batches) {
    auto bytes = encode_columnar(b, enc);
    continued += bytes.size();
    // The same series table without histories.
    codec_context names;
    for (auto& key : enc.series) names.add(key);
    fresh += encode_columnar(b, names).size();
    auto got = decode_columnar(bytes, dec);
    REQUIRE(got);
    check_same(*got, b);
    // The sender advances by decoding its own batch: the same state.
    REQUIRE(decode_columnar(bytes, enc));
    CHECK(enc.digest() == dec.digest());
    CHECK(enc.state.size() == 7);
  }
  // First values, kinds, scales and selectors from the histories.
  MESSAGE("continued " << continued << " bytes, without histories " << fresh);
  CHECK(continued < fresh);
  // commit_columnar is the same as decoding what encode_columnar gives.
  codec_context other;
  for (auto& b : batches)
    REQUIRE(!commit_columnar(other, b));
  CHECK(other.digest() == enc.digest());
}

TEST_CASE("one value a series a batch (a 10 s sync) continues the history") {
  // Each batch one round: a counter that grows by a steady step, one by a
  // varying step, a gauge with two decimals and a value that names its round
  // (the load generator's); from the third batch each continues its history.
  auto round_of = [](int r) {
    metric_samples xs;
    int64_t ts = 1700000000000 + r * 10000;
    for (int i = 0; i < 20; ++i)
      xs.push_back({"load", {{"series", std::to_string(i)}}, ts,
                    r * 1e6 + i});
    xs.push_back({"bytes", {}, ts, 4e9 + r * 4096.0 * (r % 3 + 1)});
    xs.push_back({"load1", {}, ts, (50 + r % 7) / 100.0});
    xs.push_back({"nan", {}, ts, double_of(0x7ff8000000000000ULL | r)});
    return xs;
  };
  codec_context enc;
  codec_context dec;
  size_t steady = 0;
  for (int r = 1; r <= 8; ++r) {
    auto before = dec;
    auto bytes = session_step(round_of(r), enc, dec);
    if (r >= 3)
      steady = std::max(steady, bytes.size());
    // Against the state the batch was encoded for, not the one after it.
    if (r == 4)
      check_corruption(bytes, 41, before);
  }
  // Sent whole, the values took 211 bytes here; continued, the batch is
  // the header and five bytes a slot (index, group, kind, scale, selector:
  // mostly repeats and zeros, which zstd takes) and little else.
  MESSAGE("steady batch of 23 series: " << steady << " bytes");
  CHECK(steady < 23 * 5 + 45);
}

TEST_CASE("a batch encoded against another history is refused as out of sync") {
  auto batches = device_batches(3, 8);
  codec_context enc;
  REQUIRE(!commit_columnar(enc, batches[0]));
  auto b2 = encode_columnar(batches[1], enc);
  // Same series, other history (the receiver saw another first batch).
  auto other = device_batches(1, 9)[0];
  codec_context dec;
  REQUIRE(!commit_columnar(dec, other));
  REQUIRE(dec.series.size() == enc.series.size());
  auto digest = dec.digest();
  auto got = decode_columnar(b2, dec);
  REQUIRE(!got);
  CHECK(got.error().code() == make_error(ec::session_out_of_sync).code());
  CHECK(dec.digest() == digest);
  // Another table size: out of sync as well.
  codec_context none;
  auto again = decode_columnar(b2, none);
  REQUIRE(!again);
  CHECK(again.error().code() == make_error(ec::session_out_of_sync).code());
  // Self-contained batches (base 0) need no history.
  auto b3 = encode_columnar(batches[2], codec_context{});
  codec_context empty;
  REQUIRE(decode_columnar(b3, empty));
}

TEST_CASE("histories are saved and loaded beside the series table") {
  auto batches = device_batches(3, 12);
  codec_context enc;
  REQUIRE(!commit_columnar(enc, batches[0]));
  REQUIRE(!commit_columnar(enc, batches[1]));
  auto saved = enc.save_history();
  // A restarted device: the series table from its rows, then histories.
  codec_context loaded;
  for (auto& key : enc.series)
    loaded.add(key);
  CHECK(loaded.digest() != enc.digest());
  REQUIRE(!loaded.load_history(saved));
  CHECK(loaded.digest() == enc.digest());
  auto b3 = encode_columnar(batches[2], loaded);
  CHECK(b3 == encode_columnar(batches[2], enc));
  auto got = decode_columnar(b3, enc);
  REQUIRE(got);
  check_same(*got, batches[2]);
  // Histories of another table, truncated or with junk are refused; the
  // context keeps what it had.
  codec_context small;
  small.add(enc.series[0]);
  auto before = small.digest();
  CHECK(small.load_history(saved));
  CHECK(small.digest() == before);
  CHECK(loaded.load_history(saved.substr(0, saved.size() - 1)));
  CHECK(loaded.load_history(saved + "x"));
  std::string bad_count = saved;
  bad_count[0] = 3;
  CHECK(loaded.load_history(bad_count));
  codec_context none;
  CHECK(!none.load_history(""));
}

TEST_CASE("continued batches: corrupt or truncated input is an error") {
  auto batches = device_batches(2, 21);
  codec_context enc;
  REQUIRE(!commit_columnar(enc, batches[0]));
  auto bytes = encode_columnar(batches[1], enc);
  check_corruption(bytes, 31, enc);
}

TEST_CASE("a column predicted from an earlier one costs little") {
  // Free bytes alone, then free and available bytes: the second column is
  // the first's deltas again and takes a few bytes.
  auto all = device_batches(1, 3)[0];
  metric_samples one;
  metric_samples two;
  for (auto& s : all) {
    if (s.name == "fs_free") one.push_back(s);
    if (s.name == "fs_free" || s.name == "fs_avail") two.push_back(s);
  }
  auto b1 = encode_columnar(one, codec_context{});
  auto b2 = encode_columnar(two, codec_context{});
  MESSAGE("free alone " << b1.size() << " bytes, with avail " << b2.size());
  CHECK(b2.size() < b1.size() + 40);
  round_trip(two);
}

namespace {

// A value of one of several kinds; a series switches kinds between batches
// so that histories stop scaling, constants break, NaNs appear.
double random_value(std::mt19937_64& rng, int kind, double prev) {
  switch (kind) {
    case 0: return prev + static_cast<double>(rng() % 1000); // counter
    case 1: return static_cast<double>(rng() % 100) / 100.0;  // decimals
    case 2: return static_cast<double>(rng() % 100000) / 1e9; // timings
    case 3: return 42.0;                                        // constant
    case 4: return prev;                                        // unchanged
    case 5: return std::ldexp(static_cast<double>(rng() >> 11), -53);
    case 6: return double_of(rng()); // any bits, NaN payloads too
    case 7: return -prev;            // sign flips, -0.0
    default: return static_cast<double>(static_cast<int64_t>(rng())); // huge
  }
}

} // namespace

TEST_CASE("random sessions: every batch decodes back and both sides agree") {
  // FLEETD_CODEC_SEEDS=N runs N seeds (default 300).
  const char* env = std::getenv("FLEETD_CODEC_SEEDS");
  uint64_t seeds = env != nullptr ? std::strtoull(env, nullptr, 10) : 300;
  for (uint64_t seed = 1; seed <= seeds; ++seed) {
    std::mt19937_64 rng(seed);
    int nseries = 1 + static_cast<int>(rng() % 40);
    std::vector<double> last(nseries, 0.0);
    codec_context enc;
    codec_context dec;
    int64_t t = static_cast<int64_t>(rng() % 1000000);
    for (int b = 0; b < 6; ++b) {
      metric_samples xs;
      std::vector<int> kind(nseries);
      for (auto& k : kind) k = static_cast<int>(rng() % 11);
      int scrapes = 1 + static_cast<int>(rng() % 12);
      for (int k = 0; k < scrapes; ++k) {
        t += static_cast<int64_t>(rng() % 20000);
        for (int i = 0; i < nseries; ++i) {
          if (rng() % 5 == 0) continue; // absent from this scrape
          // Some series sampled at their own instants (another group).
          int64_t ts = (i % 3 == 0) ? t + static_cast<int64_t>(rng() % 3) : t;
          // Kinds 9 and 10 follow the series before (references).
          if (kind[i] == 9 && i > 0)
            last[i] = last[i - 1] + 4096.0;
          else if (kind[i] == 10 && i > 0)
            last[i] = 1e9 - last[i - 1];
          else
            last[i] = random_value(rng, kind[i] % 9, last[i]);
          xs.push_back(sample("s" + std::to_string(i), {{"i", std::to_string(i % 4)}},
                              ts, last[i]));
        }
      }
      if (rng() % 4 == 0) std::shuffle(xs.begin(), xs.end(), rng);
      auto bytes = encode_columnar(xs, enc);
      check_indexed_agrees(bytes, dec);
      check_delta_agrees(bytes, dec, xs);
      auto got = decode_columnar(bytes, dec);
      REQUIRE_MESSAGE(got, "seed " << seed << " batch " << b << ": "
                                    << render(got.error()));
      check_same(*got, xs);
      REQUIRE(decode_columnar(bytes, enc));
      REQUIRE(enc.digest() == dec.digest());
      // Now and then a batch is lost: both sides start a new session.
      if (rng() % 10 == 0) {
        enc.clear();
        dec.clear();
      }
    }
  }
}

namespace {

void put_var(std::string& out, uint64_t x) {
  while (x >= 0x80) {
    out.push_back(static_cast<char>((x & 0x7F) | 0x80));
    x >>= 7;
  }
  out.push_back(static_cast<char>(x));
}

// The start of a batch against `ctx`: version, base, digest.
std::string header_for(const codec_context& ctx) {
  std::string out(1, static_cast<char>(columnar_format_version));
  put_var(out, ctx.series.size());
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>(ctx.digest() >> (8 * i)));
  return out;
}

// A definition of a series named `name` without labels.
std::string definition_of(const std::string& name) {
  std::string def;
  put_var(def, name.size());
  def += name;
  def.push_back(0);
  return def;
}

} // namespace

// The largest single allocation since it was reset: a hostile batch must be
// refused before anything is sized by the counts it claims.
static std::atomic<size_t> largest_allocation{0};

void* operator new(size_t n) {
  size_t seen = largest_allocation.load(std::memory_order_relaxed);
  while (n > seen && !largest_allocation.compare_exchange_weak(seen, n)) {
  }
  if (void* p = std::malloc(n == 0 ? 1 : n))
    return p;
  throw std::bad_alloc{};
}
// GCC sees new/delete pairs inlined into malloc/free and warns wrongly.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

TEST_CASE("claimed timestamps are charged before they are sized") {
  // One group of 2^22 timestamps at a constant interval: a zero-width
  // column, 12 bytes in all, that asked for 64 MB before it was charged.
  codec_context dec;
  dec.max_decoded_bytes = 1 << 20;
  auto b = header_for(dec);
  put_var(b, 0);                           // no definitions
  put_var(b, 0);                           // no slots
  put_var(b, 1);                           // one group
  put_var(b, size_t{1} << 22);             // of 2^22 timestamps
  b += std::string("\x00\x02\x00", 3);     // t0 = 0, every 1 ms, width 0
  b += std::string(6, '\0');               // canonical order, no values
  largest_allocation = 0;
  auto got = decode_columnar(b, dec);
  size_t largest = largest_allocation;
  REQUIRE(!got);
  CHECK(got.error() == ec::too_large);
  CHECK(render(got.error()).find("timestamps too many") != std::string::npos);
  CHECK(largest < (size_t{1} << 20));
  // Within budget the same group decodes (an empty batch: no slot uses it).
  codec_context roomy;
  auto ok = header_for(roomy) + b.substr(header_for(dec).size());
  auto fine = decode_columnar(ok, roomy);
  REQUIRE_MESSAGE(fine, render(fine.error()));
  CHECK(fine->empty());
}

TEST_CASE("hostile batches that would decode to far more than they are "
          "are refused") {
  codec_context dec;
  SUBCASE("one constant column of 2^20 points of a 10 KB series") {
    auto b = header_for(dec);
    put_var(b, 1); // one definition
    put_var(b, 0);
    auto def = definition_of(std::string(10000, 'a'));
    put_var(b, def.size());
    b += def;
    b += std::string("\x01\x00\x01", 3); // one slot (series 0), one group
    put_var(b, 1 << 20);                 // of 2^20 points
    b += std::string("\x00\x02\x00", 3); // t0 = 0, then every 1 ms
    b += std::string("\x00\x00", 2);     // slot 0 in group 0, canonical
    // kinds 03 (constant), scales 00, params zz(1), no selector, no body.
    b += std::string("\x01\x03\x01\x00\x01\x02\x00\x00", 8);
    auto got = decode_columnar(b, dec);
    REQUIRE(!got);
    CHECK(render(got.error()).find("decoded batch too large")
          != std::string::npos);
    // The same with a short name is a valid batch of 2^20 points.
    codec_context ok;
    auto small = header_for(ok);
    small += std::string("\x01\x00", 2);
    auto d2 = definition_of("x");
    put_var(small, d2.size());
    small += d2;
    small += b.substr(b.size() - 19); // slots, groups, order, streams
    auto xs = decode_columnar(small, ok);
    REQUIRE_MESSAGE(xs, render(xs.error()));
    CHECK(xs->size() == (size_t{1} << 20));
  }
  SUBCASE("a definition over 64 KiB") {
    auto b = header_for(dec);
    put_var(b, 1);
    put_var(b, 0);
    auto def = definition_of(std::string(70000, 'a'));
    put_var(b, def.size());
    b += def;
    auto got = decode_columnar(b, dec);
    REQUIRE(!got);
    CHECK(render(got.error()).find("series definitions too long")
          != std::string::npos);
  }
  SUBCASE("front-coded definitions that repeat a long prefix") {
    // 200 series of 20 KB names, 6 bytes each on the wire after the first.
    dec.max_decoded_bytes = 1 << 20;
    auto b = header_for(dec);
    put_var(b, 200);
    auto first = definition_of(std::string(20000, 'a'));
    put_var(b, 0);
    put_var(b, first.size());
    b += first;
    for (int i = 1; i < 200; ++i) {
      put_var(b, first.size() - 2); // all but the last name byte and count
      b += std::string("\x02", 1);
      b.push_back(static_cast<char>(i));
      b.push_back(0);
    }
    CHECK(b.size() < 22000);
    auto got = decode_columnar(b, dec);
    REQUIRE(!got);
    CHECK(render(got.error()).find("series definitions too long")
          != std::string::npos);
    CHECK(dec.series.empty());
  }
}

TEST_CASE("a two-division scale of more than 15 digits in all is refused") {
  // Series x with a history (1.5, 2.5: plain, scale 1), then a batch at the
  // same two instants that continues it.
  auto at = [](double a, double b) {
    return metric_samples{sample("x", {}, 0, a), sample("x", {}, 1, b)};
  };
  codec_context enc;
  REQUIRE(!commit_columnar(enc, at(1.5, 2.5)));
  auto b = encode_columnar(at(3.5, 4.5), enc);
  // Header (10), no definitions, one slot, one group of 2 (t0 0, d1 1, an
  // empty column), slot group, order: the streams start at byte 20.
  REQUIRE(b.size() > 24);
  CHECK(static_cast<uint8_t>(b[20]) == 1); // kinds: one byte,
  CHECK(static_cast<uint8_t>(b[21]) == (0x41 ^ 0x07)); // continued dod
  CHECK(static_cast<uint8_t>(b[22]) == 1); // scales: one byte,
  CHECK(static_cast<uint8_t>(b[23]) == (1 ^ 1)); // scale 1 as before
  codec_context copy = enc;
  REQUIRE(decode_columnar(b, copy));
  // Reconstruction 2 (two divisions) with a = b = 15.
  auto bad = b;
  bad[21] = static_cast<char>(0x61 ^ 0x07);
  bad[23] = static_cast<char>(0xFF ^ 1);
  codec_context dec = enc;
  auto refused = decode_columnar(bad, dec);
  REQUIRE(!refused);
  CHECK(render(refused.error()).find("bad scale") != std::string::npos);
}

TEST_CASE("NaN payloads, infinities and -0.0 continue bit for bit through a "
          "session: after themselves, after ordinary values and before them") {
  // Per series: the special value, again, an ordinary one, the special one.
  const double specials[] = {double_of(0x7ff800005ca1ab1eULL),
                             double_of(0xfff0000000000001ULL),
                             std::numeric_limits<double>::infinity(),
                             -std::numeric_limits<double>::infinity(), -0.0};
  const double after[] = {0, 1, 2.5};
  codec_context enc;
  codec_context dec;
  for (int b = 0; b < 4; ++b) {
    CAPTURE(b);
    metric_samples xs;
    for (size_t i = 0; i < std::size(specials); ++i) {
      auto v = b == 2 ? after[i % std::size(after)] : specials[i];
      xs.push_back(sample("special", {{"i", std::to_string(i)}},
                          1700000000000 + b * 1000, v));
    }
    session_step(xs, enc, dec);
  }
}
