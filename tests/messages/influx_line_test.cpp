// The Influx line protocol parser: every value type, escapes and precision;
// each kind of bad line refused alone with its neighbours kept; limits stop
// a request before it is materialised; seeded mutations
// (FLEETD_FUZZ_ITERATIONS, default 20000) neither crash it nor break what it
// promises about the samples it keeps.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>

#include "fuzz.hpp"
#include "messages/error.hpp"
#include "messages/influx_line.hpp"
#include "messages/labels.hpp"

using namespace fleetd;

namespace {

constexpr int64_t now_ms = 1'700'000'000'000;

influx_batch parse(std::string_view text,
                   influx_precision p = influx_precision::ns,
                   const influx_limits& limits = {}) {
  return parse_influx_lines(text, now_ms, p, limits);
}

} // namespace

TEST_CASE("lines become one sample per numeric field, tags as labels") {
  auto b = parse(
    "# a comment\n"
    "cpu,host=a,region=eu-1 usage=0.5,count=3i,big=18446744073709551615u,"
    "ok=true,bad=F,note=\"x, y=\\\"z\\\"\" 1700000000123456789\n"
    "\n"
    "  weather\\ station,city=New\\ York\\,NY,k\\=1=v temp=-1.5e1\r\n"
    "mem free=1024i -1500000\n");
  CHECK(b.bad_lines == 0);
  CHECK(!b.stopped);
  CHECK(b.skipped_strings == 1);
  REQUIRE(b.samples.size() == 7);
  auto& s = b.samples;
  label_map cpu_tags{{"host", "a"}, {"region", "eu-1"}};
  CHECK(s[0].name == "cpu_usage");
  CHECK(s[0].labels == cpu_tags);
  CHECK(s[0].value == 0.5);
  CHECK(s[0].timestamp_ms == 1700000000123);
  CHECK(s[1].name == "cpu_count");
  CHECK(s[1].value == 3);
  CHECK(s[2].value == 18446744073709551615.0);
  CHECK(s[3].name == "cpu_ok");
  CHECK(s[3].value == 1);
  CHECK(s[4].value == 0);
  CHECK(s[5].name == "weather station_temp");
  CHECK(s[5].labels == label_map{{"city", "New York,NY"}, {"k=1", "v"}});
  CHECK(s[5].value == -15);
  CHECK(s[5].timestamp_ms == now_ms);
  CHECK(s[6].name == "mem_free");
  // Nanoseconds before 1970 round down to the millisecond.
  CHECK(s[6].timestamp_ms == -2);
}

TEST_CASE("the precision scales timestamps to milliseconds") {
  struct p_case {
    const char* name;
    int64_t ts;
    int64_t ms;
  };
  for (auto c : {p_case{"ns", 1'700'000'000'123'456'789, 1'700'000'000'123},
                 p_case{"n", 5'999'999, 5}, p_case{"us", 1'700'000'000'123'456,
                                                   1'700'000'000'123},
                 p_case{"u", -1, -1}, p_case{"ms", 42, 42},
                 p_case{"s", 1'700'000'000, 1'700'000'000'000}}) {
    CAPTURE(c.name);
    influx_precision p;
    REQUIRE(parse_influx_precision(c.name, p));
    auto b = parse("m v=1 " + std::to_string(c.ts), p);
    REQUIRE(b.samples.size() == 1);
    CHECK(b.samples[0].timestamp_ms == c.ms);
  }
  influx_precision p;
  CHECK(!parse_influx_precision("h", p));
  CHECK(!parse_influx_precision("", p));
  auto far = parse("m v=1 9223372036854775807", influx_precision::s);
  CHECK(far.samples.empty());
  REQUIRE(far.errors.size() == 1);
  CHECK(far.errors[0].reason.find("bad timestamp") == 0);
}

TEST_CASE("each bad line is refused alone with a reason; its neighbours stay") {
  struct bad_case {
    const char* line;
    const char* reason;
  };
  const bad_case cases[] = {
    {",t=1 v=1", "line without a measurement"},
    {"m", "no fields after the measurement and tags"},
    {"m,t=1", "no fields after"},
    {"m,=1 v=1", "tag without a key or '='"},
    {"m,t v=1", "tag without a key or '='"},
    {"m,t= v=1", "tag t without a value"},
    {"m,t=1,t=2 v=1", "a tag given twice"},
    {"m v", "field without a key or '='"},
    {"m =1", "field without a key or '='"},
    {"m v=", "field without a value"},
    {"m v=1,v=2", "field v given twice"},
    {"m v=abc", "bad field value 'abc'"},
    {"m v=1.5i", "bad field value"},
    {"m v=-1u", "bad field value"},
    {"m v=99999999999999999999i", "bad field value"},
    {"m v=NaN", "bad field value"},
    {"m v=+Inf", "bad field value"},
    {"m v=\"open", "string field without its closing quote"},
    {"m v=1 12x", "bad timestamp '12x'"},
    {"m v=1 1 2", "text after the timestamp"},
    {"m\xff v=1", "measurement is not UTF-8 text"},
    {"m,t=\xc3 v=1", "a tag is not UTF-8 text"},
    {"m \xff=1", "a field key is not UTF-8 text"},
  };
  for (auto& c : cases) {
    CAPTURE(c.line);
    auto alone = parse(c.line);
    CHECK(alone.samples.empty());
    CHECK(alone.bad_lines == 1);
    REQUIRE(alone.errors.size() == 1);
    CHECK(alone.errors[0].line == 1);
    CHECK(alone.errors[0].reason.find(c.reason) != std::string::npos);
    auto around = parse(std::string("before v=1\n") + c.line
                        + "\nafter,x=y v=2\n");
    CHECK(around.bad_lines == 1);
    REQUIRE(around.errors.size() == 1);
    CHECK(around.errors[0].line == 2);
    REQUIRE(around.samples.size() == 2);
    CHECK(around.samples[0].name == "before_v");
    CHECK(around.samples[1].name == "after_v");
  }
}

TEST_CASE("limits stop what a request materialises before it is made") {
  SUBCASE("a line past max_line_bytes is skipped, the rest kept") {
    influx_limits limits;
    limits.max_line_bytes = 100;
    auto b = parse("a v=1\nb,t=" + std::string(200, 'y') + " v=1\nc v=1\n",
                   influx_precision::ns, limits);
    CHECK(b.samples.size() == 2);
    REQUIRE(b.errors.size() == 1);
    CHECK(b.errors[0].reason == "line longer than 100 bytes");
  }
  SUBCASE("tags and fields per line") {
    influx_limits limits;
    limits.max_tags = 2;
    limits.max_fields = 2;
    CHECK(parse("m,a=1,b=2 x=1,y=2", influx_precision::ns, limits)
            .samples.size()
          == 2);
    auto tags = parse("m,a=1,b=2,c=3 x=1", influx_precision::ns, limits);
    REQUIRE(tags.errors.size() == 1);
    CHECK(tags.errors[0].reason == "more than 2 tags");
    auto fields = parse("m x=1,y=2,z=3", influx_precision::ns, limits);
    REQUIRE(fields.errors.size() == 1);
    CHECK(fields.errors[0].reason == "more than 2 fields");
  }
  SUBCASE("max_samples stops the request at a whole line") {
    influx_limits limits;
    limits.max_samples = 10;
    std::string text;
    for (int i = 0; i < 100; ++i)
      text += "m,i=" + std::to_string(i) + " a=1,b=2,c=3\n";
    auto b = parse(text, influx_precision::ns, limits);
    CHECK(b.samples.size() == 9);
    CHECK(b.stopped == ec::too_large);
  }
  SUBCASE("the decode budget stops the request") {
    influx_limits limits;
    limits.max_decoded_bytes = 64 * 1024;
    std::string text;
    for (int i = 0; i < 100000; ++i)
      text += "m" + std::to_string(i) + ",i=" + std::to_string(i) + " v=1\n";
    auto b = parse(text, influx_precision::ns, limits);
    CHECK(b.stopped == ec::too_large);
    CHECK(!b.samples.empty());
    CHECK(b.samples.size() * sizeof(metric_sample) <= limits.max_decoded_bytes);
  }
}

TEST_CASE("seeded mutations neither crash the parser nor break its promises") {
  auto iterations = test::fuzz_iterations(20000);
  const std::string seed_text =
    "cpu,host=a,region=eu usage=0.5,count=3i,ok=t,note=\"a \\\"b\\\"\" "
    "1700000000000000000\nweather\\ st,city=N\\ Y temp=-1.5e1,u=7u\n"
    "# comment\nmem free=1024i\n";
  const std::string alphabet = ",= \"\\#\n\tiutfTF0123456789.e-+\xff\xc3";
  std::mt19937_64 rng(20261207);
  influx_limits limits;
  limits.max_samples = 50;
  limits.max_line_bytes = 256;
  limits.max_decoded_bytes = 16 * 1024;
  size_t kept = 0, refused = 0;
  for (long i = 0; i < iterations; ++i) {
    auto text = test::mutate(seed_text, alphabet, rng);
    auto b = parse(text, influx_precision::ns, limits);
    REQUIRE(b.samples.size() <= limits.max_samples);
    REQUIRE(b.errors.size() <= b.bad_lines);
    REQUIRE(b.errors.size() <= limits.max_errors);
    for (auto& s : b.samples) {
      REQUIRE(s.name.size() >= 3); // m_f at least
      REQUIRE(bad_text_at(s.name) == std::string::npos);
      REQUIRE(std::isfinite(s.value));
      for (auto& [k, v] : s.labels) {
        REQUIRE(!k.empty());
        REQUIRE(!v.empty());
        REQUIRE(bad_text_at(k) == std::string::npos);
        REQUIRE(bad_text_at(v) == std::string::npos);
      }
    }
    kept += b.samples.size();
    refused += b.bad_lines;
  }
  MESSAGE("mutated requests: " << iterations << ", samples kept " << kept
                               << ", lines refused " << refused);
  CHECK(kept > 0);
  CHECK(refused > 0);
}
