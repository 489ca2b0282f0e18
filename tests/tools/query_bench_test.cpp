#include "tools/bench/query_bench.hpp"

#include <doctest/doctest.h>

#include "skip.hpp"

using namespace fleetd::bench;

TEST_CASE("query bench: loads every series-hour and each query returns its "
          "series' hours") {
  query_options opt;
  opt.devices = 3;
  opt.metrics = 4;
  opt.days = 2;
  opt.queries = 5;
  auto r = run_query(opt);
  if (r.error.find("not installed") != std::string::npos)
    return fleetd::test::skip(r.error);
  REQUIRE_MESSAGE(r.error.empty(), r.error);
  CHECK(r.rows == 3 * 4 * 2 * 24);
  CHECK(r.points == 5 * 2 * 24);
  CHECK(r.p50_ms > 0);
  CHECK(r.p99_ms >= r.p50_ms);
  CHECK(r.direct_p50_ms > 0);
  CHECK(r.direct_p99_ms >= r.direct_p50_ms);
}
