#pragma once

#include <string>

#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include "messages/atoms.hpp"
#include "messages/types.hpp"

namespace fleetd {

// Handlers marked "SELF ONLY" are an actor's own timers: they sit in the
// interface only because CAF types a self-send; other actors never send them.

/// Every actor answers the console with its own statistics.
using stats_handler = caf::replies_to<stats_atom>::with<actor_stats>;

/// The device's local store (edge/storage).
using storage_actor = caf::typed_actor<
  // One transaction, committed per storage.commit-interval; replies how many.
  caf::replies_to<store_atom, metric_samples>::with<int64_t>,
  // Commits the log lines in one transaction; replies how many.
  caf::replies_to<store_atom, log_lines>::with<int64_t>,
  // As above, with the cursors of the sources the lines were read from, in
  // the same commit (lines may be empty: a cursor moved alone).
  caf::replies_to<store_atom, log_lines, source_cursors>::with<int64_t>,
  // Every source cursor persisted, the newest of each key.
  caf::replies_to<cursor_atom>::with<source_cursors>,
  // Records the events and commits them; replies how many.
  caf::replies_to<store_atom, event_records>::with<int64_t>,
  // Up to `max` records of a stream that no batch covers yet, and no more
  // than `max_bytes` of them in memory (record_bytes; at least one), with
  // the next sequence.
  caf::replies_to<fetch_atom, std::string, int64_t, int64_t>::with<
    unbatched_points>,
  // Persists an encoded batch and advances the stream cursor atomically.
  caf::replies_to<enqueue_atom, queued_batch>::with<int64_t>,
  // Up to `max` unacked batches of a stream, lowest sequence first.
  caf::replies_to<pending_atom, std::string, int64_t>::with<queued_batches>,
  // Drops every batch of the stream up to and including the acked sequence
  // and advances the series session (see acked_batch); replies how many
  // batches it deleted (0: a duplicate ack).
  caf::replies_to<ack_atom, acked_batch>::with<int64_t>,
  // Drops a batch the cloud refused for good, counting its records as lost.
  caf::replies_to<discard_atom, std::string, int64_t>::with<int64_t>,
  // The stream's series session (series the cloud knows, in order, and
  // their histories).
  caf::replies_to<session_atom, std::string>::with<wire_session>,
  // The operator's settings last received from the cloud.
  caf::replies_to<config_atom>::with<cloud_settings>,
  // Persists new settings from the cloud.
  caf::replies_to<config_atom, cloud_settings>::with<bool>,
  // Commits what is buffered and checkpoints the WAL; replies when done.
  caf::replies_to<flush_atom>::with<bool>,
  // The actor's own timer, one commit-interval after records were held:
  // commits them even when no later store comes.
  caf::reacts_to<commit_atom>,
  // Records an event (kind, message) in the local events table.
  caf::reacts_to<event_atom, std::string, std::string>,
  // A send of a queued batch failed (stream, sequence, wall-clock ms before
  // which it is not tried again): counts the retry on the batch.
  caf::reacts_to<retry_atom, std::string, int64_t, int64_t>,
  // Records of a stream refused before storage (stream, why, how many):
  // counted as drops of kind "<stream>_refused_<why>", so they are declared.
  caf::reacts_to<refused_atom, std::string, std::string, int64_t>,
  // Diagnostics: "storage", "queue", or "clean" (maintenance, then report).
  caf::replies_to<debug_atom, std::string>::with<debug_report>,
  // New tier settings from the capability actor: caps apply at once.
  caf::reacts_to<capabilities_atom, capability_report>,
  stats_handler>;

/// What the sync actors see as "the cloud" (edge/cloud_link).
using cloud_link_actor = caf::typed_actor<
  // Sends one encoded request body; replies with the cloud's answer.
  caf::replies_to<sync_atom, std::string>::with<sync_ack>,
  // A cheap look at the cloud while offline (GET /healthz, no batch):
  // success means 200; status and retry_after_ms as the cloud answered.
  caf::replies_to<health_atom>::with<sync_ack>,
  // Its own timer: the coalesce window of the batches waiting ran out.
  caf::reacts_to<tick_atom, int64_t>,
  stats_handler>;

/// The device's view of the link to the cloud (edge/backoff), shared by the
/// sync actors: exponential backoff with full jitter, a circuit breaker with
/// half-open probes, the online/offline state, and events first after the
/// link comes back.
using backoff_actor = caf::typed_actor<
  // May this stream send now? 0: go; otherwise clock milliseconds to wait
  // before asking again.
  caf::replies_to<permit_atom, std::string>::with<int64_t>,
  // The outcome of one exchange with the cloud.
  caf::reacts_to<report_atom, link_report>,
  // The link's state for other actors.
  caf::replies_to<link_atom>::with<link_status>,
  // SELF ONLY: the health probe timer; ignored unless `generation` is still
  // the current one.
  caf::reacts_to<tick_atom, int64_t>,
  stats_handler>;

/// Hears the operator's settings that arrive from the cloud.
using settings_listener = caf::typed_actor<
  caf::reacts_to<config_atom, cloud_settings>>;

/// A collector of samples (edge/system_collector).
using collector_actor = caf::typed_actor<
  // Takes one round of readings now and hands them to storage.
  caf::reacts_to<tick_atom>,
  stats_handler>;

/// The system collector: a collector whose round interval the device's
/// settings (metric_interval, `fleetd config set`) change while it runs.
using system_collector_actor = collector_actor::extend<
  // SELF ONLY: the actor's own timer; ignored unless `generation` is current.
  caf::reacts_to<tick_atom, int64_t>,
  // New settings: a metric_interval_ms other than the current one re-arms.
  caf::reacts_to<capabilities_atom, capability_report>>;

/// `fleetd sync now` (edge/sync_now): every stream's sync round at once,
/// answered when the cloud has acked what was waiting.
using sync_now_actor = caf::typed_actor<
  // "sync now" or "sync now <timeout ms>": what went ("acked" false past
  // the timeout).
  caf::replies_to<debug_atom, std::string>::with<debug_report>,
  // SELF ONLY: look again whether request `id` is done.
  caf::reacts_to<tick_atom, int64_t>,
  stats_handler>;

/// Applications' pushes into the device's store (edge/local_ingest): its
/// HTTP listeners hand each request to a short-lived worker; the actor holds
/// the listeners and answers the console.
using local_ingest_actor = caf::typed_actor<stats_handler>;

/// Moves one stream from storage to the cloud (edge/sync).
using sync_actor = caf::typed_actor<
  // Runs one sync round now: send what is pending, cut a new batch.
  caf::reacts_to<tick_atom>,
  // SELF ONLY: the actor's own timer; ignored unless `generation` is still
  // current (another sender cannot know it, so its tick does nothing).
  caf::reacts_to<tick_atom, int64_t>,
  // New records were stored; tier 3 forwards them at once, others wait for
  // a full batch or the interval.
  caf::reacts_to<store_atom>,
  // New tier settings: interval, batch size and compression apply next round.
  caf::reacts_to<capabilities_atom, capability_report>,
  stats_handler>;

/// The cloud's store (cloud/cloud_store; the embedded SQLite store behind it).
using cloud_store_actor = caf::typed_actor<
  // Stores a batch unless its sequence is already held; atomic with the ack.
  caf::replies_to<write_atom, ingest_batch>::with<ingest_outcome>,
  // Every device stream with its counters.
  caf::replies_to<devices_atom>::with<device_infos>,
  // Every point held for a device, oldest first (for tests and tools).
  caf::replies_to<points_atom, std::string>::with<metric_samples>,
  // Every log line held for a device, oldest first.
  caf::replies_to<logs_atom, std::string>::with<log_lines>,
  // Every event held for a device, oldest first.
  caf::replies_to<events_atom, std::string>::with<event_records>,
  // Changes the operator's settings for a device; replies the whole new
  // version (ec::unknown_device for a device never seen, unless `create`).
  caf::replies_to<config_atom, std::string, settings_change>::with<cloud_settings>,
  // A device's current settings (version 0: none set).
  caf::replies_to<config_atom, std::string>::with<cloud_settings>,
  // Delivery per device, stream and hour since `since_ms` (device empty: all).
  caf::replies_to<delivery_atom, std::string, int64_t>::with<delivery_rows>,
  stats_handler>;

/// Drains the ingest journal into one sink_backend (cloud/sink_runner).
using sink_runner_actor = caf::typed_actor<
  // SELF ONLY: the next step (lease, read, write, advance, or wait).
  caf::reacts_to<tick_atom>,
  stats_handler>;

/// Drops whole days of the cloud's rows past store.retention-days
/// (cloud/retention; PostgreSQL's day partitions).
using retention_actor = caf::typed_actor<
  // A pass now; sent by its own timer only (each pass arms the next).
  caf::reacts_to<tick_atom>,
  stats_handler>;

/// Orgs, devices, keys, enrollment tokens and quotas (cloud/tenancy; the
/// embedded SQLite implementation behind it, PostgreSQL next).
using tenancy_actor = caf::typed_actor<
  // The Authorization header of a request -> who its device key proves to
  // be; ec::missing_key, unknown_key, expired_key or revoked_key.
  caf::replies_to<auth_atom, std::string>::with<device_identity>,
  // The Authorization header of a query -> the org its API token proves;
  // ec::missing_key, unknown_key, expired_key or revoked_key.
  caf::replies_to<api_auth_atom, std::string>::with<std::string>,
  // Enrollment token (Authorization header) and device id -> the device's
  // new key, shown this once; ec::bad_enroll_token, conflict.
  caf::replies_to<enroll_atom, std::string, std::string>::with<std::string>,
  // Charges an org's quota with a batch (points, body bytes): 0 within it,
  // else the milliseconds to wait.
  caf::replies_to<quota_atom, std::string, int64_t, int64_t>::with<int64_t>,
  // An operator's command from the console.
  caf::replies_to<tenancy_atom, tenancy_command>::with<tenancy_answer>,
  stats_handler>;

/// The query API behind GET /v1/query and /v1/logs: the org its caller's
/// API token proved and the request target (path and query string) -> the
/// JSON answer, or 400 naming the bad parameter.
using query_actor = caf::typed_actor<
  caf::replies_to<query_atom, std::string, std::string>::with<http_reply>,
  stats_handler>;

/// GET /healthz: "ok" when the node is healthy; an error names the actor
/// that is not.
using health_handler = caf::replies_to<health_atom>::with<std::string>;

/// Whoever answers GET /healthz (the supervisor; ingest when unsupervised).
using health_actor = caf::typed_actor<health_handler>;

/// Turns one POST /v1/sync into a stored batch and a SyncResponse (cloud/ingest).
using ingest_actor = caf::typed_actor<
  // The request (body, headers); replies with the HTTP answer.
  caf::replies_to<sync_atom, sync_envelope>::with<http_reply>,
  // POST /v1/enroll: an enrollment token (Authorization) and the device id
  // (body) -> the device's key (text/plain), or an error answer.
  caf::replies_to<enroll_atom, sync_envelope>::with<http_reply>,
  // "ok" once the store answered too; an error names the actor that did not.
  health_handler,
  stats_handler>;

/// Restarts the node's actors that die (runtime/supervisor) and tells the
/// node's health: unhealthy while an essential actor is down, restarting too
/// often or not answering.
using supervisor_actor = caf::typed_actor<
  health_handler,
  // SELF ONLY: the restart timer of child `index`; ignored unless
  // `generation` is still the child's current one.
  caf::reacts_to<restart_atom, int64_t, int64_t>,
  // Test hook (node.test-hooks): "kill NAME" kills child NAME as a fault
  // would (exit reason kill); the node registers it only when hooks are on.
  caf::replies_to<debug_atom, std::string>::with<debug_report>,
  stats_handler>;

/// The console's door into a node, published over BASP (actors/inspector).
using inspector_actor = caf::typed_actor<
  // Identity, uptime and every registered actor's statistics.
  caf::replies_to<status_atom>::with<node_status>,
  // On a cloud node every device stream; empty on a device.
  caf::replies_to<devices_atom>::with<device_infos>,
  // On a cloud node: changes a device's sync settings (SyncConfig), replies
  // the whole new version; the device gets it with its next ack.
  caf::replies_to<config_atom, std::string, settings_change>::with<cloud_settings>,
  // On a cloud node: an operator's tenancy command (orgs, devices, keys,
  // enrollment tokens, quotas).
  caf::replies_to<tenancy_atom, tenancy_command>::with<tenancy_answer>,
  // Forwards a diagnostic request to the actor that owns the subject.
  caf::replies_to<debug_atom, std::string>::with<debug_report>,
  // On a cloud node: an operator's rollout command (fleetctl rollout).
  caf::replies_to<rollout_atom, rollout_command>::with<rollout_status>,
  // On a cloud node: delivery per device, stream and hour from `since_ms`
  // (device empty: all devices; "org/": one org's); empty on a device.
  caf::replies_to<delivery_atom, std::string, int64_t>::with<delivery_rows>,
  // Adds an actor whose statistics `status` gathers from now on (the console,
  // which starts after the inspector); from this process only.
  caf::reacts_to<report_atom, std::string, caf::actor>>;

/// Hears every answered sync request of a known device (cloud/ingest).
using outcome_listener = caf::typed_actor<
  caf::reacts_to<outcome_atom, sync_outcome>>;

/// Staged rollout of device settings with auto-halt, one per org
/// (cloud/rollout).
using rollout_actor = caf::typed_actor<
  // An operator's command: start, status, halt, resume, rollback.
  caf::replies_to<rollout_atom, rollout_command>::with<rollout_status>,
  // A sync request's outcome: the health figures of one device.
  caf::reacts_to<outcome_atom, sync_outcome>,
  // Its own timer (and a test's nudge): judges bakes that are over.
  caf::reacts_to<tick_atom>,
  stats_handler>;

/// Detects the device's tier and derived settings (edge/capability).
using capability_actor = caf::typed_actor<
  // Re-checks the hardware now.
  caf::reacts_to<tick_atom>,
  // The current report: hardware, tier, settings and why.
  caf::replies_to<capabilities_atom>::with<capability_report>,
  // Diagnostics: "capabilities" gives the current report as text and JSON.
  caf::replies_to<debug_atom, std::string>::with<debug_report>,
  // The operator's settings from the cloud: persisted, applied, announced.
  caf::reacts_to<config_atom, cloud_settings>,
  // Adds a listener; it hears the current report at once, then every change.
  caf::reacts_to<capabilities_atom, caf::actor>,
  stats_handler>;

/// What an actor declares to hear about new capabilities: the capability
/// actor sends (capabilities_atom, report) whenever the tier or a setting
/// changes. Add this signature to an interface to become a listener.
using capability_listener = caf::typed_actor<
  caf::reacts_to<capabilities_atom, capability_report>>;

} // namespace fleetd
