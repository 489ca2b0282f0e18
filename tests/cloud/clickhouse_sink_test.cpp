#include "cloud/clickhouse_sink.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include <doctest/doctest.h>

#include "ch_fixture.hpp"
#include "helpers.hpp"
#include "cloud/clickhouse_text.hpp"
#include "messages/error.hpp"
#include "skip.hpp"

using namespace fleetd;

namespace {

constexpr int64_t hour_ms = 3600 * 1000;
// 2026-01-01T00:00:00Z: a fixed clock, the samples' time.
constexpr int64_t t0_ms = 1767225600000;

int databases = 0;

// A sink on the shared server writing to a database of its own.
std::unique_ptr<clickhouse_sink> fresh_sink(test::ch_server& server) {
  clickhouse_config cfg;
  cfg.url = server.url();
  cfg.database = "sink_test_" + std::to_string(++databases);
  cfg.user = "fleetd";
  cfg.password = server.password();
  cfg.batch_rows = 1000;
  auto sink = make_clickhouse_sink(cfg);
  REQUIRE(sink);
  return std::move(*sink);
}

// The shared server and a sink on a database of its own; `server` is null
// when the case must skip (skip() has been called then).
struct sink_case {
  test::ch_server* server = nullptr;
  std::unique_ptr<clickhouse_sink> sink;
  std::string db;
};

sink_case open_case() {
  sink_case c;
  std::string why;
  c.server = test::shared_ch_server(why);
  if (!c.server) {
    test::skip(why);
    return c;
  }
  c.sink = fresh_sink(*c.server);
  c.db = "sink_test_" + std::to_string(databases);
  return c;
}

journal_entry entry(int64_t id, const std::string& org,
                    const std::string& device) {
  journal_entry e;
  e.id = id;
  e.org = org;
  e.device = device;
  e.stream = "metrics";
  e.epoch = "e1";
  e.sequence = id;
  e.received_ms = t0_ms;
  return e;
}

// Samples of two orgs over three hours, every 10 s, in batches of 60
// samples per entry; values are quarters, so that every sum is exact.
journal_entries two_orgs() {
  journal_entries out;
  int64_t id = 0;
  for (auto org : {"org-a", "org-b"}) {
    for (int64_t batch = 0; batch < 18; ++batch) {
      auto e = entry(++id, org, "dev-1");
      for (int64_t i = 0; i < 60; ++i) {
        int64_t n = batch * 60 + i;
        double v = static_cast<double>((n * 37 + (org[4] == 'a' ? 3 : 11)) % 400)
                   / 4.0;
        e.samples.push_back({"cpu", {{"core", n % 2 ? "1" : "0"}},
                             t0_ms + n * 10000, v});
      }
      out.push_back(std::move(e));
    }
  }
  return out;
}

struct expected_point {
  double sum = 0;
  uint64_t count = 0;
  double min = INFINITY;
  double max = -INFINITY;
};

// What the rollup must say, per (labels, hour), computed here.
std::map<std::pair<std::string, int64_t>, expected_point>
rollup_of(const journal_entries& entries, const std::string& org) {
  std::map<std::pair<std::string, int64_t>, expected_point> out;
  for (auto& e : entries) {
    if (e.org != org)
      continue;
    for (auto& s : e.samples) {
      if (!std::isfinite(s.value))
        continue;
      auto& p = out[{canonical_labels(s.labels), s.timestamp_ms / hour_ms * 3600}];
      p.sum += s.value;
      p.count += 1;
      p.min = std::min(p.min, s.value);
      p.max = std::max(p.max, s.value);
    }
  }
  return out;
}

std::vector<rollup_point> query(clickhouse_sink& sink, const std::string& org,
                                const std::string& metric = "cpu") {
  auto points = clickhouse_rollup_query(sink, org, "dev-1", metric,
                                        t0_ms / 1000, t0_ms / 1000 + 86400);
  REQUIRE_MESSAGE(points, render(points.error()));
  return *points;
}

void check_rollup(clickhouse_sink& sink, const journal_entries& entries,
                  const std::string& org) {
  auto want = rollup_of(entries, org);
  auto got = query(sink, org);
  REQUIRE(got.size() == want.size());
  for (auto& p : got) {
    auto it = want.find({p.labels, p.hour_s});
    REQUIRE(it != want.end());
    CHECK(p.sum == it->second.sum);
    CHECK(p.count == it->second.count);
    CHECK(p.min == it->second.min);
    CHECK(p.max == it->second.max);
    CHECK(p.avg == it->second.sum / static_cast<double>(it->second.count));
  }
}

std::string count_of(clickhouse_sink& sink, const std::string& from) {
  auto body = sink.execute("SELECT count() FROM " + from);
  REQUIRE_MESSAGE(body, render(body.error()));
  return *body;
}

} // namespace

TEST_CASE("clickhouse sink: two orgs' samples land and each hour's rollup "
          "has the exact sum, count, min and max") {
  auto c = open_case();
  if (!c.server)
    return;
  auto& [server, sink, db] = c;
  auto entries = two_orgs();
  REQUIRE(sink->write(entries) == caf::none);
  CHECK(sink->rows_written() == 2160);
  CHECK(count_of(*sink, db + ".samples FINAL") == "2160\n");
  check_rollup(*sink, entries, "org-a");
  check_rollup(*sink, entries, "org-b");
  // Two label sets times three hours, not an average of averages.
  CHECK(query(*sink, "org-a").size() == 6);
}

TEST_CASE("clickhouse sink: a replay leaves raw counts and rollups as they "
          "were") {
  auto c = open_case();
  if (!c.server)
    return;
  auto& [server, sink, db] = c;
  auto entries = two_orgs();
  REQUIRE(sink->write(entries) == caf::none);
  auto before = query(*sink, "org-a");
  // A crash after a partial write: the journal sends a middle slice again,
  // then everything, in other batches.
  journal_entries slice(entries.begin() + 5, entries.begin() + 25);
  REQUIRE(sink->write(slice) == caf::none);
  REQUIRE(sink->write(entries) == caf::none);
  CHECK(count_of(*sink, db + ".samples FINAL") == "2160\n");
  check_rollup(*sink, entries, "org-a");
  check_rollup(*sink, entries, "org-b");
  // Merged for good, the tables hold each sample and series-hour once.
  // ClickHouse 18.16 skips OPTIMIZE while a background merge of the table
  // runs (a loaded machine): ask again until a merge of all parts happened.
  auto merged = [&](const std::string& table, const std::string& rows) {
    return fleetd::test::eventually(
      [&] {
        return sink->execute("OPTIMIZE TABLE " + db + table + " FINAL")
               && count_of(*sink, db + table) == rows;
      },
      std::chrono::seconds(20));
  };
  CHECK(merged(".samples", "2160\n"));
  CHECK(merged(".rollup_hourly", "12\n"));
  auto after = query(*sink, "org-a");
  REQUIRE(after.size() == before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    CHECK(after[i].sum == before[i].sum);
    CHECK(after[i].count == before[i].count);
  }
}

TEST_CASE("clickhouse sink: NaN and infinities are stored raw and left out "
          "of the rollup") {
  auto c = open_case();
  if (!c.server)
    return;
  auto& [server, sink, db] = c;
  auto e = entry(1, "org-a", "dev-1");
  for (double v : {1.5, std::nan(""), HUGE_VAL, -HUGE_VAL, 2.5})
    e.samples.push_back({"cpu", {}, t0_ms + 1000 * (int64_t)e.samples.size(), v});
  REQUIRE(sink->write({e}) == caf::none);
  auto raw = sink->execute("SELECT value FROM " + db
                           + ".samples ORDER BY ts_ms FORMAT TabSeparated");
  REQUIRE(raw);
  CHECK(*raw == "1.5\nnan\ninf\n-inf\n2.5\n");
  auto points = query(*sink, "org-a");
  REQUIRE(points.size() == 1);
  CHECK(points[0].sum == 4.0);
  CHECK(points[0].count == 2);
  CHECK(points[0].min == 1.5);
  CHECK(points[0].max == 2.5);
  CHECK(points[0].avg == 2.0);
}

TEST_CASE("clickhouse sink: hostile text round-trips byte for byte") {
  auto c = open_case();
  if (!c.server)
    return;
  auto& [server, sink, db] = c;
  std::string nul{"n\0ul", 4};
  std::vector<std::string> hostile{
    "it's", "back\\slash", "tab\there", "new\nline\r", nul, "\xFF\xFE\xC3",
    "\\x41", "'); DROP TABLE x; --", "a=b,c\\=d", "\x7F\x01"};
  journal_entries entries;
  for (size_t i = 0; i < hostile.size(); ++i) {
    auto e = entry(static_cast<int64_t>(i + 1), hostile[i], hostile[(i + 1) % 10]);
    e.samples.push_back({hostile[(i + 2) % 10],
                         {{hostile[(i + 3) % 10], hostile[(i + 4) % 10]}},
                         t0_ms,
                         1.0});
    entries.push_back(std::move(e));
  }
  REQUIRE(sink->write(entries) == caf::none);
  for (auto& e : entries) {
    auto body = sink->execute("SELECT org_id, device_id, metric, labels FROM "
                              + db + ".samples WHERE org_id = "
                              + ch_literal(e.org) + " FORMAT TabSeparated");
    REQUIRE(body);
    bool truncated = false;
    auto rows = ch_rows(*body, 10, truncated);
    REQUIRE(rows.size() == 1);
    auto& s = e.samples[0];
    CHECK(rows[0] == std::vector<std::string>{e.org, e.device, s.name,
                                              canonical_labels(s.labels)});
    // The rollup of each hostile series is reachable by its own names.
    auto points = clickhouse_rollup_query(*sink, e.org, e.device, s.name,
                                          t0_ms / 1000, t0_ms / 1000 + 3600);
    REQUIRE(points);
    REQUIRE(points->size() == 1);
    CHECK((*points)[0].labels == canonical_labels(s.labels));
  }
}

TEST_CASE("clickhouse sink: a write touching more series-hours than one "
          "statement holds recomputes them all") {
  auto c = open_case();
  if (!c.server)
    return;
  auto& [server, sink, db] = c;
  // 600 keys of ~520 bytes: over ClickHouse's 256 KiB max_query_size.
  journal_entries entries;
  for (int64_t i = 0; i < 600; ++i) {
    auto e = entry(i + 1, "org-a", std::string(500, 'd') + std::to_string(i));
    e.samples.push_back({"cpu", {}, t0_ms, 1.0});
    entries.push_back(std::move(e));
  }
  REQUIRE(sink->write(entries) == caf::none);
  CHECK(count_of(*sink, db + ".rollup_hourly FINAL") == "600\n");
}

TEST_CASE("clickhouse sink: org A's rollup query never returns org B's rows, "
          "whatever the metric text") {
  auto c = open_case();
  if (!c.server)
    return;
  auto& [server, sink, db] = c;
  auto entries = two_orgs();
  auto b = entry(100, "org-b", "dev-1");
  b.samples.push_back({"cpu' OR org_id = 'org-b", {}, t0_ms, 7.0});
  entries.push_back(b);
  REQUIRE(sink->write(entries) == caf::none);
  for (std::string metric : std::vector<std::string>{"cpu' OR org_id = 'org-b", "cpu' OR '1'='1", "cpu\\' OR 1=1 --",
          "cpu') OR (1=1", std::string{"cpu\0' OR 1", 10}})
    CHECK(query(*sink, "org-a", metric).empty());
  // org-b's own hostile-named series is its own to read.
  CHECK(query(*sink, "org-b", "cpu' OR org_id = 'org-b").size() == 1);
  check_rollup(*sink, two_orgs(), "org-a");
}

TEST_CASE("clickhouse sink: refused input and bad credentials map to the "
          "sink's errors") {
  auto c = open_case();
  if (!c.server)
    return;
  auto& [server, sink, db] = c;
  REQUIRE(sink->create_schema() == caf::none);
  auto bad_row = sink->execute("INSERT INTO " + db
                               + ".samples (ts_ms, value) FORMAT "
                                 "TabSeparated\nnot-a-number\t1\n");
  REQUIRE_FALSE(bad_row);
  CHECK(bad_row.error().code() == static_cast<uint8_t>(ec::invalid_record));
  clickhouse_config cfg;
  cfg.url = server->url();
  cfg.user = "fleetd";
  cfg.password = "wrong";
  auto locked_out = make_clickhouse_sink(cfg);
  REQUIRE(locked_out);
  auto err = (*locked_out)->write({entry(1, "org-a", "dev-1")});
  CHECK(err.code() == static_cast<uint8_t>(ec::remote_error));
}

TEST_CASE("clickhouse options: are validated, and a cluster writes "
          "through Distributed tables") {
  clickhouse_config cfg;
  cfg.url = "ftp://x:1";
  CHECK(validate(cfg).code() == static_cast<uint8_t>(ec::bad_config));
  cfg.url = "http://127.0.0.1";
  CHECK(validate(cfg).code() == static_cast<uint8_t>(ec::bad_config));
  cfg.url = "http://127.0.0.1:8123/";
  CHECK(validate(cfg) == caf::none);
  cfg.database = "x`; DROP";
  CHECK(validate(cfg).code() == static_cast<uint8_t>(ec::bad_config));
  cfg.database = "fleetd";
  CHECK(clickhouse_schema(cfg).size() == 3);
  cfg.cluster = "fleet";
  auto ddl = clickhouse_schema(cfg);
  REQUIRE(ddl.size() == 5);
  CHECK(ddl[3]
        == "CREATE TABLE IF NOT EXISTS `fleetd`.`samples_dist` AS "
           "`fleetd`.`samples` ENGINE = Distributed(fleet, fleetd, samples, "
           "cityHash64(org_id, device_id))");
  CHECK(ddl[4].find("`rollup_hourly_dist` AS `fleetd`.`rollup_hourly` "
                    "ENGINE = Distributed(fleet")
        != std::string::npos);
}

// Last: it stops the shared server.
TEST_CASE("clickhouse sink: a stopped server is a retryable error, and the "
          "retry after the restart lands once") {
  auto c = open_case();
  if (!c.server)
    return;
  auto& [server, sink, db] = c;
  auto entries = two_orgs();
  journal_entries first(entries.begin(), entries.begin() + 10);
  REQUIRE(sink->write(first) == caf::none);
  server->stop();
  auto err = sink->write(entries);
  CHECK(err.code() == static_cast<uint8_t>(ec::unreachable));
  ch_server::failure fail;
  REQUIRE_MESSAGE(server->restart(fail), fail.why);
  REQUIRE(sink->write(entries) == caf::none);
  CHECK(count_of(*sink, db + ".samples FINAL") == "2160\n");
  check_rollup(*sink, entries, "org-a");
}
