#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "cloud/journal.hpp"
#include "cloud/sink_backend.hpp"
#include "messages/interfaces.hpp"
#include "runtime/clock.hpp"
#include "runtime/jitter.hpp"

namespace fleetd {

class option_set;

/// Opens a sink's own journal reader (again after a restart).
using journal_opener =
  std::function<caf::expected<std::shared_ptr<journal_reader>>()>;

struct sink_runner_config {
  /// Journal entries and points (samples, log lines, events) per write:
  /// what a sink holds decoded, whatever the devices' batch size.
  journal_read_bounds chunk;
  /// Wait before looking again at an empty journal (or a held lease).
  std::chrono::milliseconds poll{std::chrono::milliseconds(500)};
  std::chrono::milliseconds backoff_base{std::chrono::milliseconds(500)};
  std::chrono::milliseconds backoff_cap{std::chrono::seconds(60)};
  /// Consecutive failed writes that open the breaker.
  int64_t breaker_threshold = 5;
  /// How long an open breaker stays open before one probe write.
  std::chrono::milliseconds breaker_open{std::chrono::seconds(30)};
  /// A lease not renewed this long is taken over by another node.
  std::chrono::milliseconds lease_ttl{std::chrono::seconds(30)};
  /// Filled by the node, not declared.
  std::shared_ptr<sink_backend> backend;
  journal_opener open_reader;
  /// Every enabled sink's name: rows all of them passed are deleted.
  std::vector<std::string> enabled;
  /// This node's id in the lease table.
  std::string holder;
  uint64_t seed = 0;
  clock_ptr clock;
};

/// Declares sinks.batch-entries, sinks.batch-points, sinks.poll-interval,
/// sinks.backoff-base, sinks.backoff-cap, sinks.breaker-threshold,
/// sinks.breaker-open, sinks.lease-ttl.
void declare(option_set& opts, sink_runner_config& x);

/// bad_config naming the option when `x` cannot work.
caf::error validate(const sink_runner_config& x);

struct sink_runner_state {
  sink_runner_config cfg;
  std::string sink;
  std::shared_ptr<journal_reader> reader;
  jitter_rng rng;
  /// Where the next read starts (past everything the backend accepted).
  journal_cursor cursor;
  /// The persisted cursor: what the backend holds durably.
  journal_cursor saved;
  /// Accepted writes not yet durable (backend durable_after): the steady ms
  /// of each acceptance and the position after it, oldest first.
  std::deque<std::pair<int64_t, journal_cursor>> unsettled;
  /// Outages that sent the cursor back to `saved` (unsettled writes lost).
  int64_t rewinds = 0;
  /// Saves refused because the backend restarted (or could not tell).
  int64_t restarts = 0;
  /// Steady ms of the last save check (backend unchanged()).
  int64_t checked_ms = INT64_MIN / 2;
  /// Read but not yet accepted by the backend (kept across retries).
  journal_chunk pending;
  /// Set after an invalid_record refusal: the chunk goes one entry at a
  /// time, so only the refused entries are skipped.
  bool one_by_one = false;
  size_t next = 0;
  int64_t failures = 0;
  /// Steady ms until which the breaker is open (0: closed).
  int64_t open_until_ms = 0;
  int64_t lease_renewed_ms = -1;
  bool leased = false;
  int64_t written = 0;
  int64_t writes = 0;
  int64_t errors = 0;
  int64_t retries = 0;
  int64_t invalid = 0;
  int64_t undecodable = 0;
  int64_t pruned = 0;
  int64_t breaker_opened = 0;
  /// Steps that found the lease held by another node.
  int64_t lease_refused = 0;
  std::string last_error;
  static inline const char* name = "sink_runner";
};

/// One sink: reads the journal after its persisted cursor in chunks,
/// writes each to its backend, persists the cursor once the backend
/// accepted it durably (durable_after, and the backend's server has not
/// restarted since: unchanged(); a failure or a restart before that
/// rewrites from the persisted cursor), and deletes rows every enabled sink passed. Retryable
/// errors back off (full jitter) and open a breaker; ec::invalid_record
/// entries are counted and skipped; undecodable rows are counted and
/// skipped. Drains only while it holds the sink's lease. Spawn detached.
sink_runner_actor::behavior_type
sink_runner(sink_runner_actor::stateful_pointer<sink_runner_state> self,
            sink_runner_config cfg);

} // namespace fleetd
