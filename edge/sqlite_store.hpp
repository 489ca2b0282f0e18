#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include <caf/expected.hpp>

#include "messages/interfaces.hpp"
#include "runtime/clock.hpp"
#include "edge/round_journal.hpp"
#include "edge/store_backend.hpp"
#include "runtime/disk.hpp"
#include "runtime/sqlite.hpp"

namespace fleetd {

/// Caps of the local store; 0 disables a cap.
struct storage_limits {
  /// Most bytes the database may hold (pages in use, WAL excluded).
  int64_t max_bytes = 100 * 1000 * 1000;
  /// Metrics older than this are dropped.
  int64_t retention_ms = 7 * 24 * 3600 * 1000LL;
  /// Events older than this are dropped.
  int64_t events_retention_ms = 7 * 24 * 3600 * 1000LL;
  /// Space held in `<path>.reserve` and given back when the disk fills up,
  /// so the store can still delete old data to make room.
  int64_t reserve_bytes = 512 * 1024;
  /// storage.commit-interval: how long stored records may wait in an open
  /// transaction before one commit (0: every store commits).
  int64_t commit_interval_ms = 0;
  /// storage.group-window: stores arriving this long after the first share
  /// its commit, each answered after it (0: every store commits itself).
  int64_t group_window_ms = 50;
  /// storage.rounds-file: commits of samples and log lines are appended to
  /// `<path>-rounds` (one synced frame, about one page per round) instead of
  /// the tables, which take them only when the file grows past its bound;
  /// records the cloud acked are not kept on the device.
  bool rounds_file = false;
};

struct sqlite_store_config {
  /// SQLite file; its WAL and SHM files sit beside it.
  std::string path;
  clock_ptr clock;
  storage_limits limits;
  /// Where the files live: the real file system unless a test fakes one.
  std::shared_ptr<fleetd::disk> disk = real_disk();
};

class option_set;

/// Declares storage.reserve-bytes, storage.commit-interval,
/// storage.group-window and storage.rounds-file; the caps (storage.max-bytes,
/// storage.retention) come from the tier (edge/capability).
void declare(option_set& opts, storage_limits& x);

/// bad_config naming the option key (or the field) when `x` cannot work.
caf::error validate(const sqlite_store_config& x);



/// The device's SQLite store: metrics, the sync queue and per-stream cursors.
/// Everything a reply reports as committed is in the database file.
class sqlite_store : public store_backend {
public:
  sqlite_store() = default;
  sqlite_store(sqlite_store&&) = default;
  sqlite_store& operator=(sqlite_store&&) = default;
  /// Commits what storage.commit-interval still holds back.
  ~sqlite_store() override;

  /// Opens or creates the store. Only a corrupt file (SQLite's verdict) is
  /// moved aside, after what it still holds is salvaged into the fresh one;
  /// a lock, a permission or an open error is returned and touches nothing.
  static caf::expected<sqlite_store> open(const sqlite_store_config& cfg);

  caf::expected<int64_t> store(const metric_samples& xs) override;
  using store_backend::store_logs;
  caf::expected<int64_t> store_logs(const log_lines& xs,
                                    const source_cursors& cursors) override;
  caf::expected<source_cursors> cursors() override;
  int64_t held_points() const override {
    return held_points_;
  }
  int64_t commit_interval_ms() const override {
    return cfg_.limits.commit_interval_ms;
  }
  bool holding() const override {
    return held_since_ms_ >= 0;
  }
  caf::error commit_held() override {
    return commit_pending();
  }
  int64_t group_window_ms() const override {
    return cfg_.limits.group_window_ms;
  }
  bool begin_group() override;
  bool grouping() const override {
    return grouping_;
  }
  caf::error end_group() override;
  caf::expected<unbatched_points>
  fetch(const std::string& stream, int64_t max,
        int64_t max_bytes = std::numeric_limits<int64_t>::max()) override;
  caf::expected<int64_t> enqueue(const queued_batch& batch) override;
  caf::expected<queued_batches> pending(const std::string& stream,
                                        int64_t max) override;
  caf::expected<int64_t> ack(const std::string& stream, int64_t sequence,
                             int64_t base, const metric_samples& defs,
                             const std::string& history) override;
  caf::expected<int64_t> discard(const std::string& stream,
                                 int64_t sequence) override;
  caf::expected<wire_session> session(const std::string& stream) override;
  caf::expected<cloud_settings> load_settings() override;
  caf::error save_settings(const cloud_settings& x) override;
  caf::error note_retry(const std::string& stream, int64_t sequence,
                        int64_t next_retry_ms) override;
  caf::error checkpoint() override;
  actor_stats stats() override;
  caf::expected<debug_report> debug(const std::string& what) override;
  void apply(const tier_settings& settings) override;

  /// Applies the caps now: age first, then size, oldest synced data first.
  /// Returns how many records were dropped.
  caf::expected<int64_t> enforce_limits();
  void set_limits(const storage_limits& limits);
  const storage_limits& limits() const {
    return cfg_.limits;
  }

  /// Bytes of the database pages in use.
  int64_t used_bytes();

  /// Appends an event (agent lifecycle, drops, pressure) to the events table.
  caf::error record_event(const std::string& kind, const std::string& message) override;

  /// Every drop counter, persisted across restarts.
  std::map<std::string, int64_t> drops() override;
  caf::error count_refused(const std::string& kind, int64_t n) override;
  flow_counts load_flow() override;
  caf::error save_flow(const flow_counts& x) override;

  const std::string& epoch() const override {
    return epoch_;
  }

  /// True while the last write failed for lack of space.
  bool under_pressure() const {
    return under_pressure_;
  }

  /// Bytes the WAL may reach before a checkpoint truncates it: a small
  /// fraction of the cap (wal_autocheckpoint and journal_size_limit).
  int64_t wal_bound() const;
  /// The WAL size that triggers a checkpoint: wal_bound(), or less while
  /// the disk has less room than two of those (a quarter of what is free).
  int64_t checkpoint_bound() const;

  /// Commits the transaction storage.commit-interval holds open, if any;
  /// when that fails its records are counted as rejected and lost.
  caf::error commit_pending();

private:
  // Opens the transaction later stores join (storage.commit-interval > 0,
  // not under disk pressure); a no-op while one is open.
  caf::error defer_commits();
  // with_room inside the held transaction (when there is one); counts the
  // records into `stored` and, while held, `held`; commits when due.
  caf::expected<int64_t>
  held_store(size_t records,
             const std::function<caf::expected<int64_t>()>& insert,
             const char* rejected_kind, int64_t& stored, int64_t& held);
  // Commits the held transaction once it is commit-interval old.
  caf::error commit_if_due();
  // The reports of debug(): each reads, only clean() changes the store.
  caf::expected<debug_report> storage_report();
  caf::expected<debug_report> queue_report();
  caf::expected<debug_report> clean();
  // How commits are made and what is held back, in words.
  std::string commit_policy() const;
  // The oldest queued metrics or logs batch, its records counted as lost;
  // 1 when there was one, else 0.
  caf::expected<int64_t> drop_oldest_batch();
  // The queued batches of `stream` cut before `cutoff_ms`, their records
  // counted as `kind`; how many batches.
  caf::expected<int64_t> drop_batches_before(const char* stream,
                                             const char* kind,
                                             int64_t cutoff_ms);
  // Bytes of the database file plus its WAL, or of the WAL alone.
  int64_t on_disk_bytes(bool wal_only);

  // Schema, salvage of a corrupt predecessor, epoch, statements, WAL caps.
  caf::error init(const std::string* salvage_from);
  caf::error salvage(const std::string& aside);
  caf::error limit_wal();
  // Shrinks the WAL bound while the disk has less room than two of them.
  void fit_wal_to_disk();
  caf::error prepare();
  caf::error load_epoch();
  // The count `sql` gives with ?1 = `a` and ?2 = the events' batched
  // cursor (events a drop takes that no batch covers yet); 0 on error.
  int64_t unsynced_events(const char* sql, int64_t a);
  caf::expected<unbatched_points> fetch_rows(const std::string& stream,
                                             int64_t after, int64_t max,
                                             int64_t max_bytes,
                                             unbatched_points out);
  caf::error replace_session(const std::string& stream, int64_t base,
                            const metric_samples& defs,
                            const std::string& history);
  caf::expected<int64_t> series_id(const metric_sample& x);
  // The id of x's series when this store knows it (no database access).
  std::optional<int64_t> known_series_id(const metric_sample& x);
  caf::expected<int64_t> insert_all(const metric_samples& xs);
  // After a rollback: the series learnt since `known_before` are re-read.
  void forget_new_series(size_t known_before);
  // -- the rounds file (edge/round_journal) --------------------------------
  // True when stores go to the rounds file: it is open, every store commits
  // (no commit-interval) and the disk is not full.
  bool journaling() const;
  caf::error open_journal();
  // Appends what stores added since the last flush; when the file refuses
  // them, they go into the tables instead (with_room), else are rejected.
  caf::error flush_journal();
  // Moves the durable records of the rounds file into the tables.
  caf::error fold_journal();
  // A folded rounds file kept for its acked records until storage.retention
  // or the cap drops it: <db>-rounds.<sealed ms>.<samples>.<lines>.
  struct kept_rounds {
    std::string path;
    int64_t sealed_ms = 0;
    int64_t metrics = 0;
    int64_t logs = 0;
    int64_t bytes = 0;
  };
  // The kept rounds files on disk, oldest first.
  void find_kept_rounds();
  // Removes the oldest kept files while `drop` says so, counting their
  // records as dropped synced ones; how many records they held.
  int64_t drop_kept_while(const std::function<bool(const kept_rounds&)>& drop);
  void count_kept_drop(const kept_rounds& k);
  int64_t kept_rounds_bytes() const;
  // Records of the rounds file no batch covers yet.
  int64_t journal_unbatched(bool logs);
  // Bytes the rounds file may reach before its records move to the tables.
  int64_t journal_bound() const;
  // The tables hold batches and acks of the rounds file uncommitted in one
  // transaction (its frames are their redo log) until the file is folded or
  // something else must be durable (an event, settings, new series).
  caf::error open_lazy();
  caf::error commit_lazy();
  // When SQLite dropped that transaction itself, takes the file's batches
  // and acks again.
  caf::error redo_if_lost();
  caf::error apply_journal_ops();
  caf::error enqueue_rows(const queued_batch& b);
  // An events row; id 0 lets the table number it.
  caf::error insert_event(const journal_event& e);
  caf::error ack_rows(const std::string& stream, int64_t sequence,
                      int64_t base, const metric_samples& defs,
                      const std::string& history, int64_t& deleted,
                      int64_t& acked_upto);
  caf::expected<int64_t> journal_samples(const metric_samples& xs);
  caf::expected<int64_t> journal_lines(const log_lines& xs,
                                       const source_cursors& cursors);
  // Keeps each cursor in the table unless it holds a newer one.
  caf::error upsert_cursors(const source_cursors& xs);
  // Inserts records of the rounds file into the tables (ids kept; a row
  // already there is the same record and stays).
  caf::error insert_journal_metrics(size_t from, size_t to);
  caf::error insert_journal_logs(size_t from, size_t to);
  // Runs `insert`; on disk full frees room by the drop policy and tries once
  // more; records still refused count as `rejected_kind` drops (persisted
  // after the next insert that succeeds).
  caf::expected<int64_t>
  with_room(size_t records,
            const std::function<caf::expected<int64_t>()>& insert,
            const char* rejected_kind);
  // Moves the in-memory count of `kind` into the drops table, when it can.
  void persist_rejected(const char* kind);
  // Deletes one chunk in policy order; 0 when nothing is left to drop.
  caf::expected<int64_t> drop_chunk(int64_t rows);
  caf::expected<int64_t> drop_older_than(int64_t cutoff_ms);
  caf::error count_drop(const char* kind, int64_t n);
  caf::expected<int64_t> make_room(int64_t target_bytes);
  // Holds reserve_bytes on disk; false when the disk has no room for it.
  bool hold_reserve();
  void release_reserve();

  sqlite_store_config cfg_;
  sqlite::database db_;
  sqlite::statement insert_metric_;
  sqlite::statement insert_series_;
  sqlite::statement select_unbatched_;
  sqlite::statement select_state_;
  sqlite::statement insert_queue_;
  sqlite::statement update_batched_;
  sqlite::statement select_pending_;
  sqlite::statement delete_acked_;
  sqlite::statement update_acked_;
  std::unordered_map<std::string, int64_t> series_;
  std::string key_buf_;
  std::map<int64_t, std::pair<std::string, label_map>> series_by_id_;
  int64_t points_stored_ = 0;
  int64_t logs_stored_ = 0;
  int64_t store_failures_ = 0;
  int64_t batches_enqueued_ = 0;
  int64_t batches_acked_ = 0;
  int64_t moved_aside_ = 0;
  int64_t last_age_check_ms_ = 0;
  bool under_pressure_ = false;
  std::string epoch_;
  bool reserve_held_ = false;
  // Free bytes on the store's disk at the last write (-1: not read yet).
  int64_t disk_free_ = -1;
  // Records refused while the disk was full, by drop kind, not yet counted
  // in the drops table (that needs room too).
  std::map<std::string, int64_t> unpersisted_rejected_;
  std::string last_error_;
  // When the held transaction opened (-1: none), and what it holds.
  int64_t held_since_ms_ = -1;
  int64_t held_points_ = 0;
  int64_t held_lines_ = 0;
  int64_t commits_ = 0;
  // The rounds file while storage.rounds-file is on (or one was left over).
  std::optional<round_journal> journal_;
  std::vector<kept_rounds> kept_;
  // True inside flush_journal (its fallback commits through with_room).
  bool flushing_ = false;
  // True while the tables hold the rounds file's batches and acks
  // uncommitted (open_lazy).
  bool lazy_ = false;
  // Ids of the next metrics and logs rows (see next_row_id).
  int64_t next_metric_id_ = 1;
  int64_t next_log_id_ = 1;
  // A group of stores shares the held transaction (begin_group); the error
  // of a commit that ended it early is the answer of its members.
  bool grouping_ = false;
  caf::error group_error_;
  int64_t groups_ = 0;
};

/// The cloud settings the store at `path` persisted, read over a read-only
/// connection (nothing opened for writing, nothing applied): for commands
/// that only look while no node runs.
caf::expected<cloud_settings> read_cloud_settings(const std::string& path);

} // namespace fleetd
