#include "edge/sync.hpp"

#include <algorithm>

#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "messages/wire.hpp"
#include "runtime/logger.hpp"

namespace fleetd {

namespace {

using self_ptr = sync_actor::stateful_pointer<sync_state>;

constexpr auto storage_timeout = std::chrono::seconds(30);

void round(self_ptr self);

// Ends a round and arms the single timer that starts the next one.
void finish_round(self_ptr self, std::chrono::milliseconds delay) {
  auto& st = self->state;
  st.busy = false;
  self->delayed_send(self, delay, tick_atom::value, ++st.generation);
}

void fail_round(self_ptr self, const caf::error& err,
                int64_t retry_after_ms = 0) {
  auto& st = self->state;
  ++st.send_failures;
  ++st.consecutive_failures;
  auto text = render(err);
  if (text != st.last_error)
    log_warning("sync", st.cfg.stream, ": ", text, "; backing off");
  st.last_error = std::move(text);
  auto delay = backoff_delay(st.cfg.backoff_base, st.cfg.backoff_cap,
                             st.consecutive_failures, st.rng);
  delay = std::max(delay, std::chrono::milliseconds(retry_after_ms));
  finish_round(self, delay);
}

void send(self_ptr self, queued_batch batch) {
  auto& st = self->state;
  ++st.batches_sent;
  st.bytes_sent += static_cast<int64_t>(batch.body.size());
  auto seq = batch.sequence;
  auto points = batch.points;
  self->request(st.cfg.link, st.cfg.request_timeout, sync_atom::value,
                std::move(batch.body))
    .then(
      [self, seq, points](sync_ack& ack) {
        auto& st = self->state;
        if (!ack.success || ack.last_sequence_ack < seq) {
          fail_round(self,
                     make_error(ec::remote_error,
                                "cloud refused batch " + std::to_string(seq)
                                  + ": " + ack.error_code + " "
                                  + ack.error_message),
                     ack.retry_after_ms);
          return;
        }
        self->request(st.cfg.storage, storage_timeout, ack_atom::value,
                      st.cfg.stream, ack.last_sequence_ack)
          .then(
            [self, seq, points, acked = ack.last_sequence_ack](int64_t deleted) {
              auto& st = self->state;
              if (deleted == 0)
                ++st.duplicates_acked;
              st.batches_acked += deleted;
              st.points_synced += points;
              st.last_acked_sequence = acked;
              if (st.consecutive_failures > 0 || !st.last_error.empty())
                log_info("sync", st.cfg.stream, ": delivering again at batch ",
                         seq);
              st.consecutive_failures = 0;
              st.last_error.clear();
              // Drain: go straight on with the next batch.
              round(self);
            },
            [self](caf::error& err) { fail_round(self, err); });
      },
      [self](caf::error& err) { fail_round(self, err); });
}

void cut(self_ptr self) {
  auto& st = self->state;
  self->request(st.cfg.storage, storage_timeout, fetch_atom::value,
                st.cfg.stream, st.cfg.batch_size)
    .then(
      [self](unbatched_points& up) {
        auto& st = self->state;
        if (up.samples.empty()) {
          finish_round(self, st.cfg.interval);
          return;
        }
        encode_settings es;
        es.device_id = st.cfg.device_id;
        es.sequence = up.next_sequence;
        es.epoch = up.epoch;
        es.now_ms = st.cfg.clock->now_ms();
        es.zstd_level = st.cfg.zstd_level;
        queued_batch b;
        b.stream = st.cfg.stream;
        b.sequence = up.next_sequence;
        b.last_id = up.last_id;
        b.points = static_cast<int64_t>(up.samples.size());
        b.created_ms = es.now_ms;
        b.body = encode_metrics_request(es, up.samples);
        // Persist before the first send, so a retry resends the same bytes.
        self->request(st.cfg.storage, storage_timeout, enqueue_atom::value, b)
          .then([self, b](int64_t) mutable { send(self, std::move(b)); },
                [self](caf::error& err) { fail_round(self, err); });
      },
      [self](caf::error& err) { fail_round(self, err); });
}

void round(self_ptr self) {
  auto& st = self->state;
  st.busy = true;
  self->request(st.cfg.storage, storage_timeout, pending_atom::value,
                st.cfg.stream, int64_t{1})
    .then(
      [self](queued_batches& xs) {
        if (xs.empty())
          cut(self);
        else
          send(self, std::move(xs.front()));
      },
      [self](caf::error& err) { fail_round(self, err); });
}

} // namespace

std::chrono::milliseconds backoff_delay(std::chrono::milliseconds base,
                                        std::chrono::milliseconds cap,
                                        int64_t failures, std::minstd_rand& rng) {
  auto ceiling = base.count();
  for (int64_t i = 1; i < failures && ceiling < cap.count(); ++i)
    ceiling *= 2;
  ceiling = std::min(ceiling, cap.count());
  std::uniform_int_distribution<int64_t> pick(0, std::max<int64_t>(ceiling, 0));
  return std::chrono::milliseconds(pick(rng));
}

sync_actor::behavior_type sync(sync_actor::stateful_pointer<sync_state> self,
                               sync_config cfg) {
  self->state.cfg = std::move(cfg);
  self->state.rng.seed(static_cast<std::minstd_rand::result_type>(
    // Fleet-wide spread: devices must not retry in lockstep after an outage.
    self->state.cfg.seed ? self->state.cfg.seed : std::random_device{}()));
  self->send(self, tick_atom::value, ++self->state.generation);
  return {
    [self](tick_atom) {
      if (!self->state.busy)
        round(self);
    },
    [self](tick_atom, int64_t generation) {
      if (generation == self->state.generation && !self->state.busy)
        round(self);
    },
    [self](capabilities_atom, const capability_report& report) {
      auto& cfg = self->state.cfg;
      cfg.interval = std::chrono::milliseconds(report.settings.sync_interval_ms);
      cfg.batch_size = report.settings.batch_size;
      cfg.zstd_level = static_cast<int>(report.settings.zstd_level);
      log_info("sync", cfg.stream, ": now every ",
               report.settings.sync_interval_ms, " ms, batches of ",
               cfg.batch_size, ", zstd level ", cfg.zstd_level);
    },
    [self](stats_atom) {
      auto& st = self->state;
      actor_stats out;
      out.name = "sync";
      out.state = st.last_error.empty()
                    ? (st.busy ? "sending" : "idle")
                    : "backing off: " + st.last_error;
      out.counters["batches_sent"] = st.batches_sent;
      out.counters["batches_acked"] = st.batches_acked;
      out.counters["points_synced"] = st.points_synced;
      out.counters["send_failures"] = st.send_failures;
      out.counters["consecutive_failures"] = st.consecutive_failures;
      out.counters["duplicates_acked"] = st.duplicates_acked;
      out.counters["last_acked_sequence"] = st.last_acked_sequence;
      out.counters["bytes_sent"] = st.bytes_sent;
      return out;
    },
  };
}

} // namespace fleetd
