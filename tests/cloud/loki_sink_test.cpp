// loki_sink against the strict Loki stand-in (tests/support): tenants,
// streams, ordering, replay, split pushes, and the sink's answer to each
// refusal Loki makes (acceptance 4 of issue 13).
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "cloud/loki_sink.hpp"
#include "helpers.hpp"
#include "messages/error.hpp"
#include "runtime/options.hpp"
#include "support/loki_standin.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr int64_t now_ns = 1'700'000'000'000'000'000;
constexpr int64_t minute_ns = 60'000'000'000;
constexpr int64_t hour_ns = 60 * minute_ns;

struct fixture {
  explicit fixture(loki_standin_config cfg = {},
                   loki_sink_config sink_cfg = {})
    : loki(with_clock(std::move(cfg))) {
    auto p = loki.start();
    REQUIRE(p);
    port = *p;
    sink_cfg.url = "http://127.0.0.1:" + std::to_string(*p);
    auto s = make_loki_sink(sink_cfg);
    REQUIRE(s);
    sink = std::move(*s);
  }

  static loki_standin_config with_clock(loki_standin_config cfg) {
    cfg.now_ns = [] { return now_ns; };
    return cfg;
  }

  loki_standin loki;
  uint16_t port = 0;
  std::unique_ptr<loki_sink> sink;
};

journal_entry entry(int64_t id, std::string org, std::string device,
                    log_lines logs) {
  journal_entry e;
  e.id = id;
  e.org = std::move(org);
  e.device = std::move(device);
  e.stream = "logs";
  e.logs = std::move(logs);
  return e;
}

log_line line(int64_t ts, std::string text, label_map labels = {}) {
  return log_line{std::move(labels), ts, std::move(text)};
}

const loki_labels d1_app{{"device_id", "d1"}, {"source", "app"}};
const label_map app{{"source", "app"}};

bool is(const caf::error& err, ec code) {
  return is_error(err, code);
}

} // namespace

TEST_CASE("two orgs land in separate tenants, streams by device and source") {
  fixture f;
  journal_entries xs{
    entry(1, "acme", "d1",
          {line(now_ns, "a", app),
           line(now_ns + 1, "b", {{"file", "/var/log/x"}, {"level", "warn"}}),
           line(now_ns + 2, "c")}),
    entry(2, "globex", "d1", {line(now_ns, "z", app)})};
  CHECK_FALSE(f.sink->write(xs));
  CHECK(f.loki.entries("acme", d1_app) == std::vector<loki_entry>{{now_ns, "a"}});
  CHECK(f.loki.entries("acme", {{"device_id", "d1"}, {"source", "/var/log/x"}})
        == std::vector<loki_entry>{{now_ns + 1, "b level=warn"}});
  CHECK(f.loki.entries("acme", {{"device_id", "d1"}, {"source", "unknown"}})
          .size()
        == 1);
  CHECK(f.loki.entries("globex", d1_app)
        == std::vector<loki_entry>{{now_ns, "z"}});
  CHECK(f.loki.entry_count("acme") == 3);
  CHECK(f.loki.entry_count("globex") == 1);
  CHECK(f.sink->stats().entries == 4);
}

TEST_CASE("entries without log lines make no push") {
  fixture f;
  journal_entry samples_only = entry(1, "acme", "d1", {});
  samples_only.samples.push_back(metric_sample{"cpu", {}, 1, 0.5});
  CHECK_FALSE(f.sink->write({}));
  CHECK_FALSE(f.sink->write({samples_only}));
  CHECK(f.loki.pushes() == 0);
}

TEST_CASE("entries reach each stream in timestamp order, across entries") {
  fixture f;
  // Newest first and more than the out-of-order window apart: unsorted,
  // Loki would refuse the older lines as too far behind.
  journal_entries xs{entry(1, "acme", "d1", {line(now_ns, "late", app)}),
                     entry(2, "acme", "d1",
                           {line(now_ns - 2 * hour_ns, "early", app),
                            line(now_ns - hour_ns, "mid", app)})};
  CHECK_FALSE(f.sink->write(xs));
  CHECK(f.loki.entries("acme", d1_app)
        == std::vector<loki_entry>{{now_ns - 2 * hour_ns, "early"},
                                   {now_ns - hour_ns, "mid"},
                                   {now_ns, "late"}});
}

TEST_CASE("a replayed write adds nothing") {
  fixture f;
  journal_entries xs{entry(1, "acme", "d1",
                           {line(now_ns, "a", app), line(now_ns, "b", app),
                            line(now_ns + 1, "a", app)})};
  CHECK_FALSE(f.sink->write(xs));
  CHECK_FALSE(f.sink->write(xs));
  CHECK(f.loki.entry_count("acme") == 3);
  CHECK(f.loki.answered(204) == 2);
}

TEST_CASE("429, 500 and 503 are retryable; the retry lands once") {
  for (unsigned status : {429u, 500u, 503u}) {
    CAPTURE(status);
    fixture f;
    journal_entries xs{entry(1, "acme", "d1", {line(now_ns, "a", app)})};
    f.loki.fail_next(status, 1);
    auto err = f.sink->write(xs);
    CHECK(is(err, ec::remote_error));
    CHECK(f.loki.entry_count("acme") == 0);
    CHECK_FALSE(f.sink->write(xs));
    CHECK(f.loki.entry_count("acme") == 1);
  }
}

TEST_CASE("no Loki listening is retryable: unreachable") {
  auto port = free_port();
  loki_sink_config cfg;
  cfg.url = "http://127.0.0.1:" + std::to_string(port);
  cfg.timeout = 2s;
  auto sink = make_loki_sink(cfg);
  REQUIRE(sink);
  auto err = (*sink)->write({entry(1, "acme", "d1", {line(now_ns, "a")})});
  CHECK(is(err, ec::unreachable));
}

TEST_CASE("Loki stopped mid-stream: unreachable, then the retry lands once") {
  fixture f;
  journal_entries first{entry(1, "acme", "d1", {line(now_ns, "a", app)})};
  journal_entries second{entry(2, "acme", "d1", {line(now_ns + 1, "b", app)})};
  CHECK_FALSE(f.sink->write(first));
  CHECK(f.loki.entry_count("acme") == 1);
  f.loki.stop();
  CHECK(is(f.sink->write(second), ec::unreachable));
  REQUIRE(f.loki.start(f.port));
  CHECK_FALSE(f.sink->write(second));
  CHECK(f.loki.entries("acme", d1_app)
        == std::vector<loki_entry>{{now_ns, "a"}, {now_ns + 1, "b"}});
}

TEST_CASE("a write larger than batch-bytes goes out in several pushes") {
  loki_sink_config sc;
  sc.batch_bytes = 4096;
  loki_standin_config lc;
  lc.max_body_bytes = 4096;
  fixture f{lc, sc};
  log_lines logs;
  for (int i = 0; i < 300; ++i)
    logs.push_back(line(now_ns + i, std::string(100, 'x') + std::to_string(i),
                        i % 2 ? app : label_map{{"source", "b"}}));
  CHECK_FALSE(f.sink->write({entry(1, "acme", "d1", logs)}));
  CHECK(f.loki.pushes() >= 300 * 100 / 4096);
  CHECK(f.loki.answered(413) == 0);
  CHECK(f.loki.entry_count("acme") == 300);
}

TEST_CASE("a retry after a failure mid-write skips the pushes it made") {
  loki_sink_config sc;
  sc.batch_bytes = 4096;
  fixture f{{}, sc};
  // One stream spanning three hours in ~10 pushes: replaying its first
  // pushes after the later ones landed would be refused as too far behind.
  log_lines logs;
  for (int i = 0; i < 100; ++i)
    logs.push_back(line(now_ns - 3 * hour_ns + i * 100'000'000'000,
                        std::string(300, 'x'), app));
  journal_entries xs{entry(7, "acme", "d1", logs)};
  f.loki.fail_next(503, 1, 5);
  CHECK(is(f.sink->write(xs), ec::remote_error));
  CHECK(f.loki.entry_count("acme") > 0);
  CHECK_FALSE(f.sink->write(xs));
  CHECK(f.loki.entry_count("acme") == 100);
  CHECK(f.loki.answered(400) == 0);
}

TEST_CASE("a retried write keeps the refusals of its failed attempt") {
  fixture f;
  auto week = 7 * 24 * hour_ns;
  journal_entries xs{
    entry(1, "acme", "d1", {line(now_ns - week - 1, "old \xff", app)}),
    entry(2, "globex", "d1", {line(now_ns, "g", app)})};
  // acme's push is refused, then globex's fails.
  f.loki.fail_next(503, 1, 1);
  CHECK(is(f.sink->write(xs), ec::remote_error));
  CHECK(is(f.sink->write(xs), ec::invalid_record));
  CHECK(f.loki.answered(400) == 1);
  CHECK(f.loki.entry_count("globex") == 1);
  CHECK(f.sink->stats().lines_repaired == 1);
  CHECK(f.sink->stats().refused_pushes == 1);
}

TEST_CASE("413: the sink halves the push until Loki takes it") {
  loki_sink_config sc;
  sc.batch_bytes = 64 * 1024;
  loki_standin_config lc;
  lc.max_body_bytes = 8 * 1024;
  fixture f{lc, sc};
  log_lines logs;
  for (int i = 0; i < 100; ++i)
    logs.push_back(line(now_ns + i, std::string(200, 'y'), app));
  CHECK_FALSE(f.sink->write({entry(1, "acme", "d1", logs)}));
  CHECK(f.sink->stats().splits > 0);
  CHECK(f.loki.entry_count("acme") == 100);
  SUBCASE("a single entry over Loki's limit is refused: invalid_record") {
    auto err = f.sink->write(
      {entry(2, "acme", "d1", {line(now_ns + 500, std::string(9000, 'z'))})});
    CHECK(is(err, ec::invalid_record));
  }
}

TEST_CASE("refusals are invalid_record, the push's valid entries kept") {
  loki_standin_config lc;
  lc.max_line_bytes = 1000;
  fixture f{lc};
  auto week = 7 * 24 * hour_ns;
  SUBCASE("a line over Loki's max_line_size") {
    CHECK(is(f.sink->write({entry(1, "acme", "d1",
                                  {line(now_ns, std::string(1001, 'x'), app),
                                   line(now_ns, "ok", app)})}),
             ec::invalid_record));
  }
  SUBCASE("an entry too old") {
    CHECK(is(f.sink->write({entry(1, "acme", "d1",
                                  {line(now_ns - week - 1, "old", app),
                                   line(now_ns, "ok", app)})}),
             ec::invalid_record));
  }
  SUBCASE("an entry too far in the future") {
    CHECK(is(f.sink->write({entry(1, "acme", "d1",
                                  {line(now_ns + hour_ns, "new", app),
                                   line(now_ns, "ok", app)})}),
             ec::invalid_record));
  }
  SUBCASE("an entry too far behind what an earlier write sent") {
    CHECK_FALSE(
      f.sink->write({entry(1, "acme", "d1", {line(now_ns + 1, "x", app)})}));
    CHECK(is(f.sink->write({entry(2, "acme", "d1",
                                  {line(now_ns - 2 * hour_ns, "late", app),
                                   line(now_ns, "ok", app)})}),
             ec::invalid_record));
  }
  auto got = f.loki.entries("acme", d1_app);
  CHECK(std::find(got.begin(), got.end(), loki_entry{now_ns, "ok"})
        != got.end());
  CHECK(f.sink->stats().refused_pushes == 1);
  // Not retried forever: the next write goes through.
  CHECK_FALSE(
    f.sink->write({entry(9, "acme", "d1", {line(now_ns + 2, "next", app)})}));
}

TEST_CASE("429 for the tenant's stream limit refuses the new stream only") {
  loki_standin_config lc;
  lc.max_streams_per_tenant = 1;
  fixture f{lc};
  auto err = f.sink->write({entry(1, "acme", "d1",
                                  {line(now_ns, "a", app),
                                   line(now_ns, "b", {{"source", "other"}})})});
  CHECK(is(err, ec::invalid_record));
  CHECK(f.loki.answered(429) == 1);
  CHECK(f.loki.entry_count("acme") == 1);
  // Not retried forever: the next write of the kept stream goes through.
  CHECK_FALSE(
    f.sink->write({entry(2, "acme", "d1", {line(now_ns + 1, "c", app)})}));
}

TEST_CASE("401 for one org's tenant refuses that org only") {
  loki_standin_config lc;
  lc.tenants = {"acme"};
  fixture f{lc};
  auto err = f.sink->write({entry(1, "globex", "d1", {line(now_ns, "g", app)}),
                            entry(2, "acme", "d1", {line(now_ns, "a", app)})});
  CHECK(is(err, ec::invalid_record));
  CHECK(f.loki.answered(401) == 1);
  CHECK(f.loki.entry_count("acme") == 1);
}

TEST_CASE("an org that is no Loki tenant ID is refused without a push") {
  fixture f;
  auto err = f.sink->write({entry(1, "..", "d1", {line(now_ns, "g", app)}),
                            entry(2, "acme", "d1", {line(now_ns, "a", app)})});
  CHECK(is(err, ec::invalid_record));
  CHECK(f.sink->stats().refused_tenant_entries == 1);
  CHECK(f.loki.pushes() == 1);
}

TEST_CASE("each other answer maps to its error class") {
  fixture f;
  journal_entries xs{entry(1, "acme", "d1", {line(now_ns, "a", app)})};
  for (auto [status, code] :
       std::vector<std::pair<unsigned, ec>>{{400, ec::invalid_record},
                                            {415, ec::invalid_record},
                                            {403, ec::invalid_record},
                                            {404, ec::remote_error},
                                            {408, ec::timeout},
                                            {502, ec::remote_error}}) {
    CAPTURE(status);
    f.loki.fail_next(status, 1);
    CHECK(is(f.sink->write(xs), code));
  }
  CHECK_FALSE(f.sink->write(xs));
  CHECK(f.loki.entry_count("acme") == 1);
}

TEST_CASE("hostile lines: NUL, invalid UTF-8, huge, odd label names") {
  loki_sink_config sc;
  sc.max_line_bytes = 64 * 1024;
  fixture f{{}, sc};
  std::string nul{"a\0b", 3};
  log_lines logs{
    line(now_ns, nul, app),
    line(now_ns + 1, "bad \xff \xc0\xaf \xed\xa0\x80 end\xe2\x82", app),
    line(now_ns + 2, std::string(1 << 20, 'h') + "\xc3\xa9", app),
    line(now_ns + 3, "q\"\\\n\t", {{"source", "s\xff"}, {"1-bad key", "v v"}})};
  CHECK_FALSE(f.sink->write({entry(1, "acme", "d1", logs)}));
  auto got = f.loki.entries("acme", d1_app);
  REQUIRE(got.size() == 3);
  CHECK(got[0].line == nul);
  CHECK(got[1].line
        == "bad \xEF\xBF\xBD \xEF\xBF\xBD\xEF\xBF\xBD "
           "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD end\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(got[2].line == std::string(64 * 1024, 'h'));
  CHECK(f.loki.entries("acme", {{"device_id", "d1"},
                                {"source", "s\xEF\xBF\xBD"}})
        == std::vector<loki_entry>{{now_ns + 3, "q\"\\\n\t 1-bad_key=\"v v\""}});
  CHECK(f.sink->stats().lines_truncated == 1);
  CHECK(f.sink->stats().lines_repaired == 2);
}

TEST_CASE("sinks.loki options are declared and a bad URL is refused") {
  option_set opts{"t", "t"};
  loki_sink_config cfg;
  declare(opts, cfg);
  CHECK_FALSE(opts.parse({"--sinks.loki.url=https://loki:3100/gw",
                          "--sinks.loki.batch-bytes=64KiB"}));
  CHECK(cfg.batch_bytes == 64 * 1024);
  CHECK(cfg.max_line_bytes == 256 * 1024);
  for (std::string url : {"", "ftp://x", "http://:80", "http://h:0",
                          "http://h:99999", "http://h/p?q"}) {
    CAPTURE(url);
    cfg.url = url;
    auto s = make_loki_sink(cfg);
    REQUIRE_FALSE(s);
    CHECK(is(s.error(), ec::bad_config));
  }
}
