#pragma once

#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

namespace fleetd {

/// Label name -> value; ordered so a series has one canonical key.
using label_map = std::map<std::string, std::string>;

/// One reading of one series.
struct metric_sample {
  std::string name;
  label_map labels;
  int64_t timestamp_ms = 0;
  double value = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, metric_sample& x) {
  return f(caf::meta::type_name("metric_sample"), x.name, x.labels,
           x.timestamp_ms, x.value);
}

using metric_samples = std::vector<metric_sample>;

/// A value's IEEE-754 bits, and back: exact for NaN payloads, ±Inf, -0.0.
inline uint64_t bits_of(double x) {
  uint64_t out;
  std::memcpy(&out, &x, sizeof(out));
  return out;
}

inline double double_of(uint64_t x) {
  double out;
  std::memcpy(&out, &x, sizeof(out));
  return out;
}

/// One log line of one log stream (the stream is its label set).
struct log_line {
  label_map labels;
  int64_t timestamp_ns = 0;
  std::string line;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, log_line& x) {
  return f(caf::meta::type_name("log_line"), x.labels, x.timestamp_ns, x.line);
}

using log_lines = std::vector<log_line>;

/// Where a source of log lines (a tailed file) has read up to, persisted by
/// storage in the same commit as the lines read before it: `key` names the
/// source, `value` is the source's own encoding. Of two cursors of one key
/// the one of higher `generation` is the newer.
struct source_cursor {
  std::string key;
  int64_t generation = 0;
  std::string value;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, source_cursor& x) {
  return f(caf::meta::type_name("source_cursor"), x.key, x.generation,
           x.value);
}

using source_cursors = std::vector<source_cursor>;

/// Puts `x` into `xs` unless `xs` holds a cursor of its key at least as new.
inline void keep_newest(source_cursors& xs, source_cursor x) {
  for (auto& y : xs)
    if (y.key == x.key) {
      if (x.generation > y.generation)
        y = std::move(x);
      return;
    }
  xs.push_back(std::move(x));
}

/// Something that happened on the device: lifecycle, capability change,
/// storage pressure and drops, link state.
struct event_record {
  int64_t timestamp_ms = 0;
  std::string kind;
  std::string message;
  label_map attributes;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, event_record& x) {
  return f(caf::meta::type_name("event_record"), x.timestamp_ms, x.kind,
           x.message, x.attributes);
}

using event_records = std::vector<event_record>;

/// What a device declares of one stream (SyncRequest.delivery): records it
/// dropped by drop kind, collected and stored, counted since the store
/// named `origin` began.
struct drop_declaration {
  std::string origin;
  std::map<std::string, int64_t> records;
  /// Records the collectors handed to storage, and those it accepted.
  int64_t collected = 0;
  int64_t stored = 0;

  bool operator==(const drop_declaration& y) const {
    return origin == y.origin && records == y.records
           && collected == y.collected && stored == y.stored;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, drop_declaration& x) {
  return f(caf::meta::type_name("drop_declaration"), x.origin, x.records,
           x.collected, x.stored);
}

/// Points the storage holds that no batch covers yet, oldest first.
struct unbatched_points {
  /// Storage row id of the last sample; a batch cut from these covers it.
  int64_t last_id = 0;
  /// Sequence the next batch of the stream must carry.
  int64_t next_sequence = 1;
  /// The store's sequence namespace (SyncMetadata.epoch).
  std::string epoch;
  /// Exactly one of these is filled, by the stream asked for.
  metric_samples samples;
  log_lines logs;
  event_records events;
  /// The store stopped at the byte bound it was given: more records wait,
  /// so the batch is full whatever its count.
  bool full = false;
  /// What the stream declares (drops, collected, stored) when records came
  /// back: a batch cut from them carries it on its first send too.
  drop_declaration declared;

  size_t size() const {
    return samples.size() + logs.size() + events.size();
  }
};

/// About the heap bytes one record takes in memory (its strings, label nodes
/// and struct), the measure a batch's byte bound counts in.
inline int64_t labels_bytes(const label_map& xs) {
  int64_t n = 0;
  for (auto& [k, v] : xs)
    n += 96 + static_cast<int64_t>(k.size() + v.size());
  return n;
}
/// A sample of series `name`/`labels`, before it is made.
inline int64_t sample_bytes(const std::string& name, const label_map& labels) {
  return static_cast<int64_t>(sizeof(metric_sample) + name.size())
         + labels_bytes(labels);
}
inline int64_t record_bytes(const metric_sample& x) {
  return sample_bytes(x.name, x.labels);
}
inline int64_t record_bytes(const log_line& x) {
  return static_cast<int64_t>(sizeof(x) + x.line.size())
         + labels_bytes(x.labels);
}
inline int64_t record_bytes(const event_record& x) {
  return static_cast<int64_t>(sizeof(x) + x.kind.size() + x.message.size())
         + labels_bytes(x.attributes);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, unbatched_points& x) {
  return f(caf::meta::type_name("unbatched_points"), x.last_id,
           x.next_sequence, x.epoch, x.samples, x.logs, x.events, x.full,
           x.declared);
}

/// A metrics stream's series session as the device keeps it: the series
/// the cloud knows, by session number (name and labels only), and their
/// histories (codec_context::save_history).
struct wire_session {
  metric_samples series;
  std::string history;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, wire_session& x) {
  return f(caf::meta::type_name("wire_session"), x.series, x.history);
}

/// The cloud acked a stream up to `sequence`: storage drops the batches up
/// to it and makes the series session its first `base` entries plus `defs`
/// (the series the acked batch defined), with `history` after it.
struct acked_batch {
  std::string stream;
  int64_t sequence = 0;
  int64_t base = 0;
  metric_samples defs;
  std::string history;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, acked_batch& x) {
  return f(caf::meta::type_name("acked_batch"), x.stream, x.sequence, x.base,
           x.defs, x.history);
}

/// An encoded batch kept in sync_queue until the cloud acks it.
struct queued_batch {
  std::string stream;
  int64_t sequence = 0;
  /// Storage row id of the last sample the batch covers.
  int64_t last_id = 0;
  int64_t points = 0;
  int64_t created_ms = 0;
  int64_t retry_count = 0;
  /// The exact HTTP body; a retry resends these bytes.
  std::string body;
  /// The stream's drops as the store counts them when the batch is handed
  /// out (storage fills it; sent beside the body).
  drop_declaration declared;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, queued_batch& x) {
  return f(caf::meta::type_name("queued_batch"), x.stream, x.sequence,
           x.last_id, x.points, x.created_ms, x.retry_count, x.body,
           x.declared);
}

using queued_batches = std::vector<queued_batch>;

/// The operator's sync settings for one device (SyncConfig); 0 in a field
/// keeps the device's own value.
struct cloud_settings {
  /// 0: no settings from the cloud.
  int64_t version = 0;
  int64_t batch_size = 0;
  int64_t sync_interval_ms = 0;
  int64_t retention_ms = 0;
  /// -1: keep the device's own; 0: send uncompressed; >0: zstd level.
  int64_t zstd_level = -1;
};

/// Largest values a SyncConfig carries exactly (int32 batch size; the legacy
/// whole-second field bounds the durations).
constexpr int64_t max_setting_batch_size = 1'000'000;
constexpr int64_t max_setting_ms = int64_t{INT32_MAX} * 1000;
constexpr int64_t max_setting_zstd_level = 19;

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cloud_settings& x) {
  return f(caf::meta::type_name("cloud_settings"), x.version, x.batch_size,
           x.sync_interval_ms, x.retention_ms, x.zstd_level);
}

/// The settings of cloud_settings that one change can name (bit flags).
enum settings_field : uint32_t {
  field_batch_size = 1,
  field_sync_interval = 2,
  field_retention = 4,
  field_zstd_level = 8,
  all_settings_fields = 15,
};

/// An operator's change to a device's settings (fleetctl config): the fields
/// named in `fields` take their value from `values` (the device's own value,
/// 0 or -1, clears one); the others keep the current version's.
struct settings_change {
  cloud_settings values;
  uint32_t fields = 0;
  /// Accept a device the cloud has never heard from.
  bool create = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, settings_change& x) {
  return f(caf::meta::type_name("settings_change"), x.values, x.fields,
           x.create);
}

/// The cloud's answer to one sync request, as the cloud link hands it back.
struct sync_ack {
  bool success = false;
  int64_t last_sequence_ack = 0;
  std::string error_code;
  std::string error_message;
  int64_t retry_after_ms = 0;
  /// HTTP status of the answer (0: none, the link failed).
  int64_t status = 0;
  /// New settings from the operator (version 0: none).
  cloud_settings config;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sync_ack& x) {
  return f(caf::meta::type_name("sync_ack"), x.success, x.last_sequence_ack,
           x.error_code, x.error_message, x.retry_after_ms, x.status,
           x.config);
}

/// SyncRequest.capability: what the device detected (tier 0: not sent).
struct device_capability {
  int64_t tier = 0;
  int64_t total_ram = 0;
  int64_t available_ram = 0;
  int64_t total_disk = 0;
  int64_t available_disk = 0;
  int64_t cpu_cores = 0;
  bool has_sqlite = false;
  bool has_network = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, device_capability& x) {
  return f(caf::meta::type_name("device_capability"), x.tier, x.total_ram,
           x.available_ram, x.total_disk, x.available_disk, x.cpu_cores,
           x.has_sqlite, x.has_network);
}

/// A decoded, verified batch on its way into the cloud store.
struct ingest_batch {
  std::string device_id;
  std::string stream;
  std::string epoch;
  /// Tells a retry (same bytes) from a reused sequence (other bytes).
  std::string checksum;
  int64_t sequence = 0;
  /// SyncRequest.config_version: the settings version the device applies.
  int64_t config_version = 0;
  metric_samples samples;
  /// A columnar metrics batch still to be decoded against the device's
  /// session series table, which the store keeps (docs/wire-format.md).
  std::string columnar;
  log_lines logs;
  event_records events;
  /// SyncMetadata.retry_count: how often the device sent it before.
  int64_t retry_count = 0;
  /// Set (tier > 0) on a session's first request and after every change.
  device_capability capability;
  /// SyncRequest.delivery: the device's drop counters (origin empty: none
  /// sent).
  drop_declaration declared;
  /// What the request's decode budget leaves for decoding `columnar` (0:
  /// the session's own limit): one budget bounds the whole request.
  uint64_t decode_budget = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ingest_batch& x) {
  return f(caf::meta::type_name("ingest_batch"), x.device_id, x.stream,
           x.epoch, x.checksum, x.sequence, x.config_version, x.samples,
           x.columnar, x.logs, x.events, x.retry_count, x.capability,
           x.declared, x.decode_budget);
}

/// What the cloud store did with a batch.
struct ingest_outcome {
  int64_t last_acked = 0;
  bool duplicate = false;
  int64_t stored = 0;
  /// The device's settings when newer than the batch's config_version.
  cloud_settings config;
  /// Counters of the batch's delivery report went down within their
  /// origin: those added nothing (the batch itself is stored).
  bool report_decreased = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ingest_outcome& x) {
  return f(caf::meta::type_name("ingest_outcome"), x.last_acked, x.duplicate,
           x.stored, x.config, x.report_decreased);
}

/// What one exchange with the cloud says about the link (edge/backoff).
struct link_report {
  std::string stream;
  /// The cloud answered (even with a refusal of the batch itself).
  bool ok = false;
  /// The cloud's hint: do not retry before this many milliseconds.
  int64_t retry_after_ms = 0;
  /// The stream still has data waiting after this exchange.
  bool backlog = false;
  std::string error;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, link_report& x) {
  return f(caf::meta::type_name("link_report"), x.stream, x.ok,
           x.retry_after_ms, x.backlog, x.error);
}

/// The link to the cloud as the backoff actor sees it.
struct link_status {
  /// "online", "retrying" (failing, breaker still closed), "offline"
  /// (breaker open) or "probing" (half-open: one probe in flight).
  std::string state = "online";
  int64_t consecutive_failures = 0;
  /// Steady time (clock::steady_ms) of the next allowed attempt; 0 when
  /// nothing bars sending.
  int64_t next_attempt_ms = 0;
  std::string last_error;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, link_status& x) {
  return f(caf::meta::type_name("link_status"), x.state,
           x.consecutive_failures, x.next_attempt_ms, x.last_error);
}

/// One device-facing request as the ingest endpoint hands it on: what
/// authentication and decoding need, nothing of the connection.
struct sync_envelope {
  std::string body;
  std::string content_encoding;
  std::string content_type;
  /// The Authorization header ("Bearer <device key>"); never logged.
  std::string authorization;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sync_envelope& x) {
  return f(caf::meta::type_name("sync_envelope"), x.body,
           x.content_encoding, x.content_type, x.authorization);
}

/// Who a device key proved to be.
struct device_identity {
  std::string org;
  std::string device;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, device_identity& x) {
  return f(caf::meta::type_name("device_identity"), x.org, x.device);
}

/// An operator's tenancy command from the console (fleetctl org|enroll|
/// device|quota ...): `op` names it, the fields it needs are set.
struct tenancy_command {
  /// org-create, org-list, device-add, device-list, rotate-key, revoke,
  /// enroll-create, enroll-revoke (every token of the org), quota-set,
  /// api-token-create, api-token-list, api-token-revoke.
  std::string op;
  std::string org;
  /// The device; api-token-revoke: the token's id.
  std::string device;
  /// enroll-create: how many devices the token may enroll.
  int64_t uses = 0;
  /// enroll-create, api-token-create (0: never expires): token lifetime;
  /// rotate-key: the old key's overlap.
  int64_t duration_ms = 0;
  /// quota-set: 0 = unlimited.
  int64_t points_per_second = 0;
  int64_t bytes_per_day = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tenancy_command& x) {
  return f(caf::meta::type_name("tenancy_command"), x.op, x.org, x.device,
           x.uses, x.duration_ms, x.points_per_second, x.bytes_per_day);
}

/// The answer to a tenancy command: a table (columns, rows) and, for the
/// commands that make one, the key or token, shown this once.
struct tenancy_answer {
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;
  std::string secret;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tenancy_answer& x) {
  return f(caf::meta::type_name("tenancy_answer"), x.columns, x.rows,
           x.secret);
}

/// An HTTP answer produced by an actor for the Asio thread to write.
struct http_reply {
  uint16_t status = 200;
  std::string content_type;
  std::string body;
  /// "code: message" of an error answer, sent as the X-Fleetd-Error header.
  std::string error;
  /// Seconds for a Retry-After header (0: none).
  int64_t retry_after_s = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, http_reply& x) {
  return f(caf::meta::type_name("http_reply"), x.status, x.content_type,
           x.body, x.error, x.retry_after_s);
}

/// One actor's view of itself for the console.
/// What the runtime measures of an actor without its code's help
/// (runtime/actor_counters); `measured` false when it does not.
struct actor_runtime {
  bool measured = false;
  int64_t mailbox = 0;
  int64_t handled = 0;
  /// Messages handled per second since the previous status.
  int64_t per_second = 0;
  /// Handling time: upper bound of the log2 microsecond bucket.
  int64_t p50_us = 0;
  int64_t p99_us = 0;
  /// Error answers plus abnormal exits of any incarnation.
  int64_t errors = 0;
  std::string last_error;
  int64_t restarts = 0;
  /// Since the last message ended (the inspector's own asks aside), or
  /// since the actor started when it had none; -1 when not measured.
  int64_t idle_ms = -1;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, actor_runtime& x) {
  return f(caf::meta::type_name("actor_runtime"), x.measured, x.mailbox,
           x.handled, x.per_second, x.p50_us, x.p99_us, x.errors,
           x.last_error, x.restarts, x.idle_ms);
}

struct actor_stats {
  std::string name;
  std::string state;
  std::map<std::string, int64_t> counters;
  actor_runtime runtime;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, actor_stats& x) {
  return f(caf::meta::type_name("actor_stats"), x.name, x.state, x.counters,
           x.runtime);
}

/// The node process as /proc/self shows it; -1 where unreadable.
struct process_figures {
  int64_t rss_bytes = -1;
  int64_t cpu_ms = -1;
  int64_t threads = -1;
  int64_t fds = -1;
  /// Open sockets (connections and listeners) among the descriptors.
  int64_t sockets = -1;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, process_figures& x) {
  return f(caf::meta::type_name("process_figures"), x.rss_bytes, x.cpu_ms,
           x.threads, x.fds, x.sockets);
}

/// A node's actors and identity, answered to `fleetctl status`.
struct node_status {
  std::string role;
  std::string node_id;
  std::string version;
  int64_t uptime_ms = 0;
  /// When this node process started (Unix ms): its counters count from then.
  int64_t started_ms = 0;
  std::vector<actor_stats> actors;
  process_figures process;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_status& x) {
  return f(caf::meta::type_name("node_status"), x.role, x.node_id, x.version,
           x.uptime_ms, x.started_ms, x.actors, x.process);
}

/// One device stream as the cloud knows it, answered to `fleetctl devices`.
struct device_info {
  std::string device_id;
  std::string stream;
  int64_t points_received = 0;
  int64_t batches_received = 0;
  int64_t duplicates = 0;
  int64_t last_acked_sequence = 0;
  int64_t gaps = 0;
  int64_t last_seen_ms = 0;
  /// The latest the device reported (tier 0: none yet).
  device_capability capability;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, device_info& x) {
  return f(caf::meta::type_name("device_info"), x.device_id, x.stream,
           x.points_received, x.batches_received, x.duplicates,
           x.last_acked_sequence, x.gaps, x.last_seen_ms, x.capability);
}

using device_infos = std::vector<device_info>;

/// What the device has, as the capability check read it. Bytes are bytes
/// (tiers compare them in decimal units: 1 GB = 1e9 bytes).
struct hardware {
  /// MemTotal and MemAvailable of /proc/meminfo.
  int64_t total_ram = 0;
  int64_t available_ram = 0;
  /// Size and space available to us of the filesystem holding the data dir.
  int64_t total_disk = 0;
  int64_t available_disk = 0;
  int64_t cpu_cores = 0;
  /// Why a value is lower than the host's (a cgroup limit), or which limit
  /// file was unreadable and ignored; derive() copies them into the reasons.
  std::vector<std::string> notes;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, hardware& x) {
  return f(caf::meta::type_name("hardware"), x.total_ram, x.available_ram,
           x.total_disk, x.available_disk, x.cpu_cores, x.notes);
}

/// What a tier (plus the operator's overrides) means for the other actors.
struct tier_settings {
  /// 1 full, 2 constrained, 3 minimal (docs/architecture.md section 5).
  int64_t tier = 1;
  /// False: keep readings in memory only.
  bool sqlite = true;
  /// Cap of the SQLite store; 0 without one.
  int64_t storage_bytes = 0;
  /// The memory store's bound (storage.backend=memory or tier 3): a ring of
  /// points, or on tier 3 the readings kept per series.
  int64_t memory_points = 0;
  /// 0: not time-based (tier 3 keeps the last readings only).
  int64_t retention_ms = 0;
  int64_t sync_interval_ms = 0;
  int64_t batch_size = 0;
  /// 0: send uncompressed.
  int64_t zstd_level = 0;
  /// The SQLite store appends rounds to its rounds file (storage.rounds-file).
  bool rounds_file = false;
  /// The system collector's interval; 0: its own (collector.interval).
  int64_t metric_interval_ms = 0;
  /// False: log lines are not kept (storage.store-logs, `config set`).
  bool store_logs = true;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tier_settings& x) {
  return f(caf::meta::type_name("tier_settings"), x.tier, x.sqlite,
           x.storage_bytes, x.memory_points, x.retention_ms,
           x.sync_interval_ms, x.batch_size, x.zstd_level, x.rounds_file,
           x.metric_interval_ms, x.store_logs);
}

inline bool operator==(const tier_settings& x, const tier_settings& y) {
  return x.tier == y.tier && x.sqlite == y.sqlite
         && x.storage_bytes == y.storage_bytes
         && x.memory_points == y.memory_points
         && x.retention_ms == y.retention_ms
         && x.sync_interval_ms == y.sync_interval_ms
         && x.batch_size == y.batch_size && x.zstd_level == y.zstd_level
         && x.rounds_file == y.rounds_file
         && x.metric_interval_ms == y.metric_interval_ms
         && x.store_logs == y.store_logs;
}

inline bool operator!=(const tier_settings& x, const tier_settings& y) {
  return !(x == y);
}

/// What was detected, what follows from it, and why (edge/capability).
struct capability_report {
  hardware hw;
  /// The tier the hardware alone gives, even when the config pins another.
  int64_t detected_tier = 0;
  /// What the other actors should use: the tier's defaults plus overrides.
  tier_settings settings;
  /// One line per decision, e.g. "tier 1: disk 250 GB > 1 GB and RAM ...".
  std::vector<std::string> reasons;
  /// The operator's settings from the cloud that `settings` includes.
  cloud_settings cloud;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, capability_report& x) {
  return f(caf::meta::type_name("capability_report"), x.hw, x.detected_tier,
           x.settings, x.reasons, x.cloud);
}

/// A diagnostic answer (`fleetd debug ...`, `fleetd maintenance ...`): the
/// same content for people and for machines.
struct debug_report {
  std::string text;
  std::string json;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, debug_report& x) {
  return f(caf::meta::type_name("debug_report"), x.text, x.json);
}

// --- Staged config rollout (cloud/rollout, fleetctl rollout) ---

/// One answered sync request of a known device as the cloud's ingest saw
/// it: the health figures a rollout compares.
struct sync_outcome {
  /// The store's device id (org/device).
  std::string device;
  std::string stream;
  int64_t sequence = 0;
  /// Stored (or already held); false: refused or not stored.
  bool accepted = false;
  /// Request body bytes as received.
  int64_t bytes = 0;
  /// Records the store took from it.
  int64_t records = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sync_outcome& x) {
  return f(caf::meta::type_name("sync_outcome"), x.device, x.stream,
           x.sequence, x.accepted, x.bytes, x.records);
}

/// How much worse the changed devices may be than the unchanged ones before
/// a rollout halts by itself.
struct rollout_margins {
  /// Sync success (accepted / (accepted + failed + missing)), percentage
  /// points lower.
  double sync_success_points = 5;
  /// Storage use (used share of the device's disk), percentage points higher.
  double storage_points = 10;
  /// Bytes received per record, percent more.
  double bandwidth_percent = 20;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, rollout_margins& x) {
  return f(caf::meta::type_name("rollout_margins"), x.sync_success_points,
           x.storage_points, x.bandwidth_percent);
}

/// An operator's rollout command (fleetctl rollout OP).
struct rollout_command {
  /// start, status, halt, resume or rollback.
  std::string op;
  /// The org whose devices take part (empty: devices without an org).
  std::string org;
  /// start: the settings every device gets.
  settings_change change;
  /// start: share of the devices (of each tier with by_tier) changed first.
  double canary_percent = 5;
  /// start: the shares after the canary, ascending, the last 100.
  std::vector<double> steps;
  /// start: tier by tier (tier 1 first, devices of unknown tier last).
  bool by_tier = false;
  /// start: how long each step is watched before the next.
  int64_t bake_ms = 0;
  rollout_margins margins;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, rollout_command& x) {
  return f(caf::meta::type_name("rollout_command"), x.op, x.org, x.change,
           x.canary_percent, x.steps, x.by_tier, x.bake_ms, x.margins);
}

/// One group's health over a bake window; -1 where nothing was measured.
struct rollout_health {
  int64_t devices = 0;
  /// Devices with at least one request in the window.
  int64_t reporting = 0;
  int64_t accepted = 0;
  int64_t failed = 0;
  int64_t missing = 0;
  /// Mean over the devices of accepted / (accepted + failed + missing); a
  /// silent device counts 0.
  double sync_success = -1;
  /// Mean used share of the disk (0..1) the devices last reported.
  double storage_used = -1;
  double bytes_per_record = -1;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, rollout_health& x) {
  return f(caf::meta::type_name("rollout_health"), x.devices, x.reporting,
           x.accepted, x.failed, x.missing, x.sync_success, x.storage_used,
           x.bytes_per_record);
}

/// One step of a rollout: the share of the devices (of one tier, tier > 0,
/// or of all, tier 0; -1: devices of unknown tier) changed once it is done.
struct rollout_stage {
  int64_t tier = 0;
  double percent = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, rollout_stage& x) {
  return f(caf::meta::type_name("rollout_stage"), x.tier, x.percent);
}

/// A rollout as the cloud keeps it (and fleetctl rollout status shows it).
struct rollout_status {
  std::string org;
  /// none, pushing, baking, halted, done, rolled_back.
  std::string phase = "none";
  /// Why it halted (or what the last judgement found).
  std::string reason;
  /// The start command (op "start").
  rollout_command plan;
  std::vector<rollout_stage> stages;
  /// Index of the current stage in `stages`.
  int64_t stage = 0;
  /// Devices of the org, and how many carry the new settings.
  int64_t devices = 0;
  int64_t changed = 0;
  int64_t started_ms = 0;
  /// When the current bake window opened and when it is judged.
  int64_t bake_started_ms = 0;
  int64_t bake_ends_ms = 0;
  /// The last judgement's figures.
  rollout_health changed_health;
  rollout_health unchanged_health;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, rollout_status& x) {
  return f(caf::meta::type_name("rollout_status"), x.org, x.phase, x.reason,
           x.plan, x.stages, x.stage, x.devices, x.changed, x.started_ms,
           x.bake_started_ms, x.bake_ends_ms, x.changed_health,
           x.unchanged_health);
}

/// One device stream's delivery in one hour, as the cloud counted it
/// (`fleetctl delivery`). ratio = received / (received + declared_drops +
/// missing), 1.0 when all three are 0 (delivery_ratio).
struct delivery_row {
  std::string device;
  std::string stream;
  /// Start of the hour (UTC, ms since the epoch) the counts arrived in.
  int64_t hour_ms = 0;
  /// Records stored for the first time.
  int64_t received = 0;
  /// Records of batches already held, acked again without writing.
  int64_t duplicates = 0;
  /// Batch sequences the cloud never saw (gaps it skipped over, less those
  /// that arrived later and those the device declared it dropped whole).
  int64_t missing = 0;
  /// Records the device declared it dropped (its cumulative counters'
  /// growth, assigned to the hour the report arrived).
  int64_t declared_drops = 0;
  /// Records the device declared its collectors handed to storage, and
  /// those storage accepted (growth of its counters, as declared_drops).
  int64_t collected = 0;
  int64_t stored = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, delivery_row& x) {
  return f(caf::meta::type_name("delivery_row"), x.device, x.stream,
           x.hour_ms, x.received, x.duplicates, x.missing, x.declared_drops,
           x.collected, x.stored);
}

using delivery_rows = std::vector<delivery_row>;

/// received / (received + declared_drops + missing); 1.0 when all are 0.
inline double delivery_ratio(int64_t received, int64_t declared_drops,
                             int64_t missing) {
  // In double: the counts come from devices and may be huge.
  auto all = static_cast<double>(received) + static_cast<double>(declared_drops)
             + static_cast<double>(missing);
  return all <= 0 ? 1.0 : static_cast<double>(received) / all;
}

/// a + b held at the ends of int64 (device-declared counts are hostile).
inline int64_t saturated_sum(int64_t a, int64_t b) {
  int64_t out;
  if (!__builtin_add_overflow(a, b, &out))
    return out;
  return b > 0 ? INT64_MAX : INT64_MIN;
}

/// The sum of `xs` (device and stream empty, hour_ms 0): the fleet-wide
/// delivery, e.g. for /metrics, is delivery_ratio of the total of all rows.
inline delivery_row delivery_total(const delivery_rows& xs) {
  delivery_row out;
  for (auto& x : xs) {
    out.received = saturated_sum(out.received, x.received);
    out.duplicates = saturated_sum(out.duplicates, x.duplicates);
    out.missing = saturated_sum(out.missing, x.missing);
    out.declared_drops = saturated_sum(out.declared_drops, x.declared_drops);
    out.collected = saturated_sum(out.collected, x.collected);
    out.stored = saturated_sum(out.stored, x.stored);
  }
  return out;
}

} // namespace fleetd
