#pragma once

#include <cstdint>
#include <map>
#include <limits>
#include <string>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "edge/stream_flow.hpp"
#include "messages/error.hpp"
#include "messages/types.hpp"

namespace fleetd {

/// What the storage actor needs of a store: SQLite (tiers 1 and 2) or memory
/// (tiers 2 and 3). Sync and collectors never know which one they talk to.
class store_backend {
public:
  virtual ~store_backend() = default;

  /// Commits all samples or none (a store with a commit interval may hold
  /// them in an open transaction that long); replies how many were stored.
  virtual caf::expected<int64_t> store(const metric_samples& xs) = 0;
  /// Samples stored but held uncommitted (storage.commit-interval).
  virtual int64_t held_points() const {
    return 0;
  }
  /// How long stored records may be held uncommitted (0: never held).
  virtual int64_t commit_interval_ms() const {
    return 0;
  }
  /// True while records (samples or log lines) wait uncommitted.
  virtual bool holding() const {
    return false;
  }
  /// Commits what is held now; on failure its records count as rejected.
  virtual caf::error commit_held() {
    return caf::none;
  }
  /// How long the storage actor keeps a group of stores open so they share
  /// one commit (storage.group-window; 0: every store commits itself).
  virtual int64_t group_window_ms() const {
    return 0;
  }
  /// Opens a group: later stores join one transaction until end_group().
  /// False when none opened (nothing to group, commit-interval holds, or
  /// the disk is full); stores then commit as they would alone.
  virtual bool begin_group() {
    return false;
  }
  /// True while the group begin_group() opened is still open; a commit the
  /// store had to make early (a batch, disk pressure) ends it.
  virtual bool grouping() const {
    return false;
  }
  /// Commits the group; the error, if any, is the answer of every store
  /// that joined it (their records are counted as rejected).
  virtual caf::error end_group() {
    return caf::none;
  }
  /// Commits all log lines or none; replies how many were committed.
  caf::expected<int64_t> store_logs(const log_lines& xs) {
    return store_logs(xs, {});
  }
  /// As above, and the cursors of the sources they were read from in the
  /// same commit: a restart resumes after the last line kept, never before.
  virtual caf::expected<int64_t> store_logs(const log_lines& xs,
                                            const source_cursors& cursors) = 0;
  /// The newest persisted cursor of each source.
  virtual caf::expected<source_cursors> cursors() = 0;
  /// Up to `max` records of the stream ("metrics", "logs", "events") that no
  /// batch covers yet, with the next sequence; ec::unknown_stream otherwise.
  /// Stops early (and sets `full`) once the records take `max_bytes`
  /// (record_bytes), the first one always taken.
  virtual caf::expected<unbatched_points>
  fetch(const std::string& stream, int64_t max,
        int64_t max_bytes = std::numeric_limits<int64_t>::max()) = 0;
  /// Keeps an encoded batch until acked and advances the cursor atomically.
  virtual caf::expected<int64_t> enqueue(const queued_batch& batch) = 0;
  /// Up to `max` unacked batches, lowest sequence first.
  virtual caf::expected<queued_batches> pending(const std::string& stream,
                                                int64_t max) = 0;
  /// Forgets batches up to and including `sequence`; replies how many.
  /// When it forgot one, the session series table of the stream becomes its
  /// first `base` entries followed by `defs` (the series the acked batch
  /// defined) and their histories become `history`, in the same
  /// transaction.
  virtual caf::expected<int64_t> ack(const std::string& stream,
                                     int64_t sequence, int64_t base,
                                     const metric_samples& defs,
                                     const std::string& history) = 0;
  /// Drops a queued batch the cloud refused for good, counting its records
  /// as lost (drop_kind::batches_rejected); replies how many were dropped.
  virtual caf::expected<int64_t> discard(const std::string& stream,
                                         int64_t sequence) = 0;
  /// The stream's series session: the series the cloud knows, by session
  /// number (name and labels only), and their histories.
  virtual caf::expected<wire_session> session(const std::string& stream) = 0;
  /// The operator's settings last received from the cloud (version 0: none).
  virtual caf::expected<cloud_settings> load_settings() = 0;
  virtual caf::error save_settings(const cloud_settings& x) = 0;
  /// Counts a failed send of a queued batch and when it is tried next
  /// (wall-clock ms); a batch no longer queued is ignored.
  virtual caf::error note_retry(const std::string& stream, int64_t sequence,
                                int64_t next_retry_ms) = 0;
  /// Makes everything committed durable in the main file.
  virtual caf::error checkpoint() = 0;
  /// Records an event (lifecycle, drops, pressure, capability change).
  virtual caf::error record_event(const std::string& kind,
                                  const std::string& message) = 0;
  /// Every drop counter by kind (see drop_kind).
  virtual std::map<std::string, int64_t> drops() = 0;
  /// Counts records refused before they reached storage (drop_kind::refused)
  /// with the drops, so the device declares them.
  virtual caf::error count_refused(const std::string& kind, int64_t n) = 0;
  /// The collected and stored counts last saved (none: a store that keeps
  /// nothing over a restart, whose epoch is new each start anyway).
  virtual flow_counts load_flow() {
    return {};
  }
  /// Keeps `x` with the store's next commit, so that what a device declared
  /// does not go down after a restart under the same epoch (a crash before
  /// that commit may: the cloud then ignores reports until they pass it).
  virtual caf::error save_flow(const flow_counts&) {
    return caf::none;
  }
  /// Names this store's sequences and drop counters (SyncMetadata.epoch): a
  /// store started afresh counts from 0 under a new one.
  virtual const std::string& epoch() const = 0;
  virtual actor_stats stats() = 0;
  /// "storage" (sizes, rows, backlog, drops, integrity), "queue" (batches
  /// waiting) or "clean" (checkpoint, vacuum, drop synced data past
  /// retention, then say what it did); ec::bad_config for anything else.
  virtual caf::expected<debug_report> debug(const std::string& what) = 0;
  /// Adopts the caps of new tier settings (a store type never changes live).
  virtual void apply(const tier_settings& settings) = 0;
};

/// Why records were dropped; the keys of the drop counters.
namespace drop_kind {
/// Metric rows already acked by the cloud (no data lost).
constexpr const char* metrics_synced = "metrics_synced";
/// Metric rows whose data waits in a queued batch (no data lost).
constexpr const char* metrics_queued_copy = "metrics_queued_copy";
/// Metric points never delivered: unbatched rows or inside a dropped batch.
constexpr const char* metrics_unsynced = "metrics_unsynced";
/// Log lines already acked by the cloud (no data lost).
constexpr const char* logs_synced = "logs_synced";
/// Log lines whose data waits in a queued batch (no data lost).
constexpr const char* logs_queued_copy = "logs_queued_copy";
/// Log lines never delivered: unbatched rows or inside a dropped batch.
constexpr const char* logs_unsynced = "logs_unsynced";
/// Queued batches dropped before the cloud acked them.
constexpr const char* batches_unsynced = "batches_unsynced";
/// Samples refused because the disk stayed full.
constexpr const char* metrics_rejected = "metrics_rejected";
/// Log lines refused because the disk stayed full.
constexpr const char* logs_rejected = "logs_rejected";
/// Events that could not be recorded (disk full or read-only).
constexpr const char* events_rejected = "events_rejected";
/// Queued batches the cloud refused for good (their records are lost).
constexpr const char* batches_rejected = "batches_rejected";
/// Events past their retention or dropped as a last resort (all of them,
/// synced or not).
constexpr const char* events = "events";
/// Events never delivered: dropped (cap, retention) before a batch covered
/// them, or inside a dropped batch.
constexpr const char* events_unsynced = "events_unsynced";
/// Unsynced records or queued batches that a corrupt file no longer gave
/// back when it was salvaged (at most this many: counts of a damaged table
/// are estimated from its id range).
constexpr const char* metrics_unreadable = "metrics_unreadable";
constexpr const char* logs_unreadable = "logs_unreadable";
constexpr const char* events_unreadable = "events_unreadable";
constexpr const char* batches_unreadable = "batches_unreadable";
/// Queued batches of `stream` dropped before the cloud acked them (cap,
/// retention, refused for good): sequences the cloud never sees, declared
/// so that it does not count them missing too.
inline std::string lost_batches(const std::string& stream) {
  return stream + "_batches";
}
/// The kind under which records of `stream` count when lost undelivered.
inline const char* unsynced_kind(const std::string& stream) {
  return stream == "logs"     ? logs_unsynced
         : stream == "events" ? events_unsynced
                              : metrics_unsynced;
}

/// Records of `stream` the device refused before storage (local ingest), by
/// why: too_large, bad_format, bad_request.
inline std::string refused(const std::string& stream, const char* why) {
  return stream + "_refused_" + why;
}

/// The counters of `stream` in `drops` that count records lost before the
/// cloud got them (unsynced, rejected, unreadable, refused) and its lost
/// batches: what a device declares with its requests, nonzero ones only.
/// Copies and synced rows are no loss ("events" mixes both: left out).
inline drop_declaration declared(const std::string& stream,
                                 const std::string& origin,
                                 const std::map<std::string, int64_t>& drops) {
  drop_declaration out;
  out.origin = origin;
  for (const char* suffix :
       {"_unsynced", "_rejected", "_unreadable", "_batches"}) {
    auto i = drops.find(stream + suffix);
    if (i != drops.end() && i->second > 0)
      out.records.insert(*i);
  }
  auto prefix = stream + "_refused_";
  for (auto i = drops.lower_bound(prefix);
       i != drops.end() && i->first.compare(0, prefix.size(), prefix) == 0;
       ++i)
    if (i->second > 0)
      out.records.insert(*i);
  return out;
}

} // namespace drop_kind

/// ec::unknown_stream unless `stream` is one a store keeps rows of.
inline caf::error check_stream(const std::string& stream) {
  if (stream == "metrics" || stream == "logs" || stream == "events")
    return caf::none;
  return make_error(ec::unknown_stream, "no stream '" + stream + "'");
}

} // namespace fleetd
