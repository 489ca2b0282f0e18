#include "edge/sync.hpp"

#include <algorithm>

#include <unistd.h>

#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "messages/wire.hpp"
#include "runtime/config_check.hpp"
#include "runtime/logger.hpp"
#include "runtime/options.hpp"
#include "runtime/random.hpp"
#include "runtime/text.hpp"

namespace fleetd {

namespace {

using self_ptr = sync_actor::stateful_pointer<sync_state>;

constexpr auto storage_timeout = std::chrono::seconds(30);
constexpr auto backoff_timeout = std::chrono::seconds(10);

bool is_metrics(const sync_state& st) {
  return st.cfg.stream == metrics_stream;
}

// A round, as the functions below run it (defined in this order; the
// helpers they share come last):
//   round         loads the metrics series session once, then
//   round_loaded  sends the oldest queued batch if there is one, else
//   cut           fetches unbatched records; a full batch (or the interval)
//                 is encoded and queued in storage before any send;
//   send_when_permitted  asks the backoff actor, waits or
//   send          posts the batch through the cloud link; the answer goes to
//   acked         storage drops the batch and advances the session; drain on,
//   refused       a 4xx: re-encode once (409 session: self-contained; 409
//                 sequence conflict: under a new epoch), retry, or discard
//                 what the cloud proves malformed, or
//   fail_link     a network failure or 5xx: backoff report, next round later.
// One batch per stream is in flight; finish_round arms the only timer.
// `after_ack`: the last exchange of this stream just succeeded.
void round(self_ptr self, bool after_ack = false);
void round_loaded(self_ptr self, bool after_ack);
void cut(self_ptr self, bool after_ack);
void send_when_permitted(self_ptr self, queued_batch b);
void send(self_ptr self, queued_batch batch);
void acked(self_ptr self, const queued_batch& b, const sync_ack& ack);
void refused(self_ptr self, const queued_batch& b, const sync_ack& ack);
bool reencode(self_ptr self, const queued_batch& b);
void fail_link(self_ptr self, int64_t sequence, const std::string& text,
               int64_t retry_after_ms);
void fail_local(self_ptr self, const caf::error& err);
void finish_round(self_ptr self, std::chrono::milliseconds delay);
void report(self_ptr self, bool ok, int64_t retry_after_ms, bool backlog,
            std::string error = {});
void note_retry(self_ptr self, int64_t sequence, int64_t delay_ms);
void note_error(self_ptr self, const std::string& text);
// What the steps compute (no messages): encodings and the session after an ack.
std::string encode(sync_state& st, const unbatched_points& up,
                   const encode_settings& es);
std::string encode_metrics(sync_state& st, const metric_samples& xs,
                           codec_context& session, const encode_settings& es);
encode_settings settings_for(const sync_state& st, int64_t sequence,
                             std::string epoch, int64_t now_ms);
bool permanent(const sync_ack& ack);
bool encoded_against(const sync_state& st, uint64_t b, codec_context& ctx);
metric_samples series_from(const codec_delta& next);
caf::expected<metric_samples> defined_series(sync_state& st,
                                             const std::string& body,
                                             int64_t& base, codec_delta& next);

void round(self_ptr self, bool after_ack) {
  auto& st = self->state;
  st.busy = true;
  if (!is_metrics(st) || st.session_loaded) {
    round_loaded(self, after_ack);
    return;
  }
  self->request(st.cfg.storage, storage_timeout, session_atom::value,
                st.cfg.stream)
    .then(
      [self, after_ack](wire_session& ws) {
        auto& st = self->state;
        st.session.clear();
        for (auto& x : ws.series)
          st.session.add(series_key{std::move(x.name), std::move(x.labels)});
        if (auto err = st.session.load_history(ws.history)) {
          // The next batch starts a new session (base 0) instead.
          log_warning("sync", st.cfg.stream, ": ", render(err),
                      "; starting a new series session");
          ++st.session_resets;
          st.session.clear();
        }
        st.session_loaded = true;
        round_loaded(self, after_ack);
      },
      [self](caf::error& err) { fail_local(self, err); });
}

void round_loaded(self_ptr self, bool after_ack) {
  auto& st = self->state;
  self->request(st.cfg.storage, storage_timeout, pending_atom::value,
                st.cfg.stream, int64_t{1})
    .then(
      [self, after_ack](queued_batches& xs) {
        if (xs.empty())
          cut(self, after_ack);
        else
          send_when_permitted(self, std::move(xs.front()));
      },
      [self](caf::error& err) { fail_local(self, err); });
}

void cut(self_ptr self, bool after_ack) {
  auto& st = self->state;
  self->request(st.cfg.storage, storage_timeout, fetch_atom::value,
                st.cfg.stream, st.cfg.batch_size, st.cfg.batch_bytes)
    .then(
      [self, after_ack](unbatched_points& up) {
        auto& st = self->state;
        // Steady time: setting the date back must not hold batches back.
        auto now = st.cfg.clock->steady_ms();
        auto since_cut = std::chrono::milliseconds(now - st.last_cut_ms);
        bool full = static_cast<int64_t>(up.size()) >= st.cfg.batch_size
                    || up.full || st.last_cut_ms == 0;
        if (up.size() == 0 || (!full && !st.force_cut
                               && since_cut < st.cfg.interval)) {
          // Tells the backoff actor this stream sends nothing more now
          // (events first): what waits for the interval is not a backlog.
          if (after_ack)
            report(self, true, 0, false);
          // Batches are cut by size, or by interval for what trickles in.
          finish_round(self, up.size() == 0 ? st.cfg.interval
                                            : st.cfg.interval - since_cut);
          return;
        }
        // A forced round ends with the cut that takes the rest.
        if (!full)
          st.force_cut = false;
        st.last_cut_ms = now;
        auto es = settings_for(st, up.next_sequence,
                               st.epoch_override.empty() ? up.epoch
                                                         : st.epoch_override,
                               st.cfg.clock->now_ms());
        queued_batch b;
        b.stream = st.cfg.stream;
        b.sequence = up.next_sequence;
        b.last_id = up.last_id;
        b.points = static_cast<int64_t>(up.size());
        b.created_ms = es.now_ms;
        b.declared = std::move(up.declared);
        b.body = encode(st, up, es);
        // Persist before the first send, so a retry resends the same bytes.
        self->request(st.cfg.storage, storage_timeout, enqueue_atom::value, b)
          .then(
            [self, b](int64_t) mutable {
              send_when_permitted(self, std::move(b));
            },
            [self](caf::error& err) { fail_local(self, err); });
      },
      [self](caf::error& err) { fail_local(self, err); });
}

std::string encode(sync_state& st, const unbatched_points& up,
                   const encode_settings& es) {
  if (!up.logs.empty())
    return encode_logs_request(es, up.logs);
  if (!up.events.empty())
    return encode_events_request(es, up.events);
  return encode_metrics(st, up.samples, st.session, es);
}

// Metrics as a columnar batch against `session`, read back before it is
// persisted: a batch the cloud could not decode exactly would be refused
// for good and its points lost, so such a batch goes as protobuf columns
// (format 1), which need no session. What the batch adds to the session is
// kept for its ack (st.last_cut).
std::string encode_metrics(sync_state& st, const metric_samples& xs,
                           codec_context& session,
                           const encode_settings& es) {
  auto columnar = encode_columnar(xs, session);
  auto base = static_cast<int64_t>(session.series.size());
  st.last_cut.reset();
  auto after = decode_delta(columnar, session, &xs);
  if (!after) {
    log_error("sync", st.cfg.stream, ": columnar batch does not read back (",
              render(after.error()), "); sending it as protobuf columns");
    ++st.encode_fallbacks;
    return encode_metrics_request(es, xs);
  }
  auto body = encode_columnar_request(es, columnar);
  st.last_cut = sync_state::cut_batch{body, base, std::move(*after)};
  return body;
}

// Request settings of a batch of this stream.
encode_settings settings_for(const sync_state& st, int64_t sequence,
                             std::string epoch, int64_t now_ms) {
  encode_settings es;
  es.device_id = st.cfg.device_id;
  es.sequence = sequence;
  es.epoch = std::move(epoch);
  es.now_ms = now_ms;
  es.zstd_level = st.cfg.zstd_level;
  es.config_version = st.cfg.config_version;
  return es;
}

// Sends `b` when the backoff actor allows; otherwise waits as it says.
void send_when_permitted(self_ptr self, queued_batch b) {
  auto& st = self->state;
  self->request(st.cfg.backoff, backoff_timeout, permit_atom::value,
                st.cfg.stream)
    .then(
      [self, b](int64_t wait_ms) mutable {
        auto& st = self->state;
        if (st.failed_sequence == b.sequence) {
          note_retry(self, b.sequence, std::max<int64_t>(0, wait_ms));
          st.failed_sequence = 0;
        }
        if (wait_ms > 0) {
          finish_round(self, std::chrono::milliseconds(wait_ms));
          return;
        }
        send(self, std::move(b));
      },
      [self](caf::error& err) { fail_local(self, err); });
}

void send(self_ptr self, queued_batch batch) {
  auto& st = self->state;
  ++st.batches_sent;
  auto b = std::make_shared<queued_batch>(std::move(batch));
  // Outside the checksummed batch: the queued bytes stay as they were cut.
  auto with_cap = st.capability_due && st.capability.tier > 0;
  auto with_drops = (!b->declared.records.empty() || b->declared.collected > 0)
                    && !(b->declared == st.declared_acked);
  auto body = with_send_fields(b->body, b->retry_count,
                               with_cap ? &st.capability : nullptr,
                               with_drops ? &b->declared : nullptr);
  st.bytes_sent += static_cast<int64_t>(body.size());
  self->request(st.cfg.link, st.cfg.request_timeout, sync_atom::value,
                std::move(body))
    .then(
      [self, b, with_cap, with_drops](sync_ack& ack) {
        // The cloud stored the batch, and the capability with it.
        if (with_cap && ack.success)
          self->state.capability_due = false;
        if (with_drops && ack.success)
          self->state.declared_acked = b->declared;
        if (ack.success && ack.last_sequence_ack >= b->sequence) {
          acked(self, *b, ack);
          return;
        }
        if (permanent(ack)) {
          refused(self, *b, ack);
          return;
        }
        fail_link(self, b->sequence,
                  ack.success
                    ? "cloud acked " + std::to_string(ack.last_sequence_ack)
                        + " for batch " + std::to_string(b->sequence)
                    : "cloud answered " + std::to_string(ack.status) + " "
                        + ack.error_code + ": " + ack.error_message,
                  ack.retry_after_ms);
      },
      [self, b](caf::error& err) {
        fail_link(self, b->sequence, render(err), 0);
      });
}

bool permanent(const sync_ack& ack) {
  return ack.status == 400 || ack.status == 409 || ack.status == 413
         || ack.status == 415 || ack.status == 422;
}

void acked(self_ptr self, const queued_batch& b, const sync_ack& ack) {
  auto& st = self->state;
  int64_t base = 0;
  metric_samples defs;
  auto next = std::make_shared<codec_delta>();
  if (is_metrics(st) && st.last_cut && st.last_cut->body == b.body) {
    base = st.last_cut->base;
    *next = std::move(st.last_cut->after);
    defs = series_from(*next);
  } else if (is_metrics(st)) {
    auto d = defined_series(st, b.body, base, *next);
    if (!d) {
      // Our own queued bytes do not decode: start a new session with the
      // next batch rather than refer to series the cloud may lack.
      log_warning("sync", st.cfg.stream, ": ", render(d.error()),
                  "; starting a new series session");
      ++st.session_resets;
      *next = codec_delta{};
      next->reset = true;
      base = 0;
    } else {
      defs = std::move(*d);
    }
  }
  st.last_cut.reset();
  auto seq = b.sequence;
  auto points = b.points;
  auto history = is_metrics(st) ? codec_context::save_history(next->state)
                                 : std::string{};
  acked_batch acked{st.cfg.stream, ack.last_sequence_ack, base,
                    std::move(defs), std::move(history)};
  self->request(st.cfg.storage, storage_timeout, ack_atom::value,
                std::move(acked))
    .then(
      [self, seq, points, next, ack](int64_t deleted) {
        auto& st = self->state;
        if (deleted == 0)
          ++st.duplicates_acked;
        // The store extends its series table only when it deleted the
        // batch; otherwise read back what it holds.
        if (is_metrics(st) && deleted > 0) {
          // A session reloaded since the cut is the store's: read it again.
          if (auto err = apply_delta(st.session, std::move(*next)))
            st.session_loaded = false;
        } else if (is_metrics(st)) {
          st.session_loaded = false;
        }
        st.batches_acked += deleted;
        // A duplicate ack (batch already gone) delivered nothing new.
        if (deleted > 0)
          st.records_synced += points;
        st.last_acked_sequence = ack.last_sequence_ack;
        st.head_rejections = 0;
        if (!st.last_error.empty())
          log_info("sync", st.cfg.stream, ": delivering again at batch ",
                   seq);
        st.last_error.clear();
        if (ack.config.version > st.cfg.config_version && st.cfg.settings)
          self->send(st.cfg.settings, config_atom::value, ack.config);
        report(self, true, ack.retry_after_ms, true);
        // Drain: go straight on with the next batch.
        st.busy = false;
        round(self, true);
      },
      [self](caf::error& err) {
        // The ack may have committed after all: reload the series table.
        self->state.session_loaded = false;
        fail_local(self, err);
      });
}

// Into `ctx`, the session a queued batch of base `b` was encoded against:
// batches are cut against the whole session or none of it (base 0).
bool encoded_against(const sync_state& st, uint64_t b, codec_context& ctx) {
  if (b != 0 && b != st.session.series.size())
    return false;
  if (b == 0)
    ctx.clear();
  else
    ctx = st.session;
  return true;
}

// The series a batch defined, as the store's series table takes them.
metric_samples series_from(const codec_delta& next) {
  metric_samples defs;
  defs.reserve(next.added.size());
  for (auto& key : next.added) {
    metric_sample d;
    d.name = key.first;
    d.labels = key.second;
    defs.push_back(std::move(d));
  }
  return defs;
}

// The series the batch in `body` defines, given the session it was encoded
// against; `next` becomes what it changes in the session.
caf::expected<metric_samples> defined_series(sync_state& st,
                                             const std::string& body,
                                             int64_t& base, codec_delta& next) {
  auto columnar = request_columnar(body);
  if (!columnar)
    return columnar.error();
  if (columnar->empty()) { // protobuf columns leave the session as it was
    base = static_cast<int64_t>(st.session.series.size());
    next = codec_delta{};
    next.base = st.session.series.size();
    next.state = st.session.state;
    return metric_samples{};
  }
  auto b = columnar_base(*columnar);
  if (!b)
    return b.error();
  base = static_cast<int64_t>(*b);
  if (*b != 0 && *b != st.session.series.size())
    return make_error(ec::decode_failed,
                      "queued batch refers to series this device forgot");
  codec_context fresh;
  auto d = decode_delta(*columnar, *b == 0 ? fresh : st.session, nullptr);
  if (!d)
    return d.error();
  next = std::move(*d);
  return series_from(next);
}

// The cloud answered but refused this batch; the link itself is fine.
void refused(self_ptr self, const queued_batch& b, const sync_ack& ack) {
  auto& st = self->state;
  report(self, true, ack.retry_after_ms, true);
  if (st.head_sequence != b.sequence) {
    st.head_sequence = b.sequence;
    st.head_rejections = 0;
    st.head_resynced = false;
    st.head_reepoched = false;
  }
  bool resync = is_metrics(st) && ack.error_code == "session_out_of_sync"
                && !st.head_resynced;
  // Our sequence is held with other bytes (forged, or a store restored
  // from an old copy): never drop our data for it, number it anew.
  bool conflict = ack.error_code == "bad_sequence" && !st.head_reepoched;
  // One re-encode per batch is a repair, not a rejection.
  if (!resync && !conflict)
    ++st.head_rejections;
  note_error(self, "cloud refused batch " + std::to_string(b.sequence) + " ("
                     + std::to_string(st.head_rejections) + " of "
                     + std::to_string(st.cfg.max_rejections)
                     + "): " + ack.error_code + " " + ack.error_message);
  if (conflict) {
    st.head_reepoched = true;
    st.epoch_override = random_hex(8);
    ++st.reepochs;
    log_warning("sync", st.cfg.stream, ": batch ", b.sequence,
                " conflicts with what the cloud holds; sending it and the "
                "batches after it under the new epoch ", st.epoch_override);
  }
  if (resync)
    st.head_resynced = true;
  if ((resync || conflict) && reencode(self, b))
    return;
  if (st.head_rejections < st.cfg.max_rejections) {
    note_retry(self, b.sequence, st.head_rejections * 1000);
    finish_round(self, std::chrono::seconds(st.head_rejections));
    return;
  }
  // Refused for good: drop it (counted, an event) so the stream moves on.
  log_error("sync", st.cfg.stream, ": dropping batch ", b.sequence,
            " the cloud refused ", st.head_rejections, " times: ",
            ack.error_code, " ", ack.error_message);
  self->request(st.cfg.storage, storage_timeout, discard_atom::value,
                st.cfg.stream, b.sequence)
    .then(
      [self](int64_t) {
        auto& st = self->state;
        ++st.batches_rejected;
        st.head_rejections = 0;
        st.busy = false;
        round(self);
      },
      [self](caf::error& err) { fail_local(self, err); });
}

// Queues the head batch again, self-contained (no series session) and under
// the stream's epoch override if it has one; false when our own bytes do not
// decode (then it is refused like any other batch).
bool reencode(self_ptr self, const queued_batch& b) {
  auto& st = self->state;
  auto req = decode_request(b.body, is_zstd(b.body), std::string::npos / 2);
  if (!req)
    return false;
  auto es = settings_for(st, b.sequence,
                         st.epoch_override.empty() ? req->epoch
                                                   : st.epoch_override,
                         b.created_ms);
  queued_batch nb = b;
  if (is_metrics(st)) {
    auto xs = std::move(req->samples);
    codec_context own;
    auto base = columnar_base(req->columnar);
    if (!req->columnar.empty() && base && encoded_against(st, *base, own))
      if (auto decoded = decode_columnar(req->columnar, own))
        xs = std::move(*decoded);
    if (xs.empty())
      return false;
    ++st.session_resets;
    codec_context fresh;
    nb.body = encode_metrics(st, xs, fresh, es);
  } else if (!req->logs.empty()) {
    nb.body = encode_logs_request(es, req->logs);
  } else if (!req->events.empty()) {
    nb.body = encode_events_request(es, req->events);
  } else {
    return false;
  }
  self->request(st.cfg.storage, storage_timeout, enqueue_atom::value, nb)
    .then([self](int64_t) { finish_round(self, std::chrono::milliseconds(0)); },
          [self](caf::error& err) { fail_local(self, err); });
  return true;
}

void report(self_ptr self, bool ok, int64_t retry_after_ms, bool backlog,
            std::string error) {
  auto& st = self->state;
  link_report r;
  r.stream = st.cfg.stream;
  r.ok = ok;
  r.retry_after_ms = retry_after_ms;
  r.backlog = backlog;
  r.error = std::move(error);
  self->send(st.cfg.backoff, report_atom::value, std::move(r));
}

// Counts a retry of batch `sequence` in storage, next tried after `delay_ms`.
void note_retry(self_ptr self, int64_t sequence, int64_t delay_ms) {
  auto& st = self->state;
  self->send(st.cfg.storage, retry_atom::value, st.cfg.stream, sequence,
             st.cfg.clock->now_ms() + delay_ms);
}

void note_error(self_ptr self, const std::string& text) {
  auto& st = self->state;
  if (text != st.last_error)
    log_warning("sync", st.cfg.stream, ": ", text);
  st.last_error = text;
}

// The link or the cloud as a whole failed: the backoff actor decides when
// anyone may try again, so the next round starts at once and asks it.
void fail_link(self_ptr self, int64_t sequence, const std::string& text,
               int64_t retry_after_ms) {
  auto& st = self->state;
  ++st.send_failures;
  st.failed_sequence = sequence;
  note_error(self, text);
  report(self, false, retry_after_ms, true, text);
  st.busy = false;
  round(self);
}

// A local failure (storage): try again after a short pause.
void fail_local(self_ptr self, const caf::error& err) {
  note_error(self, render(err));
  finish_round(self, std::chrono::seconds(1));
}

// Ends a round and arms the single timer that starts the next one; `delay`
// is clock time.
void finish_round(self_ptr self, std::chrono::milliseconds delay) {
  auto& st = self->state;
  st.busy = false;
  self->delayed_send(self, st.cfg.clock->real(delay), tick_atom::value,
                     ++st.generation);
}

} // namespace

namespace {

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0')
    return "device";
  return buf;
}

} // namespace

void declare(option_set& opts, sync_config& x) {
  opts.add("device.id", x.device_id, host_name(),
           "Identity of this device towards the cloud (default: host name)");
  opts.add_size("sync.batch-bytes", x.batch_bytes, 1 << 20,
                "A batch is cut when its records take this many bytes in "
                "memory, before sync.batch-size records: bounds what one "
                "sync round holds (long log lines, many labels)",
                64 << 10, 256 << 20);
  opts.add("sync.max-rejections", x.max_rejections, 3, "times",
           "Times the cloud may refuse one batch as invalid before it is "
           "dropped (counted, with an event) so its stream moves on",
           1, 1000);
}

caf::error validate(const sync_config& x) {
  if (x.device_id.empty())
    return bad_config("device.id: must not be empty");
  if (x.stream != metrics_stream && x.stream != logs_stream
      && x.stream != events_stream)
    return bad_config("sync_config.stream: '" + x.stream
                      + "' is not metrics, logs or events");
  if (x.interval.count() <= 0)
    return bad_config("sync.interval: must be positive");
  if (x.batch_size < 1)
    return bad_config("sync.batch-size: must be at least 1, got "
                      + std::to_string(x.batch_size));
  if (x.batch_bytes < 1)
    return bad_config("sync.batch-bytes: must be at least 1, got "
                      + std::to_string(x.batch_bytes));
  if (x.zstd_level < 0 || x.zstd_level > 19)
    return bad_config("sync.zstd-level: must be 0..19, got "
                      + std::to_string(x.zstd_level));
  if (x.request_timeout.count() <= 0)
    return bad_config("sync_config.request_timeout: must be positive");
  if (x.max_rejections < 1)
    return bad_config("sync.max-rejections: must be at least 1, got "
                      + std::to_string(x.max_rejections));
  return caf::none;
}

sync_actor::behavior_type sync(sync_actor::stateful_pointer<sync_state> self,
                               sync_config cfg) {
  if (stop_on_bad_config(self, "sync", validate(cfg)))
    return sync_actor::behavior_type::make_empty_behavior();
  self->state.cfg = std::move(cfg);
  if (!self->state.cfg.clock)
    self->state.cfg.clock = make_system_clock();
  self->send(self, tick_atom::value, ++self->state.generation);
  return {
    [self](tick_atom) {
      // Asked from outside: send what there is now, full batch or not.
      self->state.force_cut = true;
      if (!self->state.busy)
        round(self);
    },
    [self](store_atom) {
      auto& st = self->state;
      if (!st.cfg.forward_immediately)
        return;
      st.force_cut = true;
      if (!st.busy)
        round(self);
    },
    [self](tick_atom, int64_t generation) {
      if (generation == self->state.generation && !self->state.busy)
        round(self);
    },
    [self](capabilities_atom, const capability_report& report) {
      // The capability actor reports only changes: tell the cloud each.
      self->state.capability = capability_of(report);
      self->state.capability_due = true;
      auto& cfg = self->state.cfg;
      auto interval = std::chrono::milliseconds(report.settings.sync_interval_ms);
      bool changed = interval != cfg.interval
                     || cfg.batch_size != report.settings.batch_size
                     || cfg.zstd_level != report.settings.zstd_level;
      cfg.interval = interval;
      cfg.batch_size = report.settings.batch_size;
      cfg.zstd_level = static_cast<int>(report.settings.zstd_level);
      cfg.config_version = report.cloud.version;
      cfg.forward_immediately = report.settings.tier == 3;
      if (changed)
        log_info("sync", cfg.stream, ": now every ",
                 report.settings.sync_interval_ms, " ms, batches of ",
                 cfg.batch_size, ", zstd level ", cfg.zstd_level);
      // A shorter interval applies now, not after the old one runs out.
      if (changed && !self->state.busy)
        round(self);
    },
    [self](stats_atom) {
      auto& st = self->state;
      actor_stats out;
      out.name = "sync_" + st.cfg.stream;
      out.state = st.last_error.empty() ? (st.busy ? "sending" : "idle")
                                        : "retrying: " + st.last_error;
      // What sync now waits on; the state text may keep a stale error.
      out.counters["busy"] = st.busy ? 1 : 0;
      out.counters["batches_sent"] = st.batches_sent;
      out.counters["batches_acked"] = st.batches_acked;
      out.counters["records_synced"] = st.records_synced;
      out.counters["send_failures"] = st.send_failures;
      out.counters["duplicates_acked"] = st.duplicates_acked;
      out.counters["batches_rejected"] = st.batches_rejected;
      out.counters["session_resets"] = st.session_resets;
      out.counters["reepochs"] = st.reepochs;
      out.counters["encode_fallbacks"] = st.encode_fallbacks;
      out.counters["last_acked_sequence"] = st.last_acked_sequence;
      out.counters["bytes_sent"] = st.bytes_sent;
      out.counters["session_series"] = static_cast<int64_t>(
        st.session.series.size());
      out.counters["config_version"] = st.cfg.config_version;
      out.counters["interval_ms"] = st.cfg.interval.count();
      out.counters["zstd_level"] = st.cfg.zstd_level;
      return out;
    },
  };
}

} // namespace fleetd
