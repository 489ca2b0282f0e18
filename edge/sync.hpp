#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "messages/interfaces.hpp"
#include "messages/metrics_codec.hpp"
#include "runtime/clock.hpp"

namespace fleetd {

struct sync_config {
  std::string device_id;
  /// "metrics", "logs" or "events".
  std::string stream;
  std::chrono::milliseconds interval{10000};
  int64_t batch_size = 1000;
  /// sync.batch-bytes: a batch is also cut when its records take this many
  /// bytes in memory (record_bytes).
  int64_t batch_bytes = 1 << 20;
  int zstd_level = 3;
  /// How long one request may take before the round counts as failed.
  std::chrono::milliseconds request_timeout{15000};
  /// Times the cloud may refuse one batch (400, 409, 413, 415) before it is
  /// dropped and counted, so one bad batch never blocks its stream.
  int64_t max_rejections = 3;
  /// Tier 3: every store notification sends what there is at once.
  bool forward_immediately = false;
  /// Version of the cloud settings the device applies (sent with requests).
  int64_t config_version = 0;
  clock_ptr clock;
  storage_actor storage;
  cloud_link_actor link;
  backoff_actor backoff;
  /// Hears new settings from the cloud (the capability actor); may be null.
  settings_listener settings;
};

class option_set;

/// Declares device.id and sync.max-rejections; the rest comes from the tier
/// (capability) and the other actors' options.
void declare(option_set& opts, sync_config& x);

/// bad_config naming the option key (or the field) when `x` cannot work.
caf::error validate(const sync_config& x);

struct sync_state {
  sync_config cfg;
  /// Metrics only: the series the cloud knows (docs/wire-format.md).
  codec_context session;
  bool session_loaded = false;
  /// The metrics batch last cut and what it adds to the session, from the
  /// read-back at the cut: its ack advances the session without decoding the
  /// batch again (after a restart, or for a body cut before, the ack decodes
  /// it).
  struct cut_batch {
    std::string body;
    int64_t base = 0;
    codec_delta after;
  };
  std::optional<cut_batch> last_cut;
  /// What the capability actor last reported (tier 0: nothing yet).
  device_capability capability;
  /// The next request carries `capability`: the session's first one, and
  /// the first after every change, until the cloud has answered one.
  bool capability_due = true;
  /// The drop counters the cloud last acked with a batch: a request carries
  /// them again only when they changed (cumulative, so a resend is harmless).
  drop_declaration declared_acked;
  /// A round is running: only one batch is in flight per stream.
  bool busy = false;
  /// Identifies the one timer that may start the next round.
  int64_t generation = 0;
  /// Steady time of the last cut (0: none yet, the first cut takes what
  /// there is); a partial batch waits for the interval.
  int64_t last_cut_ms = 0;
  /// The next cut takes what there is (an outside tick asked for it).
  bool force_cut = false;
  /// Refusals of the batch at the head of the queue.
  int64_t head_sequence = 0;
  /// A batch whose send failed; its retry is counted in storage once the
  /// backoff actor says when the next try may go (0: none).
  int64_t failed_sequence = 0;
  int64_t head_rejections = 0;
  /// The head batch was already re-encoded for a new series session.
  bool head_resynced = false;
  /// The head batch was already re-encoded under a new epoch.
  bool head_reepoched = false;
  /// After a sequence conflict, the epoch this stream's batches carry
  /// instead of the store's (until the node restarts).
  std::string epoch_override;
  int64_t batches_sent = 0;
  int64_t batches_acked = 0;
  int64_t records_synced = 0;
  int64_t send_failures = 0;
  int64_t duplicates_acked = 0;
  /// Metrics batches sent as protobuf columns because the columnar bytes
  /// did not read back (a codec fault; should stay 0).
  int64_t encode_fallbacks = 0;
  int64_t batches_rejected = 0;
  int64_t session_resets = 0;
  int64_t reepochs = 0;
  int64_t last_acked_sequence = 0;
  int64_t bytes_sent = 0;
  std::string last_error;
  static inline const char* name = "sync";
};

/// Moves one stream from storage to the cloud: cut a batch (when a full one
/// is waiting, or what there is once `interval` passed since the last cut),
/// persist it in
/// sync_queue, ask the backoff actor, send, delete on ack; on failure resend
/// the same bytes later. One batch in flight, lowest sequence first, and a
/// new batch is cut only once the queue of the stream is empty.
sync_actor::behavior_type sync(sync_actor::stateful_pointer<sync_state> self,
                               sync_config cfg);

} // namespace fleetd
