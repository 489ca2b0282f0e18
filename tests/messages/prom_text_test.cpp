// The Prometheus text parser: a real node_exporter capture parses whole,
// every kind of bad line is refused alone with the good lines around it
// kept, limits stop a page before it is materialised, and seeded mutations
// (FLEETD_FUZZ_ITERATIONS, default 20000) neither crash it nor break what
// it promises about the samples it keeps.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "heap_count.hpp"
#include "messages/decode_budget.hpp"
#include "fuzz.hpp"
#include "messages/error.hpp"
#include "messages/labels.hpp"
#include "messages/prom_text.hpp"
#include "messages/wire.hpp"

using namespace fleetd;

namespace {

constexpr int64_t now_ms = 1'700'000'000'000;

const metric_sample& only_sample(const prom_page& p) {
  REQUIRE(p.samples.size() == 1);
  return p.samples.front();
}

bool same_bits(double a, double b) {
  return (std::isnan(a) && std::isnan(b))
         || std::memcmp(&a, &b, sizeof a) == 0;
}

// Samples as a page that parse_prom_text reads back as the same samples.
std::string render(const metric_samples& xs) {
  std::ostringstream out;
  out.precision(17);
  for (auto& x : xs) {
    out << x.name;
    if (!x.labels.empty()) {
      out << '{';
      for (auto& [k, v] : x.labels) {
        out << k << "=\"";
        for (char c : v)
          out << (c == '\\' ? "\\\\" : c == '"' ? "\\\"" : c == '\n' ? "\\n"
                                                            : std::string(1, c));
        out << "\",";
      }
      out << '}';
    }
    if (std::isnan(x.value))
      out << " NaN";
    else if (std::isinf(x.value))
      out << (x.value > 0 ? " +Inf" : " -Inf");
    else
      out << ' ' << x.value;
    out << ' ' << x.timestamp_ms << '\n';
  }
  return out.str();
}

void check_same(const metric_samples& a, const metric_samples& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].name == b[i].name);
    CHECK(a[i].labels == b[i].labels);
    CHECK(a[i].timestamp_ms == b[i].timestamp_ms);
    CHECK(same_bits(a[i].value, b[i].value));
  }
}

} // namespace

TEST_CASE("a page with metadata, escapes, special values and timestamps") {
  auto page = parse_prom_text(
    "# HELP http_requests_total The total number of HTTP requests.\n"
    "# TYPE http_requests_total counter\n"
    "http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n"
    "http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n"
    "\n"
    "# Escaping in label values:\n"
    "msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error="
    "\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n"
    "metric_without_timestamp_and_labels 12.47\r\n"
    "  \t something_weird{problem=\"division by zero\"} +Inf -3982045\n"
    "# HELP help_escapes a \\\\ backslash, a \\n newline, a \\t stays\n"
    "nan_value nan\n"
    "neg_inf{a=\"b\",} -Inf\n"
    "# TYPE http_request_duration_seconds histogram\n"
    "http_request_duration_seconds_bucket{le=\"0.05\"} 24054\n"
    "http_request_duration_seconds_bucket{le=\"+Inf\"} 144320\n"
    "http_request_duration_seconds_sum 53423\n"
    "http_request_duration_seconds_count 144320\n"
    "# TYPE rpc_duration_seconds summary\n"
    "rpc_duration_seconds{quantile=\"0.5\"} 4773\n"
    "rpc_duration_seconds_sum 1.7560473e+07\n"
    "rpc_duration_seconds_count 2693\n"
    "empty_label{a=\"\", b=\"x\"} 1\n"
    "last_line_without_newline 5",
    now_ms);
  CHECK(page.bad_lines == 0);
  CHECK(!page.stopped);
  REQUIRE(page.samples.size() == 16);
  auto& s = page.samples;
  CHECK(s[0].name == "http_requests_total");
  CHECK(s[0].labels == label_map{{"code", "200"}, {"method", "post"}});
  CHECK(s[0].value == 1027);
  CHECK(s[0].timestamp_ms == 1395066363000);
  CHECK(s[1].value == 3);
  CHECK(s[2].labels.at("path") == "C:\\DIR\\FILE.TXT");
  CHECK(s[2].labels.at("error") == "Cannot find file:\n\"FILE.TXT\"");
  CHECK(s[2].value == 1.458255915e9);
  CHECK(s[2].timestamp_ms == now_ms);
  CHECK(s[3].name == "metric_without_timestamp_and_labels");
  CHECK(s[3].value == 12.47);
  CHECK(s[4].value == INFINITY);
  CHECK(s[4].timestamp_ms == -3982045);
  CHECK(std::isnan(s[5].value));
  CHECK(s[6].value == -INFINITY);
  CHECK(s[6].labels == label_map{{"a", "b"}});
  CHECK(s[8].labels.at("le") == "+Inf");
  CHECK(s[11].labels.at("quantile") == "0.5");
  // An empty value is no label at all, as in Prometheus.
  CHECK(s[14].labels == label_map{{"b", "x"}});
  CHECK(s[15].value == 5);
  REQUIRE(page.families.size() == 4);
  CHECK(page.families[0].name == "http_requests_total");
  CHECK(page.families[0].type == prom_type::counter);
  CHECK(page.families[0].help == "The total number of HTTP requests.");
  CHECK(page.families[1].help
        == "a \\ backslash, a \n newline, a \\t stays");
  CHECK(page.families[1].type == prom_type::untyped);
  CHECK(page.families[2].type == prom_type::histogram);
  CHECK(page.families[3].type == prom_type::summary);
  CHECK(std::string(to_string(prom_type::summary)) == "summary");
}

TEST_CASE("each bad line is refused alone with a reason; its neighbours stay") {
  struct bad_case {
    const char* line;
    const char* reason;
  };
  const bad_case cases[] = {
    {"9metric 1", "expected a metric name"},
    {"{a=\"b\"} 1", "expected a metric name"},
    {"metric", "sample without a value"},
    {"metric{a=\"b\"}", "sample without a value"},
    {"metric 1 2 3", "text after the timestamp"},
    {"metric one", "bad sample value 'one'"},
    {"metric 0x10", "bad sample value"},
    {"metric nan(1)", "bad sample value"},
    {"metric 1e999", "bad sample value"},
    {"metric --1", "bad sample value"},
    {"metric 1 1.5", "bad timestamp '1.5'"},
    {"metric 1 99999999999999999999", "bad timestamp"},
    {"metric{a=\"b\"", "labels without their closing brace"},
    {"metric{a=\"b", "label value without its closing quote"},
    {"metric{a=b} 1", "expected a quoted value for label a"},
    {"metric{a\"b\"} 1", "expected '=' after label a"},
    {"metric{1a=\"b\"} 1", "expected a label name"},
    {"metric{a=\"b\" c=\"d\"} 1", "expected ',' or '}' after label a"},
    {"metric{a=\"\\t\"} 1", "unknown escape \\t"},
    {"metric{a=\"x\",a=\"y\"} 1", "label a given twice"},
    {"metric{a=\"\",a=\"y\"} 1", "label a given twice"},
    {"metric{a=\"\xff\"} 1", "not UTF-8 text at byte 0"},
    {"metric{a=\"x\\u0000\"} 1", "unknown escape \\u"},
    {"metric:x{a=\"1\"}x 1", "unexpected character after the metric name"},
    {"# TYPE", "TYPE line without a metric name"},
    {"# TYPE 1x counter", "bad metric name"},
    {"# TYPE metric", "TYPE line without a type"},
    {"# TYPE metric counters", "unknown metric type 'counters'"},
    {"# TYPE metric counter extra", "text after the type"},
    {"# HELP metric bad \xc3", "HELP text is not UTF-8"},
  };
  for (auto& c : cases) {
    CAPTURE(c.line);
    auto alone = parse_prom_text(c.line, now_ms);
    CHECK(alone.samples.empty());
    CHECK(alone.bad_lines == 1);
    REQUIRE(alone.errors.size() == 1);
    CHECK(alone.errors[0].line == 1);
    CHECK(alone.errors[0].reason.find(c.reason) != std::string::npos);
    auto around = parse_prom_text(std::string("before 1\n") + c.line
                                    + "\nafter{x=\"y\"} 2\n",
                                  now_ms);
    CHECK(around.bad_lines == 1);
    REQUIRE(around.errors.size() == 1);
    CHECK(around.errors[0].line == 2);
    REQUIRE(around.samples.size() == 2);
    CHECK(around.samples[0].name == "before");
    CHECK(around.samples[1].name == "after");
  }
}

TEST_CASE("metadata and series are each given once, and in order") {
  auto page = parse_prom_text("# TYPE a counter\n"
                              "# TYPE a gauge\n"
                              "# HELP a first\n"
                              "# HELP a second\n"
                              "b 1\n"
                              "# TYPE b gauge\n"
                              "a{x=\"1\"} 1\n"
                              "a{x=\"1\"} 2\n"
                              "a{x=\"1\",y=\"\"} 3\n"
                              "# TYPE h histogram\n"
                              "h_bucket 1\n"
                              "h_bucket{le=\"many\"} 1\n"
                              "# TYPE s summary\n"
                              "s 1\n"
                              "s_bucket 1\n"
                              "# any other comment\n"
                              "#TYPE c counter\n"
                              "c 1\n",
                              now_ms);
  std::vector<size_t> lines;
  for (auto& e : page.errors)
    lines.push_back(e.line);
  CHECK(lines == std::vector<size_t>{2, 4, 6, 8, 9, 11, 12, 14});
  CHECK(page.errors[0].reason == "second TYPE line for a");
  CHECK(page.errors[1].reason == "second HELP line for a");
  CHECK(page.errors[2].reason == "TYPE line for b after its samples");
  CHECK(page.errors[3].reason.find("series given twice") == 0);
  CHECK(page.errors[5].reason == "histogram sample without its 'le' label");
  CHECK(page.errors[6].reason == "bad 'le' label value");
  CHECK(page.errors[7].reason
        == "summary sample without its 'quantile' label");
  REQUIRE(page.samples.size() == 4);
  CHECK(page.samples[1].name == "a");
  CHECK(page.samples[1].value == 1);
  // s_bucket is no part of a summary: a series of its own.
  CHECK(page.samples[2].name == "s_bucket");
  CHECK(page.samples[3].name == "c");
  // Bad lines make no family (no "b").
  REQUIRE(page.families.size() == 4);
  CHECK(page.families[0].type == prom_type::counter);
  CHECK(page.families[0].help == "first");
  CHECK(page.families[1].name == "h");
  CHECK(page.families.back().name == "c");
  CHECK(page.families.back().type == prom_type::counter);
}

TEST_CASE("limits stop what a page materialises before it is made") {
  SUBCASE("a line past max_line_bytes is skipped, the rest kept") {
    prom_limits limits;
    limits.max_line_bytes = 100;
    auto page = parse_prom_text("a 1\nb{x=\"" + std::string(200, 'y')
                                  + "\"} 1\nc 1\n",
                                now_ms, limits);
    CHECK(page.samples.size() == 2);
    REQUIRE(page.errors.size() == 1);
    CHECK(page.errors[0].line == 2);
    CHECK(page.errors[0].reason == "line longer than 100 bytes");
  }
  SUBCASE("max_labels") {
    prom_limits limits;
    limits.max_labels = 3;
    auto three = parse_prom_text("m{a=\"1\",b=\"2\",c=\"3\"} 1", now_ms,
                                 limits);
    CHECK(three.samples.size() == 1);
    auto four = parse_prom_text("m{a=\"1\",b=\"2\",c=\"3\",d=\"\"} 1", now_ms,
                                limits);
    CHECK(four.samples.empty());
    REQUIRE(four.errors.size() == 1);
    CHECK(four.errors[0].reason == "more than 3 labels");
  }
  SUBCASE("max_samples stops the page") {
    prom_limits limits;
    limits.max_samples = 10;
    std::string text;
    for (int i = 0; i < 100; ++i)
      text += "m{i=\"" + std::to_string(i) + "\"} 1\n";
    auto page = parse_prom_text(text, now_ms, limits);
    CHECK(page.samples.size() == 10);
    CHECK(page.stopped == ec::too_large);
    CHECK(page.bad_lines == 0);
  }
  SUBCASE("the decode budget stops the page") {
    prom_limits limits;
    limits.max_decoded_bytes = 64 * 1024;
    std::string text;
    for (int i = 0; i < 100000; ++i)
      text += "m" + std::to_string(i) + "{i=\"" + std::to_string(i)
              + "\"} 1\n";
    auto page = parse_prom_text(text, now_ms, limits);
    CHECK(page.stopped == ec::too_large);
    CHECK(!page.samples.empty());
    // Each sample takes at least its struct: never more than the budget.
    CHECK(page.samples.size() * sizeof(metric_sample)
          <= limits.max_decoded_bytes);
    CHECK(page.samples.size() < 1000);
  }
  SUBCASE("what the parser holds at its peak stays near the budget") {
    // 10 MB of distinct short samples (about 30 bytes of text each, several
    // hundred decoded): the budget, not the page, bounds the heap.
    std::string text;
    for (int i = 0; text.size() < 10'000'000; ++i)
      text += "m" + std::to_string(i) + "{a=\"" + std::to_string(i)
              + "\"} 1\n";
    for (uint64_t budget : {uint64_t{1} << 20, uint64_t{8} << 20}) {
      CAPTURE(budget);
      prom_limits limits;
      limits.max_decoded_bytes = budget;
      limits.max_samples = 10'000'000;
      auto before = test::heap_reset_peak();
      {
        auto page = parse_prom_text(text, now_ms, limits);
        CHECK(page.stopped == ec::too_large);
        CHECK(page.samples.size() > budget / 1024);
      }
      auto grew = static_cast<uint64_t>(test::heap_peak() - before);
      MESSAGE("budget ", budget / 1024, " KiB: heap peak +", grew / 1024,
              " KiB");
      CHECK(grew <= budget + budget / 4 + 64 * 1024);
    }
  }
  SUBCASE("errors past max_errors are counted, not kept") {
    prom_limits limits;
    limits.max_errors = 5;
    std::string text;
    for (int i = 0; i < 1000; ++i)
      text += "bad line " + std::to_string(i) + "\n";
    auto page = parse_prom_text(text, now_ms, limits);
    CHECK(page.errors.size() == 5);
    CHECK(page.bad_lines == 1000);
    CHECK(page.errors.back().line == 5);
  }
}

TEST_CASE("prometheus floats") {
  double x = 0;
  for (const char* s : {"1", "-1", "+1", "1.5e3", "1E-3", ".5", "5.", "0",
                        "-0", "1e308"}) {
    CAPTURE(s);
    CHECK(parse_prom_float(s, x));
    CHECK(x == std::strtod(s, nullptr));
  }
  CHECK(parse_prom_float("-0", x));
  CHECK(std::signbit(x));
  for (const char* s : {"Inf", "+Inf", "inf", "+infinity", "INF"}) {
    CHECK(parse_prom_float(s, x));
    CHECK(x == INFINITY);
  }
  CHECK(parse_prom_float("-Inf", x));
  CHECK(x == -INFINITY);
  CHECK(parse_prom_float("NaN", x));
  CHECK(std::isnan(x));
  for (const char* s : {"", "+", "-", "e5", "1e", "1..2", "0x1p3", "1_000",
                        "nan(7)", "++1", "+-1", "Infinit", "1 ", "1e400"}) {
    CAPTURE(s);
    CHECK(!parse_prom_float(s, x));
  }
  CHECK(is_metric_name("a:b_c9"));
  CHECK(!is_metric_name("9a"));
  CHECK(!is_metric_name(""));
  CHECK(is_label_name("_a9"));
  CHECK(!is_label_name("a:b"));
}

TEST_CASE("a real node_exporter capture parses whole, value for value") {
  std::ifstream in(std::string(FLEETD_SOURCE_DIR)
                     + "/tests/data/node-exporter-capture.prom.zst",
                   std::ios::binary);
  REQUIRE(in);
  std::string packed((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
  std::string text;
  decode_budget budget(size_t{64} << 20);
  REQUIRE(!zstd_decompress(packed, text, budget));
  // The capture repeats each series once per scrape: a page per scrape.
  size_t lines = 0, samples = 0, checked = 0;
  std::string page_text;
  auto flush = [&] {
    auto page = parse_prom_text(page_text, now_ms);
    CHECK(page.bad_lines == 0);
    CHECK(!page.stopped);
    samples += page.samples.size();
    for (auto& s : page.samples)
      CHECK(s.timestamp_ms != now_ms);
    page_text.clear();
  };
  std::istringstream all(text);
  std::string line, first_series;
  while (std::getline(all, line)) {
    ++lines;
    auto series = line.substr(0, line.rfind(' ', line.rfind(' ') - 1));
    if (series == first_series)
      flush();
    if (first_series.empty())
      first_series = series;
    // A value as the format reads it (checked on every 97th line).
    if (lines % 97 == 0) {
      auto one = parse_prom_text(line, now_ms);
      auto v_end = line.rfind(' ');
      auto v_start = line.rfind(' ', v_end - 1) + 1;
      double want = 0;
      REQUIRE(parse_prom_float(line.substr(v_start, v_end - v_start), want));
      CHECK(same_bits(only_sample(one).value, want));
      CHECK(only_sample(one).timestamp_ms
            == std::stoll(line.substr(v_end + 1)));
      ++checked;
    }
    page_text += line;
    page_text += '\n';
  }
  flush();
  CHECK(lines == 139425);
  CHECK(samples == lines);
  CHECK(checked > 1000);
}

TEST_CASE("seeded mutations neither crash the parser nor break its promises") {
  auto iterations = test::fuzz_iterations(20000);
  const std::string seed_page =
    "# HELP m help \\n text\n# TYPE m counter\n"
    "m{a=\"x\\\\y\",b=\"\\\"q\\\"\"} 1.5e3 1700000000000\n"
    "# TYPE h histogram\nh_bucket{le=\"0.5\"} 3\nh_bucket{le=\"+Inf\"} 4\n"
    "h_sum 2\nh_count 4\nn NaN\ni{z=\"\xc3\xa9\"} -Inf 5\n";
  const std::string alphabet = "{}=\",# \t\n\\aZ_:09.e+-NnIi\xff\xc3";
  std::mt19937_64 rng(20261207);
  prom_limits limits;
  limits.max_samples = 50;
  limits.max_line_bytes = 256;
  limits.max_decoded_bytes = 16 * 1024;
  size_t kept = 0, refused = 0;
  for (long i = 0; i < iterations; ++i) {
    auto text = test::mutate(seed_page, alphabet, rng);
    auto page = parse_prom_text(text, now_ms, limits);
    REQUIRE(page.samples.size() <= limits.max_samples);
    REQUIRE(page.errors.size() <= page.bad_lines);
    REQUIRE(page.errors.size() <= limits.max_errors);
    for (auto& s : page.samples) {
      REQUIRE(is_metric_name(s.name));
      for (auto& [k, v] : s.labels) {
        REQUIRE(is_label_name(k));
        REQUIRE(!v.empty());
        REQUIRE(bad_text_at(v) == std::string::npos);
      }
    }
    // What it kept is a page it reads back the same.
    auto again = parse_prom_text(render(page.samples), now_ms);
    REQUIRE(again.bad_lines == 0);
    check_same(page.samples, again.samples);
    kept += page.samples.size();
    refused += page.bad_lines;
  }
  MESSAGE("mutated pages: " << iterations << ", samples kept " << kept
                            << ", lines refused " << refused);
  CHECK(kept > 0);
  CHECK(refused > 0);
}
