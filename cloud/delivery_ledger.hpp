#pragma once

#include <cstdint>
#include <string>

#include "messages/types.hpp"

namespace fleetd {

// What one batch adds to the cloud's delivery table (per device, stream and
// hour; every store backend keeps it in the batch's own transaction).

/// What one batch adds to its device stream's row of the hour.
struct delivery_counts {
  int64_t received;
  int64_t duplicates;
  int64_t missing;
  int64_t declared_drops;
  int64_t collected;
  int64_t stored;
};

/// A device's declaration summed: records lost, and whole batches lost
/// (kinds named "<stream>_batches": sequences the cloud never sees); and
/// the records it collected and stored.
struct declared_sums {
  int64_t records = 0;
  int64_t batches = 0;
  int64_t collected = 0;
  int64_t stored = 0;

  bool empty() const {
    return records == 0 && batches == 0 && collected == 0 && stored == 0;
  }
};

/// The start of the UTC hour `ms` falls in.
int64_t delivery_hour(int64_t ms);

declared_sums declared_total(const drop_declaration& d);

/// What a report adds, given the sums last stored for the stream
/// (`last_origin` empty: none). Counters of the same origin only grow, so
/// the growth is new (a resend or an older report adds 0); a new origin is
/// a store counting afresh from 0, so all of it is new.
declared_sums declared_growth(const drop_declaration& d,
                              const std::string& last_origin,
                              const declared_sums& last);

/// True when a report of `last_origin` went below the sums last stored:
/// the cloud counts it; what went down adds 0 and its sum is kept.
bool declared_decreased(const drop_declaration& d,
                        const std::string& last_origin,
                        const declared_sums& last);

/// The sums to store after a report that added `grown` to `last`: within
/// an origin they only grow (an older report never lowers them).
declared_sums kept_declared(const drop_declaration& d,
                            const std::string& last_origin,
                            const declared_sums& last,
                            const declared_sums& grown);

/// Sequences a new (not held) batch `sequence` shows missing, given the
/// stream's acked `last` of the same epoch (0: none or a new epoch): the
/// ones it skips, or -1 when it fills a gap counted before.
int64_t missing_growth(int64_t sequence, int64_t last);

/// What one batch adds to its row: `received` records (0: a duplicate of
/// `duplicates` records), `skipped` sequences (missing_growth), less the
/// lost batches the device declared, which are no unknown loss.
delivery_counts delivery_of_batch(int64_t received, int64_t duplicates,
                                  int64_t skipped,
                                  const declared_sums& grown);

} // namespace fleetd
