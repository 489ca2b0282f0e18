#include <doctest/doctest.h>

#include <climits>
#include <cstdint>

#include "cloud/query_params.hpp"

using namespace fleetd;

namespace {

constexpr int64_t hour = 3'600'000;

series_query with(int64_t from, int64_t to, int64_t step) {
  series_query q;
  q.from_ms = from;
  q.to_ms = to;
  q.step_ms = step;
  return q;
}

} // namespace

TEST_CASE("whole-hour steps start on whole hours") {
  auto q = with(10 * hour + 1234, 20 * hour + 5, 2 * hour);
  align_hour_steps(q);
  CHECK(q.from_ms == 10 * hour);
  CHECK(q.to_ms == 21 * hour);
  auto aligned = with(3 * hour, 5 * hour, hour);
  align_hour_steps(aligned);
  CHECK(aligned.from_ms == 3 * hour);
  CHECK(aligned.to_ms == 5 * hour);
  // Before 1970 rounds down too, not toward zero.
  auto early = with(-hour - 1, -5, hour);
  align_hour_steps(early);
  CHECK(early.from_ms == -2 * hour);
  CHECK(early.to_ms == 0);
}

TEST_CASE("steps under an hour, or not whole hours, keep from and to") {
  for (auto step : {int64_t{60'000}, hour + 1000, hour / 2}) {
    auto q = with(10 * hour + 1234, 20 * hour + 5, step);
    align_hour_steps(q);
    CHECK(q.from_ms == 10 * hour + 1234);
    CHECK(q.to_ms == 20 * hour + 5);
  }
  // No overflow at the end of time: `to` then stays.
  auto q = with(0, INT64_MAX - 5, hour);
  align_hour_steps(q);
  CHECK(q.to_ms == INT64_MAX - 5);
}

TEST_CASE("the API answers a whole-hour step from the rounded range") {
  query_limits lim;
  auto p = parse_series_query(
    "acme",
    "/v1/query?metric=cpu&device=dev&from=" + std::to_string(10 * hour + 7)
      + "&to=" + std::to_string(12 * hour + 7) + "&step=1h",
    lim);
  REQUIRE(p);
  CHECK(p->q.from_ms == 10 * hour);
  CHECK(p->q.to_ms == 13 * hour);
  CHECK(p->q.org == "acme");
  auto fine = parse_series_query(
    "acme", "/v1/query?metric=cpu&device=dev&from=7&to=60007&step=1s", lim);
  REQUIRE(fine);
  CHECK(fine->q.from_ms == 7);
}
