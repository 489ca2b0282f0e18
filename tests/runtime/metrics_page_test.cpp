// The self-metrics page (GET /metrics): what render_metrics writes of a
// status must read back through the project's own Prometheus text parser
// with every value, every family typed and described, whatever the names.
#include <map>
#include <random>
#include <set>
#include <string>

#include <doctest/doctest.h>

#include "fuzz.hpp"
#include "messages/prom_text.hpp"
#include "runtime/metrics_page.hpp"

using namespace fleetd;

namespace {

node_status sample_status() {
  node_status st;
  st.role = "edge";
  st.node_id = "dev \"1\"\\x";
  st.version = "0.1.0";
  st.uptime_ms = 12'345;
  st.started_ms = 1'700'000'000'000;
  st.process = {50 << 20, 1500, 7, 21, 3};
  actor_stats storage;
  storage.name = "storage";
  storage.state = "ok";
  storage.counters = {{"queued_batches", 4}, {"points_stored", 900},
                      {"used_bytes", 1 << 20}, {"failures_total", 2}};
  storage.runtime = {true, 3, 1000, 20, 64, 4096, 1, "disk full", 2, 15};
  actor_stats backoff;
  backoff.name = "backoff";
  backoff.state = "retrying: connection refused";
  backoff.counters = {{"consecutive_failures", 3}};
  actor_stats odd;
  odd.name = "sink \"a\"\nb\\c";
  odd.state = "unresponsive: request_timeout";
  odd.counters = {{"weird-name", 5}, {"weird_name", 6}, {"9lives", 7}};
  st.actors = {storage, backoff, odd};
  return st;
}

// The page's samples as "name{k=v,...}" -> value.
std::map<std::string, double> samples_of(const prom_page& page) {
  std::map<std::string, double> out;
  for (auto& s : page.samples) {
    std::string key = s.name + "{";
    for (auto& [k, v] : s.labels)
      key += k + "=" + v + ",";
    out[key + "}"] = s.value;
  }
  return out;
}

} // namespace

TEST_CASE("the page parses back with every family typed and every value") {
  auto text = render_metrics(sample_status());
  auto page = parse_prom_text(text, 0);
  CHECK(page.bad_lines == 0);
  for (auto& e : page.errors)
    FAIL_CHECK(e.line, ": ", e.reason);
  auto xs = samples_of(page);
  CHECK(xs["fleetd_node_info{node_id=dev \"1\"\\x,role=edge,version=0.1.0,}"]
        == 1);
  CHECK(xs["fleetd_node_uptime_seconds{}"] == doctest::Approx(12.345));
  CHECK(xs["fleetd_process_resident_memory_bytes{}"] == 50 << 20);
  CHECK(xs["fleetd_process_cpu_seconds_total{}"] == doctest::Approx(1.5));
  CHECK(xs["fleetd_queued_batches{actor=storage,}"] == 4);
  CHECK(xs["fleetd_points_stored_total{actor=storage,}"] == 900);
  CHECK(xs["fleetd_used_bytes{actor=storage,}"] == 1 << 20);
  CHECK(xs["fleetd_failures_total{actor=storage,}"] == 2);
  CHECK(xs["fleetd_consecutive_failures{actor=backoff,}"] == 3);
  CHECK(xs["fleetd_actor_mailbox_messages{actor=storage,}"] == 3);
  CHECK(xs["fleetd_actor_messages_handled_total{actor=storage,}"] == 1000);
  CHECK(xs["fleetd_actor_handling_p99_seconds{actor=storage,}"]
        == doctest::Approx(0.004096));
  CHECK(xs["fleetd_actor_restarts_total{actor=storage,}"] == 2);
  CHECK(xs["fleetd_actor_errors_total{actor=storage,}"] == 1);
  CHECK(xs["fleetd_actor_up{actor=sink \"a\"\nb\\c,}"] == 0);
  CHECK(xs["fleetd_link_state{state=retrying,}"] == 1);
  CHECK(xs["fleetd_link_state{state=online,}"] == 0);
  // Names that sanitise alike keep the first; a digit first gets '_'.
  CHECK(xs["fleetd_weird_name_total{actor=sink \"a\"\nb\\c,}"] == 5);
  CHECK(xs["fleetd__9lives_total{actor=sink \"a\"\nb\\c,}"] == 7);
  // Every sample's family has a TYPE and a HELP line, once.
  std::map<std::string, prom_type> types;
  for (auto& f : page.families) {
    CHECK_MESSAGE(types.count(f.name) == 0, f.name);
    CHECK_MESSAGE(!f.help.empty(), f.name);
    types[f.name] = f.type;
  }
  for (auto& s : page.samples)
    CHECK_MESSAGE(types.count(s.name) == 1, s.name);
  CHECK(types["fleetd_points_stored_total"] == prom_type::counter);
  CHECK(types["fleetd_queued_batches"] == prom_type::gauge);
  CHECK(types["fleetd_actor_messages_handled_total"] == prom_type::counter);
}

TEST_CASE("counters and gauges are named as Prometheus wants") {
  CHECK(counter_family("points_stored") == "fleetd_points_stored_total");
  CHECK(counter_family("failures_total") == "fleetd_failures_total");
  CHECK(counter_family("queued_batches") == "fleetd_queued_batches");
  CHECK(counter_family("lag_age_ms") == "fleetd_lag_age_ms");
  CHECK(counter_family("connections_open") == "fleetd_connections_open");
  // Flags and counts of things held go down: gauges, never _total.
  for (auto flag : {"busy", "files", "open", "listeners", "store_logs",
                    "max_bytes", "devices_watched", "rollouts_under_way"})
    CHECK_MESSAGE(counter_family(flag) == std::string("fleetd_") + flag, flag);
  CHECK(counter_family("a.b c") == "fleetd_a_b_c_total");
  CHECK(prom_label_value("a\"b\\c\nd") == "\"a\\\"b\\\\c\\nd\"");
  CHECK(prom_label_value(std::string("a\xff\0b", 4)) == "\"a??b\"");
}

TEST_CASE("hostile actor and counter names never break the page") {
  std::mt19937_64 rng(16);
  auto iterations = test::fuzz_iterations(300);
  const std::string alphabet = "a_\"\\\n{}=,# \t0é\x01";
  for (long i = 0; i < iterations; ++i) {
    auto st = sample_status();
    st.actors[2].name = test::mutate(st.actors[2].name, alphabet, rng);
    st.actors[2].counters[test::mutate("x_y", alphabet, rng)] = i;
    st.node_id = test::mutate(st.node_id, alphabet, rng);
    auto page = parse_prom_text(render_metrics(st), 0);
    REQUIRE_MESSAGE(page.bad_lines == 0,
                    (page.errors.empty() ? "" : page.errors[0].reason));
  }
}
