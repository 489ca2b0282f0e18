#include "cloud/delivery_ledger.hpp"

namespace fleetd {

namespace {

constexpr int64_t hour_ms = 3'600'000;

} // namespace

int64_t delivery_hour(int64_t ms) {
  auto r = ms % hour_ms;
  return ms - (r < 0 ? r + hour_ms : r);
}

int64_t declared_total(const drop_declaration& d) {
  int64_t n = 0;
  for (auto& kv : d.records)
    n += kv.second;
  return n;
}

int64_t declared_growth(const drop_declaration& d,
                        const std::string& last_origin, int64_t last_total) {
  auto now = declared_total(d);
  if (d.origin != last_origin)
    return now;
  return now > last_total ? now - last_total : 0;
}

int64_t missing_growth(int64_t sequence, int64_t last) {
  if (sequence > last)
    return sequence - last - 1;
  return -1;
}

} // namespace fleetd
