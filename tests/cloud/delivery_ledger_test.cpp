// What one batch adds to the delivery table: hours, declared growth and
// missing sequences (every store backend uses these).
#include "cloud/delivery_ledger.hpp"

#include <utility>

#include <limits>

#include <doctest/doctest.h>

using namespace fleetd;

namespace {

drop_declaration declared(std::string origin, int64_t unsynced,
                          int64_t rejected = 0) {
  drop_declaration d;
  d.origin = std::move(origin);
  d.records["metrics_unsynced"] = unsynced;
  if (rejected > 0)
    d.records["metrics_rejected"] = rejected;
  return d;
}

} // namespace

TEST_CASE("delivery hours start on the UTC hour, also before 1970") {
  CHECK(delivery_hour(0) == 0);
  CHECK(delivery_hour(3'599'999) == 0);
  CHECK(delivery_hour(3'600'000) == 3'600'000);
  CHECK(delivery_hour(1'700'000'000'000) == 1'699'999'200'000);
  CHECK(delivery_hour(-1) == -3'600'000);
}

TEST_CASE("declared drops add their growth once: resends and restarts of "
          "the same store add 0, a new store all it counts") {
  auto sums = [](declared_sums x) {
    return std::make_pair(x.records, x.batches);
  };
  using p = std::pair<int64_t, int64_t>;
  auto d = declared("a", 4, 3);
  d.records["metrics_batches"] = 2;
  CHECK(sums(declared_total(d)) == p{7, 2});
  CHECK(sums(declared_growth(d, "", {})) == p{7, 2});
  CHECK(sums(declared_growth(d, "a", {7, 2})) == p{0, 0});
  CHECK(sums(declared_growth(declared("a", 6, 3), "a", {7, 0})) == p{2, 0});
  // An older report, overtaken: nothing, never a negative count, and what
  // is kept does not go down.
  CHECK(sums(declared_growth(declared("a", 2), "a", {7, 1})) == p{0, 0});
  CHECK(sums(kept_declared(declared("a", 2), "a", {7, 1}, {0, 0}))
        == p{7, 1});
  CHECK(sums(declared_growth(declared("b", 2), "a", {7, 1})) == p{2, 0});
  CHECK(sums(kept_declared(declared("b", 2), "a", {7, 1}, {2, 0}))
        == p{2, 0});
}

TEST_CASE("collected and stored add their growth like the drops; a report "
          "going down within its origin adds nothing and is flagged") {
  auto d = declared("a", 1);
  d.collected = 100;
  d.stored = 90;
  auto first = declared_growth(d, "", {});
  CHECK(first.collected == 100);
  CHECK(first.stored == 90);
  CHECK_FALSE(declared_decreased(d, "", {}));
  auto kept = kept_declared(d, "", {}, first);
  d.collected = 130;
  d.stored = 125;
  auto grown = declared_growth(d, "a", kept);
  CHECK(grown.collected == 30);
  CHECK(grown.stored == 35);
  CHECK(grown.records == 0);
  kept = kept_declared(d, "a", kept, grown);
  CHECK(kept.collected == 130);
  CHECK(kept.stored == 125);
  auto x = delivery_of_batch(5, 0, 0, grown);
  CHECK(x.collected == 30);
  CHECK(x.stored == 35);
  // Lower within the origin: flagged, adds nothing, keeps what it had;
  // a counter that still grew (a drop) is not held back by it.
  d.collected = 120;
  CHECK(declared_decreased(d, "a", kept));
  CHECK(declared_growth(d, "a", kept).empty());
  auto same = kept_declared(d, "a", kept, {});
  CHECK(same.collected == 130);
  CHECK(same.stored == 125);
  d.records["metrics_unsynced"] = 3;
  auto partly = declared_growth(d, "a", kept);
  CHECK(partly.records == 2);
  CHECK(partly.collected == 0);
  CHECK(partly.stored == 0);
  // A new origin counts afresh: never a decrease.
  CHECK_FALSE(declared_decreased(d, "b", kept));
  CHECK(declared_growth(d, "b", kept).collected == 120);
}

TEST_CASE("a lost batch the device declared is not missing as well") {
  auto x = delivery_of_batch(10, 0, 1, {100, 1});
  CHECK(x.received == 10);
  CHECK(x.missing == 0);
  CHECK(x.declared_drops == 100);
  CHECK(delivery_of_batch(0, 5, 0, {0, 0}).duplicates == 5);
}

TEST_CASE("missing sequences: the ones a batch skips; a late one fills one") {
  CHECK(missing_growth(1, 0) == 0);
  CHECK(missing_growth(2, 1) == 0);
  CHECK(missing_growth(5, 1) == 3);
  CHECK(missing_growth(3, 5) == -1);
}

TEST_CASE("the delivery ratio and the total of rows") {
  CHECK(delivery_ratio(0, 0, 0) == 1.0);
  CHECK(delivery_ratio(8, 1, 1) == doctest::Approx(0.8));
  delivery_rows xs{{"a", "metrics", 0, 8, 2, 1, 1},
                   {"b", "logs", 3'600'000, 2, 0, 0, 8}};
  auto t = delivery_total(xs);
  CHECK(t.received == 10);
  CHECK(t.duplicates == 2);
  CHECK(t.missing == 1);
  CHECK(t.declared_drops == 9);
  CHECK(delivery_ratio(t.received, t.declared_drops, t.missing)
        == doctest::Approx(0.5));
}

TEST_CASE("hostile counts: the total holds at the ends of int64, the ratio "
          "stays a ratio") {
  constexpr auto big = std::numeric_limits<int64_t>::max() - 5;
  // Rows a device that flips its origin could grow: sums past int64.
  delivery_rows xs{{"a", "metrics", 0, big, 0, 0, big},
                   {"a", "metrics", 3'600'000, big, 0, -big, big},
                   {"b", "logs", 0, 10, 0, -big, big}};
  auto t = delivery_total(xs);
  CHECK(t.received == std::numeric_limits<int64_t>::max());
  CHECK(t.declared_drops == std::numeric_limits<int64_t>::max());
  CHECK(t.missing == std::numeric_limits<int64_t>::min());
  auto r = delivery_ratio(t.received, t.declared_drops, t.missing);
  CHECK(r >= 0.0);
  CHECK(r <= 1.0);
  CHECK(delivery_ratio(big, big, big) == doctest::Approx(1.0 / 3));
}
