#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "messages/journal.hpp"
#include "messages/types.hpp"

namespace fleetd {

class option_set;

/// The ingest journal's bounds (journal.* options; docs/data-stack.md).
struct journal_config {
  /// Whether stores write the journal: on when any sink is configured.
  bool enabled = false;
  /// Journal bytes (compressed rows) past which new batches are refused.
  int64_t max_bytes = int64_t{1} << 30;
  /// Age of the oldest unwritten row past which new batches are refused.
  std::chrono::milliseconds retention{std::chrono::hours(24)};
  /// What a refused device is told to wait before it retries.
  std::chrono::milliseconds retry_after{std::chrono::seconds(5)};
  /// Largest decoded size of one journal row a reader accepts.
  int64_t max_entry_bytes = int64_t{256} << 20;
};

/// Declares journal.max-bytes, journal.retention, journal.retry-after,
/// journal.max-entry-bytes.
void declare(option_set& opts, journal_config& x);

/// bad_config naming the option when `x` cannot work.
caf::error validate(const journal_config& x);

/// ec::journal_full when a journal of `bytes` whose oldest row was received
/// at `oldest_ms` (0: empty) is past `cfg`'s bounds at `now_ms`.
caf::error check_journal_bound(const journal_config& cfg, int64_t bytes,
                               int64_t oldest_ms, int64_t now_ms);

/// "org/device" split at its first '/' (no '/': no org, the whole device).
std::pair<std::string, std::string> split_device_id(const std::string& id);

/// A position in the journal: rows are read in (xid, id) order. The
/// embedded store has one writer, so its xid is always 0.
struct journal_cursor {
  int64_t xid = 0;
  int64_t id = 0;
};

/// How much one read may take: rows, and points decoded (samples, log lines
/// and events), which is what a chunk's memory grows with.
struct journal_read_bounds {
  int64_t entries = 500;
  int64_t points = 20000;
};

/// What one read returned: the decoded entries and the position after the
/// last row read (rows that did not decode are passed and counted).
struct journal_chunk {
  journal_entries entries;
  /// Each entry's position (the cursor just past it).
  std::vector<journal_cursor> positions;
  journal_cursor end;
  int64_t rows = 0;
  int64_t undecodable = 0;
  /// Samples, log lines and events of the decoded entries.
  int64_t points = 0;
};

/// Appends a read row at `at` to `c`: decoded (with its position), or
/// counted undecodable; the chunk's end moves past it either way. False
/// once the chunk holds `max_points`: the next rows are for the next read.
bool add_row(journal_chunk& c, journal_cursor at, std::string_view row,
             uint64_t max_bytes, int64_t max_points);

/// The journal entry of accepted batch `b` of `org`'s `device`, received at
/// `now_ms`; `decoded`: the samples of a columnar batch.
journal_entry journal_entry_of(const ingest_batch& b, std::string org,
                               std::string device, int64_t now_ms,
                               metric_samples decoded);

/// How far a sink is behind: unwritten rows and the oldest one's receipt.
struct journal_lag {
  int64_t entries = 0;
  int64_t oldest_ms = 0;
};

/// A sink's view of the journal, on its own connection. Rows are read in
/// commit order; a cursor moves only forward; rows every enabled sink has
/// passed are deleted. BLOCKING: only a detached actor calls it.
class journal_reader {
public:
  virtual ~journal_reader() = default;

  /// The sink's persisted cursor (the start when it has none).
  virtual caf::expected<journal_cursor> cursor(const std::string& sink) = 0;
  /// Committed rows after `after`, up to `max.entries` rows and, past the
  /// first, `max.points` points.
  virtual caf::expected<journal_chunk> read(journal_cursor after,
                                            journal_read_bounds max) = 0;
  /// Persists the sink's cursor (after the backend accepted the rows).
  virtual caf::error advance(const std::string& sink, journal_cursor to) = 0;
  /// Deletes the rows every one of `sinks` has passed; returns how many.
  virtual caf::expected<int64_t>
  prune(const std::vector<std::string>& sinks) = 0;
  virtual caf::expected<journal_lag> lag(journal_cursor after) = 0;
  /// Takes or renews the sink's lease for `holder` until now + ttl; false
  /// while another holder's lease has not expired.
  virtual caf::expected<bool> lease(const std::string& sink,
                                    const std::string& holder,
                                    std::chrono::milliseconds ttl) = 0;
};

} // namespace fleetd
