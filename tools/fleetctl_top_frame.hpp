#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "messages/types.hpp"

namespace fleetd {

/// What the operator chose in `fleetctl top`.
struct top_view {
  /// A column of actor_column_names().
  std::string sort = "rate";
  /// Smallest (or Z) first instead of the column's own order.
  bool reverse = false;
  int64_t interval_ms = 1000;
};

/// Two answers of the node and the time between them: top's rates come
/// from their difference, not from the node's own per_second (which any
/// other console's ask resets).
struct top_sample {
  node_status now;
  /// Absent before the second answer; rates show "-" then.
  const node_status* before = nullptr;
  int64_t elapsed_ms = 0;
  /// Local wall clock (Unix ms) of `now`, shown in the header.
  int64_t at_ms = 0;
  /// Why the last ask failed; empty when it did not.
  std::string error;
};

/// `now` with each actor's per_second the rate of handled messages since
/// `before` (-1 where unknown: no earlier answer, a restarted actor).
node_status with_rates(const node_status& now, const node_status* before,
                       int64_t elapsed_ms);

/// One screen of `fleetctl top`: header lines, the actors table sorted as
/// `view` says, a key line; at most `rows` lines of at most `cols` bytes
/// (0: no limit, and no key line: one frame for a pipe), control bytes the
/// node sent replaced by '?'.
std::vector<std::string> top_frame(const top_sample& s, const top_view& view,
                                   int rows, int cols);

} // namespace fleetd
