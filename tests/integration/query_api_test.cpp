// The query API on real processes: a fleetd enrolled into an org syncs to a
// fleetd-cloud, and `fleetctl query` with the org's API token returns
// exactly the device's collected values aggregated per step (count, min,
// max per second, computed here from the device's own file); another org's
// token gets none of them.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "cloud/query_params.hpp"
#include "helpers.hpp"
#include "messages/labels.hpp"
#include "messages/types.hpp"
#include "runtime/json.hpp"
#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr int64_t rounds = 6;
constexpr const char* metric = "fleetd_load_value";
constexpr int64_t step_ms = 1000;

struct step_values {
  int64_t count = 0;
  double min = 0;
  double max = 0;
};

// Per label set (as JSON) and step start: the device's points of `metric`.
using expected_steps = std::map<std::string, std::map<int64_t, step_values>>;

std::string labels_json(const label_map& labels) {
  json_object obj;
  for (auto& [k, v] : labels)
    obj.add(k, v);
  return obj.str();
}

struct point_row {
  std::string name;
  std::string labels; // as JSON
  int64_t ts = 0;
  double value = 0;
};

// A device_points line: "name{HEX(labels)} ts bits".
point_row parse(const std::string& r) {
  auto a = r.find('{');
  auto b = r.find("} ", a);
  auto c = r.find(' ', b + 2);
  return {r.substr(0, a),
          labels_json(decode_labels(unhex(r.substr(a + 1, b - a - 1)))),
          std::stoll(r.substr(b + 2, c - b - 2)),
          double_of(std::stoull(r.substr(c + 1), nullptr, 16))};
}

expected_steps expected(const std::vector<std::string>& rows, int64_t from) {
  expected_steps out;
  for (auto& r : rows) {
    auto [name, labels, ts, v] = parse(r);
    if (name != metric)
      continue;
    auto& s = out[labels][from + (ts - from) / step_ms * step_ms];
    s.min = s.count == 0 ? v : std::min(s.min, v);
    s.max = s.count == 0 ? v : std::max(s.max, v);
    ++s.count;
  }
  return out;
}

// The "labels ... points" member the answer must hold for one series.
std::string series_text(const std::string& labels,
                        const std::map<int64_t, step_values>& steps,
                        const std::string& agg) {
  std::string points = "[";
  for (auto& [ts, s] : steps) {
    auto v = agg == "count" ? std::to_string(s.count)
                            : json_value(agg == "min" ? s.min : s.max);
    points += (points.size() > 1 ? "," : "") + std::string("[")
              + std::to_string(ts) + "," + v + "]";
  }
  return json_object{}.raw("labels", labels).raw("points", points + "]").str();
}

} // namespace

TEST_CASE("fleetctl query returns exactly the device's values aggregated "
          "per step, and only to its org's token") {
  temp_dir tmp;
  auto cloud_dir = tmp.path() + "/cloud";
  process cloud{program("fleetd-cloud"),
                {"--node.data-dir=" + cloud_dir, "--ingest.port=0",
                 "--console.port=0", "--node.test-hooks=true"},
                tmp.path() + "/cloud.log"};
  auto ingest = port_from(cloud_dir + "/ingest.port");
  auto console = port_from(cloud_dir + "/console.port");
  REQUIRE(ingest != 0);
  REQUIRE(console != 0);
  for (auto org : {"acme", "zenith"})
    REQUIRE(fleetctl(tmp.path(), console, {"org", "create", org}).first == 0);
  auto enroll = fleetctl_secret(tmp.path(), console,
                                {"enroll", "create", "--org", "acme"});
  write_file(tmp.path() + "/acme.token",
             fleetctl_secret(tmp.path(), console,
                             {"token", "create", "--org", "acme"}));
  write_file(tmp.path() + "/zenith.token",
             fleetctl_secret(tmp.path(), console,
                             {"token", "create", "--org", "zenith"}));
  auto dev_dir = tmp.path() + "/device";
  process device{program("fleetd"),
                 {"--node.data-dir=" + dev_dir, "--device.id=dev",
                  "--cloud.port=" + std::to_string(ingest),
                  "--cloud.enroll-token=" + enroll, "--console.port=0",
                  "--collector.rounds=1", "--load.series=3",
                  "--load.interval=150ms",
                  "--load.rounds=" + std::to_string(rounds),
                  "--sync.interval=50ms", "--sync.backoff-base=20ms",
                  "--sync.backoff-cap=300ms"},
                 tmp.path() + "/device.log"};
  auto dev_console = port_from(dev_dir + "/console.port");
  REQUIRE(dev_console != 0);
  bool drained = eventually(
    [&] {
      auto st = console_status(dev_console);
      return st && counter(*st, "load_generator", "rounds") == rounds
             && state_of(*st, "load_generator") == "done"
             && counter(*st, "storage", "queued_batches") == 0
             && counter(*st, "storage", "unbatched_points") == 0;
    },
    60s);
  REQUIRE_MESSAGE(drained, read_file(tmp.path() + "/device.log"));
  auto rows = device_points(dev_dir + "/fleetd.db");
  int64_t from = INT64_MAX;
  int64_t to = 0;
  for (auto& r : rows) {
    auto p = parse(r);
    if (p.name != metric)
      continue;
    from = std::min(from, p.ts);
    to = std::max(to, p.ts + 1);
  }
  REQUIRE(to > from);
  auto want = expected(rows, from);
  REQUIRE(want.size() == 3);
  auto ask = [&](const std::string& token, const std::string& agg) {
    return fleetctl(tmp.path(), ingest,
                    {"query", "--plain-http", "--json", "--token",
                     tmp.path() + "/" + token, "--metric", metric,
                     "--device", "dev", "--from", std::to_string(from),
                     "--to", std::to_string(to), "--step", "1s", "--agg",
                     agg});
  };
  for (std::string agg : {"count", "min", "max"}) {
    CAPTURE(agg);
    auto [rc, out] = ask("acme.token", agg);
    REQUIRE_MESSAGE(rc == 0, read_file(tmp.path() + "/ctl.err"));
    for (auto& [labels, steps] : want)
      CHECK_MESSAGE(out.find(series_text(labels, steps, agg))
                      != std::string::npos,
                    out);
    // Nothing but those series.
    CHECK(std::count(out.begin(), out.end(), '{') == 1 + 2 * 3);
  }
  auto [rc, other] = ask("zenith.token", "count");
  CHECK(rc == 0);
  CHECK(other.find("\"series\":[]") != std::string::npos);
  // The table form prints one row per point.
  auto table = fleetctl(tmp.path(), ingest,
                        {"logs", "--plain-http", "--token",
                         tmp.path() + "/acme.token", "--device", "dev",
                         "--from", std::to_string(from - 60'000), "--to",
                         std::to_string(to + 60'000)});
  CHECK(table.first == 0);
  CHECK(table.second.rfind("TIME", 0) == 0);
  // The query actor is supervised: killed, it is restarted and answers again.
  auto killed = fleetctl(tmp.path(), console, {"debug", "kill", "query"});
  CHECK(killed.second == "killed query\n");
  auto& [labels, steps] = *want.begin();
  CHECK(eventually([&] {
    auto [again, out] = ask("acme.token", "count");
    return again == 0
           && out.find(series_text(labels, steps, "count")) != std::string::npos;
  }, 10s));
}
