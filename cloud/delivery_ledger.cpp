#include "cloud/delivery_ledger.hpp"

namespace fleetd {

namespace {

constexpr int64_t hour_ms = 3'600'000;

bool ends_with(const std::string& x, const std::string& suffix) {
  return x.size() >= suffix.size()
         && x.compare(x.size() - suffix.size(), suffix.size(), suffix) == 0;
}

int64_t grown(int64_t now, int64_t last) {
  return now > last ? now - last : 0;
}

} // namespace

int64_t delivery_hour(int64_t ms) {
  auto r = ms % hour_ms;
  return ms - (r < 0 ? r + hour_ms : r);
}

declared_sums declared_total(const drop_declaration& d) {
  declared_sums out;
  for (auto& [kind, n] : d.records)
    (ends_with(kind, "_batches") ? out.batches : out.records) += n;
  out.collected = d.collected;
  out.stored = d.stored;
  return out;
}

declared_sums declared_growth(const drop_declaration& d,
                              const std::string& last_origin,
                              const declared_sums& last) {
  auto now = declared_total(d);
  if (d.origin != last_origin)
    return now;
  // Each counter alone: one that went down adds 0, the others still grow.
  return {grown(now.records, last.records), grown(now.batches, last.batches),
          grown(now.collected, last.collected), grown(now.stored, last.stored)};
}

bool declared_decreased(const drop_declaration& d,
                        const std::string& last_origin,
                        const declared_sums& last) {
  if (d.origin != last_origin)
    return false;
  auto now = declared_total(d);
  return now.records < last.records || now.batches < last.batches
         || now.collected < last.collected || now.stored < last.stored;
}

declared_sums kept_declared(const drop_declaration& d,
                            const std::string& last_origin,
                            const declared_sums& last,
                            const declared_sums& grown) {
  if (d.origin != last_origin)
    return declared_total(d);
  return {last.records + grown.records, last.batches + grown.batches,
          last.collected + grown.collected, last.stored + grown.stored};
}

int64_t missing_growth(int64_t sequence, int64_t last) {
  if (sequence > last)
    return sequence - last - 1;
  return -1;
}

delivery_counts delivery_of_batch(int64_t received, int64_t duplicates,
                                  int64_t skipped,
                                  const declared_sums& grown) {
  return {received,      duplicates,      skipped - grown.batches,
          grown.records, grown.collected, grown.stored};
}

} // namespace fleetd
