#include "edge/backoff.hpp"

#include <algorithm>
#include <utility>

#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "runtime/config_check.hpp"
#include "runtime/logger.hpp"
#include "runtime/options.hpp"

namespace fleetd {

namespace {

constexpr const char* component = "backoff";

/// The longest retry_after honoured when backoff-cap is shorter.
constexpr int64_t hint_ceiling_ms = 300000;

using self_ptr = backoff_actor::stateful_pointer<backoff_state>;

bool online(const backoff_state& st) {
  return st.consecutive_failures == 0;
}

bool probe_active(const backoff_state& st, int64_t now) {
  return st.probe_stream
         && now < st.probe_granted_ms + st.cfg.probe_timeout.count();
}

std::string link_state(const backoff_state& st, int64_t now) {
  if (online(st))
    return "online";
  if (probe_active(st, now))
    return "probing";
  return st.consecutive_failures >= st.cfg.breaker_threshold ? "offline"
                                                             : "retrying";
}

/// "12.3 s" for the event log; whole milliseconds below a second.
std::string seconds_text(int64_t ms) {
  if (ms < 1000)
    return std::to_string(ms) + " ms";
  auto tenths = ms / 100;
  return std::to_string(tenths / 10) + "." + std::to_string(tenths % 10)
         + " s";
}

void record_event(self_ptr self, const char* kind, std::string message) {
  auto& st = self->state;
  if (!st.cfg.storage)
    return;
  // Fire and forget: the link state must not wait on the disk.
  caf::anon_send(st.cfg.storage, event_atom::value, std::string{kind},
                 std::move(message));
}

int64_t grant(backoff_state& st, const std::string& stream) {
  ++st.permits_granted;
  st.permit_epoch[stream] = st.failure_epoch;
  return 0;
}

int64_t delay(backoff_state& st, int64_t wait_ms) {
  ++st.permits_delayed;
  return std::max<int64_t>(wait_ms, 1);
}

int64_t permit(backoff_state& st, const std::string& stream) {
  auto now = st.cfg.clock->steady_ms();
  if (now < st.next_attempt_ms)
    return delay(st, st.next_attempt_ms - now);
  if (!online(st)) {
    // Half-open: one probe at a time finds out whether the link is back.
    if (probe_active(st, now) && *st.probe_stream != stream) {
      // Due with the probe: one request with it, not one a second later.
      if (now - st.probe_granted_ms <= probe_join_ms
          && !(st.events_backlog
               && *st.probe_stream == st.cfg.events_stream))
        return grant(st, stream);
      auto left = st.probe_granted_ms + st.cfg.probe_timeout.count() - now;
      return delay(st, std::min(st.cfg.base.count(), left));
    }
    // Events held back by the outage probe first, if they ask in time.
    if (!probe_active(st, now) && st.events_backlog
        && stream != st.cfg.events_stream
        && now < st.next_attempt_ms + st.cfg.events_first_limit.count())
      return delay(st, events_first_poll_ms);
    if (!probe_active(st, now)) {
      st.probe_stream = stream;
      st.probe_granted_ms = now;
      ++st.probes;
      log_debug(component, "probing the link with stream ", stream);
    }
    return grant(st, stream);
  }
  if (st.events_first_until_ms && stream != st.cfg.events_stream) {
    if (now < *st.events_first_until_ms)
      return delay(st, std::min(events_first_poll_ms,
                                *st.events_first_until_ms - now));
    log_info(component, "stream ", st.cfg.events_stream,
             " did not catch up in ", st.cfg.events_first_limit.count(),
             " ms; releasing the other streams");
    st.events_first_until_ms.reset();
  }
  return grant(st, stream);
}

// A cloud's hint within [0, max(cap, 5 min)]: a hostile one (negative,
// days) must not silence the device nor make it hammer; counted.
int64_t clamp_hint(backoff_state& st, int64_t ms) {
  auto ceiling = std::max<int64_t>(st.cfg.cap.count(), hint_ceiling_ms);
  if (ms >= 0 && ms <= ceiling)
    return ms;
  ++st.hints_clamped;
  log_warning_limited(component, "hint", "retry_after_ms ", ms,
                      " from the cloud clamped to [0, ", ceiling, "]");
  return ms < 0 ? 0 : ceiling;
}

void arm_probe(self_ptr self);

void fail(self_ptr self, link_report x) {
  auto& st = self->state;
  auto now = st.cfg.clock->steady_ms();
  x.retry_after_ms = clamp_hint(st, x.retry_after_ms);
  st.hint_until_ms = std::max(st.hint_until_ms, now + x.retry_after_ms);
  ++st.failures_total;
  if (x.stream == st.cfg.events_stream)
    st.events_backlog = true;
  auto error = x.error.empty() ? std::string{"unknown error"} : x.error;
  auto epoch = st.permit_epoch.find(x.stream);
  auto stale = epoch != st.permit_epoch.end()
               && epoch->second < st.failure_epoch;
  if (epoch != st.permit_epoch.end())
    st.permit_epoch.erase(epoch);
  if (stale) {
    // Sent before the failure that already counted: same outage, no news.
    if (!online(st))
      st.last_error = std::move(error);
    st.next_attempt_ms = std::max(st.next_attempt_ms,
                                  now + std::max<int64_t>(x.retry_after_ms, 0));
    return;
  }
  st.last_error = std::move(error);
  ++st.failure_epoch;
  auto n = ++st.consecutive_failures;
  st.probe_stream.reset();
  st.events_first_until_ms.reset();
  auto wait = full_jitter_delay(st.cfg.base, st.cfg.cap, n, st.rng).count();
  st.next_attempt_ms = now + std::max(wait, x.retry_after_ms);
  if (n == st.cfg.breaker_threshold) {
    st.offline_since_ms = now;
    ++st.went_offline;
    arm_probe(self);
    log_warning(component, "link offline after ", n,
                " consecutive failures: ", st.last_error);
    record_event(self, "link_offline",
                 "link offline after " + std::to_string(n)
                   + " consecutive failures; last error: " + st.last_error);
  } else if (n == 1) {
    log_info(component, "link failing (", x.stream, "): ", st.last_error);
  }
}

void succeed(self_ptr self, link_report x) {
  auto& st = self->state;
  auto now = st.cfg.clock->steady_ms();
  x.retry_after_ms = clamp_hint(st, x.retry_after_ms);
  st.permit_epoch.erase(x.stream);
  auto hinted_ms = x.retry_after_ms > 0 ? now + x.retry_after_ms : 0;
  auto is_events = x.stream == st.cfg.events_stream;
  if (is_events)
    st.events_backlog = x.backlog;
  if (online(st)) {
    st.next_attempt_ms = std::max(st.next_attempt_ms, hinted_ms);
    if (is_events && !x.backlog)
      st.events_first_until_ms.reset();
    return;
  }
  auto failures = st.consecutive_failures;
  st.consecutive_failures = 0;
  st.probe_stream.reset();
  // Online: the health probes stop (their timer is now stale).
  ++st.probe_generation;
  st.hint_until_ms = 0;
  // The cloud answered: the failures' window is void, only its hint counts.
  st.next_attempt_ms = hinted_ms;
  // Only events held back by the outage go first; an idle events stream
  // (last report without backlog) holds nobody up.
  if (!st.cfg.events_stream.empty() && st.events_backlog)
    st.events_first_until_ms = now + st.cfg.events_first_limit.count();
  if (st.offline_since_ms) {
    auto offline_ms = now - *st.offline_since_ms;
    st.offline_since_ms.reset();
    ++st.went_online;
    log_info(component, "link online again after ", seconds_text(offline_ms),
             " offline");
    record_event(self, "link_online",
                 "link online again after " + seconds_text(offline_ms)
                   + " offline (" + std::to_string(failures)
                   + " consecutive failures; last error: " + st.last_error
                   + ")");
  } else {
    log_info(component, "link working again after ", failures,
             failures == 1 ? " failure" : " failures");
  }
  st.last_error.clear();
}

// The next health probe, after equal jitter on probe_interval and not
// before the cloud's hint; only while offline and with a link to probe.
void arm_probe(self_ptr self) {
  auto& st = self->state;
  if (!st.cfg.link || online(st))
    return;
  auto now = st.cfg.clock->steady_ms();
  auto wait = equal_jitter_delay(st.cfg.probe_interval, st.rng).count();
  st.next_probe_ms = std::max(now + wait, st.hint_until_ms);
  self->delayed_send(self,
                     st.cfg.clock->real(
                       std::chrono::milliseconds(st.next_probe_ms - now)),
                     tick_atom::value, st.probe_generation);
}

// Wakes the streams told to wait: the link is back, they go now.
void wake_waiters(backoff_state& st) {
  for (auto& w : st.waiters)
    if (auto ptr = caf::actor_cast<caf::strong_actor_ptr>(w.second))
      caf::anon_send(caf::actor_cast<sync_actor>(ptr), tick_atom::value);
  st.waiters.clear();
}

void probe_answered(self_ptr self, int64_t generation, const sync_ack& a) {
  auto& st = self->state;
  st.health_in_flight = false;
  // A batch got through meanwhile: it already brought the link back.
  if (generation != st.probe_generation || online(st))
    return;
  if (!a.success) {
    auto hint = clamp_hint(st, a.retry_after_ms);
    st.hint_until_ms = std::max(st.hint_until_ms,
                                st.cfg.clock->steady_ms() + hint);
    log_debug(component, "health probe failed: ",
              a.error_message.empty() ? a.error_code : a.error_message);
    arm_probe(self);
    return;
  }
  ++st.health_probes_ok;
  link_report r;
  r.stream = "(health probe)";
  r.ok = true;
  r.retry_after_ms = a.retry_after_ms;
  succeed(self, std::move(r));
  wake_waiters(st);
}

// The probe timer: GET /healthz through the link, unless stale.
void probe(self_ptr self, int64_t generation) {
  auto& st = self->state;
  if (generation != st.probe_generation || online(st) || st.health_in_flight)
    return;
  st.health_in_flight = true;
  ++st.health_probes;
  self->request(st.cfg.link, st.cfg.probe_timeout, health_atom::value)
    .then([self, generation](
            sync_ack& a) { probe_answered(self, generation, a); },
          [self, generation](caf::error& err) {
            sync_ack a;
            a.error_message = render(err);
            probe_answered(self, generation, a);
          });
}

} // namespace

namespace {

// The option keys, named once for declare() and validate()'s messages.
constexpr const char* key_base = "sync.backoff-base";
constexpr const char* key_cap = "sync.backoff-cap";
constexpr const char* key_threshold = "sync.breaker-threshold";
constexpr const char* key_probe = "sync.probe-interval";

} // namespace

void declare(option_set& opts, backoff_config& x) {
  using namespace std::chrono_literals;
  opts.add(key_base, x.base, 1s,
           "First retry delay after a failed sync (full jitter)", 1ms);
  opts.add(key_cap, x.cap, 5min,
           "Longest retry delay after repeated failures", 1ms);
  opts.add(key_threshold, x.breaker_threshold, 3, "failures",
           "Consecutive failed exchanges that take the link offline (circuit "
           "breaker open; then one probe at a time)",
           1, 1000);
  opts.add(key_probe, x.probe_interval, 10s,
           "While offline, one health probe (GET /healthz, no batch) per "
           "this interval, equal jitter (half to whole): data flows within "
           "it of the cloud's return; a success resets the backoff",
           1ms);
}

caf::error validate(const backoff_config& x) {
  auto ms = [](std::chrono::milliseconds d) {
    return std::to_string(d.count()) + " ms";
  };
  if (x.base.count() <= 0)
    return bad_config(std::string{key_base} + ": must be positive, got "
                      + ms(x.base));
  if (x.cap < x.base)
    return bad_config(std::string{key_cap} + ": must be at least " + key_base
                      + " (" + ms(x.base) + "), got " + ms(x.cap));
  if (x.probe_interval.count() <= 0)
    return bad_config(std::string{key_probe} + ": must be positive, got "
                      + ms(x.probe_interval));
  if (x.breaker_threshold < 1)
    return bad_config(std::string{key_threshold} + ": must be at least 1, got "
                      + std::to_string(x.breaker_threshold));
  // The two below are not options: only code (tests) sets them.
  if (x.probe_timeout.count() <= 0)
    return bad_config("backoff_config.probe_timeout: must be positive, got "
                      + ms(x.probe_timeout));
  if (x.events_first_limit.count() < 0)
    return bad_config("backoff_config.events_first_limit: must not be "
                      "negative, got "
                      + ms(x.events_first_limit));
  return caf::none;
}

backoff_actor::behavior_type
backoff(backoff_actor::stateful_pointer<backoff_state> self,
        backoff_config cfg) {
  if (stop_on_bad_config(self, component, validate(cfg)))
    return backoff_actor::behavior_type::make_empty_behavior();
  if (!cfg.clock)
    cfg.clock = make_system_clock();
  auto& st = self->state;
  st.cfg = std::move(cfg);
  st.rng = make_jitter_rng(st.cfg.seed);
  return {
    [self](permit_atom, const std::string& stream) {
      auto wait = permit(self->state, stream);
      // Told to wait while failing: a successful health probe wakes it.
      if (wait > 0 && !online(self->state))
        self->state.waiters[stream] = caf::actor_cast<caf::actor_addr>(
          self->current_sender());
      return wait;
    },
    [self](tick_atom, int64_t generation) { probe(self, generation); },
    [self](report_atom, const link_report& x) {
      if (!x.ok) {
        fail(self, x);
        return;
      }
      auto was_online = online(self->state);
      succeed(self, x);
      // A batch brought the link back: the streams told to wait go now.
      if (!was_online)
        wake_waiters(self->state);
    },
    [self](link_atom) {
      auto& st = self->state;
      link_status out;
      out.state = link_state(st, st.cfg.clock->steady_ms());
      out.consecutive_failures = st.consecutive_failures;
      out.next_attempt_ms = st.next_attempt_ms;
      out.last_error = st.last_error;
      return out;
    },
    [self](stats_atom) {
      auto& st = self->state;
      auto now = st.cfg.clock->steady_ms();
      actor_stats out;
      out.name = backoff_state::name;
      out.state = link_state(st, now);
      if (!online(st))
        out.state += ": " + st.last_error;
      out.counters = {
        {"consecutive_failures", st.consecutive_failures},
        {"failures_total", st.failures_total},
        {"probes", st.probes},
        {"went_offline", st.went_offline},
        {"went_online", st.went_online},
        {"permits_granted", st.permits_granted},
        {"permits_delayed", st.permits_delayed},
        {"next_attempt_in_ms", std::max<int64_t>(st.next_attempt_ms - now, 0)},
        {"health_probes", st.health_probes},
        {"health_probes_ok", st.health_probes_ok},
        {"next_probe_in_ms",
         online(st) ? 0 : std::max<int64_t>(st.next_probe_ms - now, 0)},
        {"hints_clamped", st.hints_clamped},
      };
      return out;
    },
  };
}

} // namespace fleetd
