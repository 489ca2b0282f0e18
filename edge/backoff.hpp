#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>

#include <caf/error.hpp>

#include "messages/interfaces.hpp"
#include "runtime/clock.hpp"
#include "runtime/jitter.hpp"

namespace fleetd {

/// How long a stream waits while the events stream catches up after the link
/// came back: short, so metrics and logs resume soon after events are done.
inline constexpr int64_t events_first_poll_ms = 50;
/// Streams asking for a permit within this long of the half-open probe's
/// grant join it: the cloud link sends them in the probe's request (it
/// waits cloud.coalesce-window for them), so a recovery is one request.
inline constexpr int64_t probe_join_ms = 100;

struct backoff_config {
  /// First ceiling of the jitter; doubles with each consecutive failure.
  std::chrono::milliseconds base{1000};
  /// Largest ceiling of the jitter.
  std::chrono::milliseconds cap{300000};
  /// Consecutive failures that open the breaker ("offline").
  int64_t breaker_threshold = 3;
  /// A probe that never reports frees the half-open slot after this long.
  std::chrono::milliseconds probe_timeout{30000};
  /// While offline: one health probe (GET /healthz, no batch) per this
  /// interval, equal jitter ([half, whole]).
  std::chrono::milliseconds probe_interval{10000};
  /// Where health probes go; none are sent when invalid (unit tests).
  cloud_link_actor link;
  /// The stream that goes first after the link comes back; empty: none does.
  std::string events_stream = "events";
  /// Other streams never wait longer than this for the events stream.
  std::chrono::milliseconds events_first_limit{10000};
  /// Jitter seed (see make_jitter_rng); 0 draws one from random_device.
  uint64_t seed = 0;
  /// All time is read here; the wall clock when unset.
  clock_ptr clock;
  /// When valid, every online<->offline transition becomes an event.
  storage_actor storage;
};

class option_set;

/// Declares sync.backoff-base, sync.backoff-cap, sync.breaker-threshold,
/// sync.probe-interval.
void declare(option_set& opts, backoff_config& x);

/// bad_config naming the option key when `x` cannot work; none otherwise.
caf::error validate(const backoff_config& x);

struct backoff_state {
  backoff_config cfg;
  jitter_rng rng;
  int64_t consecutive_failures = 0;
  /// Clock time before which nobody may send; may be set while online by a
  /// retry-after hint.
  int64_t next_attempt_ms = 0;
  std::string last_error;
  /// The stream holding the half-open probe, and since when.
  std::optional<std::string> probe_stream;
  int64_t probe_granted_ms = 0;
  /// Bumped on every counted failure; see `permit_epoch`.
  int64_t failure_epoch = 0;
  /// The failure epoch at each stream's last permit: a failure reported on a
  /// permit from an older epoch was already counted (streams failing together
  /// are one failure, not one per stream).
  std::map<std::string, int64_t> permit_epoch;
  /// Set while the breaker is open; the clock time it opened.
  std::optional<int64_t> offline_since_ms;
  /// Set after the link came back until the events stream caught up; the
  /// clock time after which other streams go anyway.
  std::optional<int64_t> events_first_until_ms;
  /// The events stream's last report said it has data waiting (or failed).
  bool events_backlog = false;
  int64_t failures_total = 0;
  int64_t probes = 0;
  int64_t went_offline = 0;
  int64_t went_online = 0;
  int64_t permits_granted = 0;
  int64_t permits_delayed = 0;
  /// Health probes: the timer's generation (bumped to cancel it), whether
  /// one is in flight, when the next goes, and the cloud's earliest time.
  int64_t probe_generation = 0;
  bool health_in_flight = false;
  int64_t next_probe_ms = 0;
  int64_t hint_until_ms = 0;
  /// Streams told to wait while not online: woken when a probe succeeds.
  std::map<std::string, caf::actor_addr> waiters;
  int64_t health_probes = 0;
  int64_t health_probes_ok = 0;
  /// retry_after hints outside [0, max(cap, 5 min)], clamped.
  int64_t hints_clamped = 0;
  static inline const char* name = "backoff";
};

/// The device's one view of the link to the cloud, shared by the sync actors.
/// A permit is answered with 0 (go) or the clock milliseconds to wait before
/// asking again; every send is followed by a report. Its one timer is the
/// health probe's while offline.
///
/// - Online: permits are 0.
/// - A report with ok=false counts one consecutive failure (unless the
///   stream's permit predates the last counted failure) and bars everyone
///   until now + max(full_jitter_delay, retry_after_ms): "retrying" below
///   `breaker_threshold` failures, "offline" (breaker open) at or above it.
///   A cloud that is busy (503/429) is reported by sync as ok=false with the
///   hint, so it backs off and counts toward the breaker.
/// - A report with ok=true and retry_after_ms > 0 bars everyone for the hint
///   but counts no failure and leaves the state "online".
/// - Once the wait is over the breaker is half-open: the first permit gets 0
///   and is the probe ("probing"; while the events stream has a backlog,
///   only it may probe for the first `events_first_limit`); the streams
///   that ask within probe_join_ms of it join it (0: one request with it),
///   the others wait min(base, time left until probe_timeout) and ask
///   again. A probe that never reports is replaced after probe_timeout.
///   Its success (or any stream's) brings the link online and wakes the
///   streams told to wait; its failure backs off longer.
/// - After the link comes back from any failing state, and only when the
///   events stream's last report said it has a backlog (or failed), streams
///   other than `events_stream` wait events_first_poll_ms at a time until
///   the events stream reports ok without backlog, at most
///   `events_first_limit`.
/// - While offline (and `link` is set) a health probe (GET /healthz) goes
///   every `probe_interval` with equal jitter, not before the cloud's last
///   retry_after hint; a 200 brings the link online as a delivered batch
///   would and wakes the streams that were told to wait, so data flows
///   within one probe interval of the cloud's return whatever the batch
///   backoff has grown to. Probes count no failure.
/// - Every retry_after hint is clamped to [0, max(cap, 5 min)] (counted).
backoff_actor::behavior_type
backoff(backoff_actor::stateful_pointer<backoff_state> self,
        backoff_config cfg);

} // namespace fleetd
