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
};

/// The start of the UTC hour `ms` falls in.
int64_t delivery_hour(int64_t ms);

/// Records the device declares dropped in all (the sum over its kinds).
int64_t declared_total(const drop_declaration& d);

/// The drops a report adds, given the last one stored for the stream
/// (`last_origin` empty: none). Counters of the same origin only grow, so
/// the growth is new (a resend or an older report adds 0); a new origin is
/// a store counting afresh from 0, so all of it is new.
int64_t declared_growth(const drop_declaration& d,
                        const std::string& last_origin, int64_t last_total);

/// Sequences a new (not held) batch `sequence` shows missing, given the
/// stream's acked `last` of the same epoch (0: none or a new epoch): the
/// ones it skips, or -1 when it fills a gap counted before.
int64_t missing_growth(int64_t sequence, int64_t last);

} // namespace fleetd
