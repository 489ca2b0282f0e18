#include "data_stack_support.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <doctest/doctest.h>

#include "cloud/clickhouse_text.hpp"
#include "helpers.hpp"
#include "messages/labels.hpp"
#include "messages/types.hpp"
#include "support.hpp"
#include "support/loki_json.hpp"

namespace fleetd::test {

using namespace std::chrono_literals;

samples_by_series device_samples(const std::string& device_db) {
  // device_points lines: "name{HEX(labels)} ts bits".
  samples_by_series out;
  for (auto& r : device_points(device_db)) {
    auto a = r.find("{");
    auto b = r.find("} ", a);
    auto c = r.find(' ', b + 2);
    auto labels = decode_labels(unhex(r.substr(a + 1, b - a - 1)));
    out[{r.substr(0, a), canonical_labels(labels)}].emplace_back(
      std::stoll(r.substr(b + 2, c - b - 2)),
      double_of(std::stoull(r.substr(c + 1), nullptr, 16)));
  }
  for (auto& [k, xs] : out)
    std::sort(xs.begin(), xs.end());
  return out;
}

size_t total(const samples_by_series& xs) {
  size_t n = 0;
  for (auto& [k, v] : xs)
    n += v.size();
  return n;
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  size_t at = 0;
  for (auto t = text.find(sep); t != std::string::npos;
       at = t + 1, t = text.find(sep, at))
    out.push_back(text.substr(at, t - at));
  out.push_back(text.substr(at));
  return out;
}

namespace {

// The lines of a TabSeparated answer (each ends with a newline).
std::vector<std::string> lines_of(const std::string& text) {
  auto out = split(text, '\n');
  out.pop_back();
  return out;
}

// "org_id = '...' AND device_id = '...'" (test ids: no quotes to escape).
std::string ch_where(const stack_device& who) {
  return "org_id = '" + who.org + "' AND device_id = '" + who.device + "'";
}

rollups ch_rollups(ch_server& ch, const stack_device& who) {
  rollups out;
  auto body = ch_must(
    ch, "SELECT metric, labels, toUInt32(hour), argMax(sum, points), "
        "argMax(count, points), argMax(min, points), argMax(max, points) "
        "FROM fleetd.rollup_hourly WHERE "
          + ch_where(who)
          + " GROUP BY metric, labels, hour FORMAT TabSeparatedRaw");
  for (auto& line : lines_of(body)) {
    auto f = split(line, '\t');
    REQUIRE(f.size() == 7);
    out[{f[0], f[1], std::stoll(f[2])}] = {std::stod(f[3]),
                                           std::stoull(f[4]), std::stod(f[5]),
                                           std::stod(f[6])};
  }
  return out;
}

} // namespace

rollups expected_rollups(const samples_by_series& xs) {
  rollups out;
  for (auto& [k, v] : xs)
    for (auto& [ts, value] : v) {
      // NaN and infinities are left out of every aggregate (both sinks).
      if (!std::isfinite(value))
        continue;
      auto& r = out[{k.first, k.second, ts / 3'600'000 * 3600}];
      r.min = r.count == 0 ? value : std::min(r.min, value);
      r.max = r.count == 0 ? value : std::max(r.max, value);
      r.sum += value;
      ++r.count;
    }
  return out;
}

size_t check_rollups(rollups got, const samples_by_series& want) {
  auto want_rollups = expected_rollups(want);
  REQUIRE(got.size() == want_rollups.size());
  for (auto& [k, w] : want_rollups) {
    CAPTURE(std::get<0>(k));
    auto& g = got[k];
    CHECK(g.count == w.count);
    CHECK(g.min == w.min);
    CHECK(g.max == w.max);
    CHECK(g.sum == doctest::Approx(w.sum).epsilon(1e-12));
    CHECK(g.sum / g.count == doctest::Approx(w.sum / w.count).epsilon(1e-12));
  }
  return want_rollups.size();
}

samples_by_series vm_samples(vm_server& vm, const stack_device& who,
                             size_t samples) {
  samples_by_series out;
  for (auto& s : vm_export(vm, "{org_id=\"" + who.org + "\",device_id=\""
                                 + who.device + "\"}", samples)) {
    std::string why;
    auto obj = parse_json(s.labels_json, why);
    REQUIRE_MESSAGE(obj, why);
    label_map labels;
    std::string name;
    for (auto& [k, v] : obj->members)
      if (k == "__name__")
        name = v.text;
      else
        labels[k] = v.text;
    CHECK(labels["org_id"] == who.org);
    CHECK(labels["device_id"] == who.device);
    labels.erase("org_id");
    labels.erase("device_id");
    REQUIRE(s.values.size() == s.timestamps.size());
    auto& xs = out[{name, canonical_labels(labels)}];
    for (size_t i = 0; i < s.values.size(); ++i)
      xs.emplace_back(s.timestamps[i], s.values[i]);
    std::sort(xs.begin(), xs.end());
  }
  return out;
}

samples_by_series ch_samples(ch_server& ch, const stack_device& who,
                             bool final) {
  samples_by_series out;
  auto body = ch_must(ch, std::string{"SELECT metric, labels, ts_ms, value "
                                      "FROM fleetd.samples"}
                            + (final ? " FINAL" : "") + " WHERE "
                            + ch_where(who) + " FORMAT TabSeparatedRaw");
  for (auto& line : lines_of(body)) {
    auto f = split(line, '\t');
    REQUIRE(f.size() == 4);
    out[{f[0], f[1]}].emplace_back(std::stoll(f[2]), std::stod(f[3]));
  }
  for (auto& [k, xs] : out)
    std::sort(xs.begin(), xs.end());
  return out;
}

void check_same(const samples_by_series& got, const samples_by_series& want,
                const char* backend) {
  std::string name = backend;
  CAPTURE(name);
  CHECK(got.size() == want.size());
  for (auto& [k, xs] : want) {
    CAPTURE(k.first);
    CAPTURE(k.second);
    auto it = got.find(k);
    REQUIRE(it != got.end());
    CHECK(it->second.size() == xs.size());
    if (it->second.size() != xs.size())
      for (auto& [ts, v] : xs)
        MESSAGE("want ", ts, " ", v, " got ",
                std::count_if(it->second.begin(), it->second.end(),
                              [&](auto& x) { return x.first == ts; }));
    for (size_t i = 0; i < std::min(xs.size(), it->second.size()); ++i) {
      CHECK(it->second[i].first == xs[i].first);
      CHECK(it->second[i].second == xs[i].second);
    }
  }
}

bool sinks_drained(uint16_t console, const std::vector<std::string>& sinks) {
  auto st = console_status(console);
  if (!st)
    return false;
  for (auto& sink : sinks)
    if (counter(*st, sink, "lag_entries") != 0
        || counter(*st, sink, "written") <= 0)
      return false;
  return true;
}

void check_vm(vm_server& vm, const stack_device& who,
              const samples_by_series& want) {
  auto t0 = std::chrono::steady_clock::now();
  auto in_vm = vm_samples(vm, who, total(want));
  MESSAGE("VictoriaMetrics showed every sample after ",
          std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - t0)
            .count(),
          " ms");
  check_same(in_vm, want, "VictoriaMetrics");
  CHECK(vm_dropped_rows(vm) == 0);
}

size_t check_ch(ch_server& ch, const stack_device& who,
                const samples_by_series& want, bool final) {
  check_same(ch_samples(ch, who, final), want, "ClickHouse");
  return check_rollups(ch_rollups(ch, who), want);
}

size_t check_loki(const loki_standin& loki, const stack_device& who,
                  const std::string& device_db) {
  std::vector<loki_entry> lines;
  for (auto& r : device_logs(device_db)) {
    auto a = r.find(' ');
    auto b = r.find(' ', a + 1);
    lines.push_back({std::stoll(r.substr(a + 1, b - a - 1)),
                     unhex(r.substr(b + 1))});
  }
  std::stable_sort(lines.begin(), lines.end(), [](auto& x, auto& y) {
    return x.timestamp_ns < y.timestamp_ns;
  });
  CHECK(loki.streams(who.org).size() == 1);
  CHECK(loki.entries(who.org,
                     {{"device_id", who.device}, {"source", "fleetd_load"}})
        == lines);
  CHECK(loki.entry_count(who.org) == lines.size());
  return lines.size();
}

} // namespace fleetd::test
