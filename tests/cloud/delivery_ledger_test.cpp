// What one batch adds to the delivery table: hours, declared growth and
// missing sequences (every store backend uses these).
#include "cloud/delivery_ledger.hpp"

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
  CHECK(declared_total(declared("a", 4, 3)) == 7);
  CHECK(declared_growth(declared("a", 4, 3), "", 0) == 7);
  CHECK(declared_growth(declared("a", 4, 3), "a", 7) == 0);
  CHECK(declared_growth(declared("a", 6, 3), "a", 7) == 2);
  // An older report, overtaken: nothing, never a negative count.
  CHECK(declared_growth(declared("a", 2), "a", 7) == 0);
  CHECK(declared_growth(declared("b", 2), "a", 7) == 2);
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
