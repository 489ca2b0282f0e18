// fleetd-bench fanout's code path with tiny numbers, on a real throwaway
// VictoriaMetrics: both arms run, every series lands, nothing is dropped.
#include "tools/bench/fanout_bench.hpp"

#include <doctest/doctest.h>

#include "skip.hpp"

using namespace fleetd;

TEST_CASE("victoria: a small fanout run reports every figure and loses "
          "nothing") {
  bench::fanout_options opt;
  opt.devices = 30;
  opt.series = 7;
  opt.scrapes = 3;
  opt.orgs = 4;
  opt.entries_per_write = 8;
  opt.rounds = 2;
  opt.max_request_bytes = 1 << 20;
  opt.progress = false;
  auto r = bench::run_fanout(opt);
  if (r.skipped)
    return test::skip(r.error);
  INFO("error: " << r.error);
  REQUIRE(r.error.empty());
  CHECK(r.points_per_round == 30 * 7 * 3);
  CHECK(r.series == 30 * 7);
  CHECK(r.stored_series == r.series);
  CHECK(r.dropped_rows == 0);
  CHECK(r.sink_rounds.size() == 2);
  CHECK(r.points_per_s > 0);
  CHECK(r.vm_import_points_per_s > 0);
  CHECK(r.ratio > 0);
  CHECK(r.sink_cpu_us_per_point > 0);
  // Warm-up and two rounds, 8 entries a write: at least a request each.
  CHECK(r.sink_requests >= 3 * 4);
  auto line = bench::fanout_line(opt, r);
  CHECK(line.rfind("BENCH fanout points_per_s=", 0) == 0);
  CHECK(line.find(" vm_import_points_per_s=") != std::string::npos);
  CHECK(line.find(" ratio=") != std::string::npos);
}
