#include "cloud/sink_runner.hpp"

#include <algorithm>

#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "runtime/config_check.hpp"
#include "runtime/logger.hpp"
#include "runtime/options.hpp"

namespace fleetd {

void declare(option_set& opts, sink_runner_config& x) {
  opts.add("sinks.batch-entries", x.chunk.entries, 500, "entries",
           "Journal entries (accepted batches) a sink writes at once", 1,
           100000);
  opts.add("sinks.batch-points", x.chunk.points, 20000, "points",
           "Samples, log lines and events a sink decodes and writes at once "
           "(an entry larger than this goes alone): bounds a sink's memory "
           "whatever size of batch devices send", 1, 10000000);
  opts.add("sinks.poll-interval", x.poll, std::chrono::milliseconds(500),
           "Wait before a sink looks again at an empty journal",
           std::chrono::milliseconds(1));
  opts.add("sinks.backoff-base", x.backoff_base,
           std::chrono::milliseconds(500),
           "First ceiling of a sink's full-jitter retry delay; doubles per "
           "consecutive failure", std::chrono::milliseconds(1));
  opts.add("sinks.backoff-cap", x.backoff_cap, std::chrono::seconds(60),
           "Largest ceiling of a sink's retry delay",
           std::chrono::milliseconds(1));
  opts.add("sinks.breaker-threshold", x.breaker_threshold, 5, "failures",
           "Consecutive failed writes that open a sink's circuit breaker", 1,
           1000);
  opts.add("sinks.breaker-open", x.breaker_open, std::chrono::seconds(30),
           "How long an open breaker waits before one probe write",
           std::chrono::milliseconds(1));
  opts.add("sinks.lease-ttl", x.lease_ttl, std::chrono::seconds(30),
           "A sink's lease on the journal lapses this long after its node "
           "last renewed it; another node then takes the sink over",
           std::chrono::milliseconds(100));
}

caf::error validate(const sink_runner_config& x) {
  if (x.backoff_cap < x.backoff_base)
    return make_error(ec::bad_config,
                      "sinks.backoff-cap: must be at least sinks.backoff-base");
  if (!x.backend || !x.open_reader || !x.clock)
    return make_error(ec::bad_config, "sink_runner: no backend, journal or "
                                      "clock");
  return caf::none;
}

namespace {

using self_ptr = sink_runner_actor::stateful_pointer<sink_runner_state>;

void again(self_ptr self, std::chrono::milliseconds after) {
  if (after.count() <= 0)
    self->send(self, tick_atom::value);
  else
    self->delayed_send(self, after, tick_atom::value);
}

// Takes or renews the lease when half of it has passed; false: standby.
bool hold_lease(self_ptr self, int64_t now) {
  auto& st = self->state;
  auto ttl = st.cfg.lease_ttl;
  if (st.leased && now - st.lease_renewed_ms < ttl.count() / 2)
    return true;
  auto got = st.reader->lease(st.sink, st.cfg.holder, ttl);
  if (!got) {
    st.last_error = render(got.error());
    return false;
  }
  if (*got != st.leased)
    log_info("sink_runner", st.sink, *got ? ": lease taken by "
                                          : ": lease held elsewhere, not ",
             st.cfg.holder);
  if (*got && !st.leased) {
    // Another holder may have moved the cursor while this one waited.
    auto c = st.reader->cursor(st.sink);
    if (!c)
      return false;
    st.cursor = st.saved = *c;
    st.unsettled.clear();
    st.pending = journal_chunk{};
  }
  st.leased = *got;
  st.lease_renewed_ms = now;
  return *got;
}

// A backend that may have lost what it accepted but had not made durable
// (VictoriaMetrics killed or restarted): read again from the persisted cursor.
void rewind(self_ptr self, const char* why) {
  auto& st = self->state;
  if (st.unsettled.empty())
    return;
  ++st.rewinds;
  log_info("sink_runner", st.sink, ": rewriting ", st.unsettled.size(),
           " write(s) not yet durable after ", why);
  st.cursor = st.saved;
  st.unsettled.clear();
  st.pending = journal_chunk{};
}

// Persists the newest position accepted at least the backend's
// durable_after ago, once the backend confirms no restart lost it (checked
// at most every quarter window), and deletes what every enabled sink passed.
caf::error settle(self_ptr self, int64_t now) {
  auto& st = self->state;
  auto window = st.cfg.backend->durable_after().count();
  auto n_due = std::find_if(st.unsettled.begin(), st.unsettled.end(),
                            [&](auto& u) { return u.first > now - window; })
               - st.unsettled.begin();
  if (n_due == 0 || now - st.checked_ms < window / 4)
    return caf::none;
  st.checked_ms = now;
  if (!st.cfg.backend->unchanged()) {
    ++st.restarts;
    rewind(self, "a server restart (or one it cannot rule out)");
    return caf::none;
  }
  auto to = st.unsettled[n_due - 1].second;
  if (auto err = st.reader->advance(st.sink, to))
    return err;
  st.saved = to;
  st.unsettled.erase(st.unsettled.begin(), st.unsettled.begin() + n_due);
  auto n = st.reader->prune(st.cfg.enabled);
  if (!n)
    return n.error();
  st.pruned += *n;
  return caf::none;
}

// The backend accepted everything up to `to` at `now`.
caf::error passed(self_ptr self, journal_cursor to, int64_t now) {
  auto& st = self->state;
  st.cursor = to;
  st.unsettled.emplace_back(now, to);
  return settle(self, now);
}

// A write failed in a way a retry may fix: back off, maybe open the breaker.
std::chrono::milliseconds failed(self_ptr self, const caf::error& err,
                                 int64_t now) {
  auto& st = self->state;
  ++st.errors;
  ++st.retries;
  st.last_error = render(err);
  ++st.failures;
  rewind(self, "a failure");
  if (st.failures >= st.cfg.breaker_threshold) {
    if (st.open_until_ms == 0) {
      ++st.breaker_opened;
      log_warning("sink_runner", st.sink, ": breaker open after ",
                  st.failures, " failed writes: ", st.last_error);
    }
    st.open_until_ms = now + st.cfg.breaker_open.count();
    return st.cfg.breaker_open;
  }
  return full_jitter_delay(st.cfg.backoff_base, st.cfg.backoff_cap,
                           st.failures, st.rng);
}

// Loads the next chunk; false when the journal holds nothing new.
caf::expected<bool> load(self_ptr self) {
  auto& st = self->state;
  auto chunk = st.reader->read(st.cursor, st.cfg.chunk);
  if (!chunk)
    return chunk.error();
  if (chunk->undecodable > 0) {
    st.undecodable += chunk->undecodable;
    log_warning("sink_runner", st.sink, ": skipped ", chunk->undecodable,
                " journal row(s) that do not decode");
  }
  if (chunk->rows == 0)
    return false;
  st.pending = std::move(*chunk);
  st.one_by_one = false;
  st.next = 0;
  return true;
}

// Writes the pending chunk (or its next entry); the time until the next step.
std::chrono::milliseconds write_pending(self_ptr self, int64_t now) {
  auto& st = self->state;
  auto& xs = st.pending.entries;
  journal_entries one;
  if (st.one_by_one)
    one.push_back(xs[st.next]);
  auto& batch = st.one_by_one ? one : xs;
  // The first write of a window: the server process it goes to is noted.
  if (st.unsettled.empty() && st.cfg.backend->durable_after().count() > 0)
    st.cfg.backend->watch();
  auto err = batch.empty() ? caf::error{} : st.cfg.backend->write(batch);
  ++st.writes;
  if (err && !is_error(err, ec::invalid_record))
    return failed(self, err, now);
  st.failures = 0;
  st.open_until_ms = 0;
  if (err && !st.one_by_one && xs.size() > 1) {
    // Find the refused entries: the rest of the chunk still goes.
    st.one_by_one = true;
    return std::chrono::milliseconds{0};
  }
  auto n = static_cast<int64_t>(batch.size());
  if (err) {
    st.invalid += n;
    log_warning("sink_runner", st.sink, ": skipped ", n,
                " entry(ies) the backend refused: ", render(err));
  } else {
    st.written += n;
  }
  auto to = st.pending.end;
  if (st.one_by_one && ++st.next < xs.size())
    to = st.pending.positions[st.next - 1];
  else
    st.pending = journal_chunk{};
  if (auto e = passed(self, to, st.cfg.clock->steady_ms())) {
    st.last_error = render(e);
    ++st.errors;
    return st.cfg.poll;
  }
  return std::chrono::milliseconds{0};
}

// One step: lease, then the breaker, then a chunk read or written.
std::chrono::milliseconds step(self_ptr self) {
  auto& st = self->state;
  auto now = st.cfg.clock->steady_ms();
  if (!hold_lease(self, st.cfg.clock->now_ms())) {
    ++st.lease_refused;
    return st.cfg.poll;
  }
  if (auto err = settle(self, now)) {
    ++st.errors;
    st.last_error = render(err);
  }
  if (st.open_until_ms > now)
    return std::chrono::milliseconds{st.open_until_ms - now};
  if (st.pending.rows == 0) {
    auto got = load(self);
    if (!got) {
      ++st.errors;
      st.last_error = render(got.error());
      return st.cfg.poll;
    }
    if (!*got)
      return st.cfg.poll;
  }
  return write_pending(self, now);
}

actor_stats stats_of(sink_runner_state& st) {
  actor_stats out;
  out.name = "sink_" + st.sink;
  auto breaker = st.open_until_ms > 0 ? "open" : "closed";
  out.state = std::string(st.leased ? "draining" : "standby") + ", breaker "
              + breaker
              + (st.last_error.empty() ? "" : ", last error: " + st.last_error);
  auto lag = st.reader->lag(st.cursor);
  if (lag) {
    out.counters["lag_entries"] = lag->entries;
    out.counters["lag_age_ms"] = lag->entries > 0
                                   ? st.cfg.clock->now_ms() - lag->oldest_ms
                                   : 0;
  }
  auto& c = out.counters;
  c["written"] = st.written;
  c["writes"] = st.writes;
  c["errors"] = st.errors;
  c["retries"] = st.retries;
  c["invalid"] = st.invalid;
  c["undecodable"] = st.undecodable;
  c["pruned"] = st.pruned;
  c["breaker_open"] = st.open_until_ms > 0 ? 1 : 0;
  c["breaker_opened"] = st.breaker_opened;
  c["lease_refused"] = st.lease_refused;
  c["cursor"] = st.cursor.id;
  c["saved_cursor"] = st.saved.id;
  c["rewinds"] = st.rewinds;
  c["restarts"] = st.restarts;
  return out;
}

} // namespace

sink_runner_actor::behavior_type
sink_runner(self_ptr self, sink_runner_config cfg) {
  if (stop_on_bad_config(self, "sink_runner", validate(cfg)))
    return sink_runner_actor::behavior_type::make_empty_behavior();
  auto& st = self->state;
  auto reader = cfg.open_reader();
  if (!reader) {
    log_error("sink_runner", cfg.backend->name(), ": cannot open journal: ",
              render(reader.error()));
    self->quit(reader.error());
    return sink_runner_actor::behavior_type::make_empty_behavior();
  }
  st.sink = cfg.backend->name();
  st.reader = std::move(*reader);
  st.rng = make_jitter_rng(cfg.seed);
  st.cfg = std::move(cfg);
  self->send(self, tick_atom::value);
  return {
    [self](tick_atom) { again(self, step(self)); },
    [self](stats_atom) { return stats_of(self->state); },
  };
}

} // namespace fleetd
