#include "edge/storage.hpp"

#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "runtime/config_check.hpp"
#include "runtime/logger.hpp"
#include "runtime/result.hpp"

namespace fleetd {

caf::error validate(const std::shared_ptr<store_backend>& store) {
  if (!store)
    return make_error(ec::bad_config, "storage: no store (sqlite or memory)");
  return caf::none;
}

namespace {

caf::result<int64_t> store_samples(store_backend& st,
                                   const metric_samples& xs) {
  auto n = st.store(xs);
  if (!n) {
    log_warning_limited("storage", "store_samples", "store of ", xs.size(),
                        " samples failed: ", render(n.error()));
    return n.error();
  }
  // Tests and operators read "committed" as: this much is on disk.
  if (!xs.empty() && st.held_points() == 0)
    log_debug("storage", "committed ", *n, " samples up to ts ",
              xs.back().timestamp_ms);
  else if (!xs.empty())
    log_debug("storage", "stored ", *n, " samples up to ts ",
              xs.back().timestamp_ms, ", held for storage.commit-interval");
  return *n;
}

caf::result<int64_t> store_lines(store_backend& st, const log_lines& xs) {
  auto n = st.store_logs(xs);
  if (!n) {
    log_warning_limited("storage", "store_logs", "store of ", xs.size(),
                        " log lines failed: ", render(n.error()));
    return n.error();
  }
  return *n;
}

// Held records commit one interval later at the latest, even when no
// later store comes to commit them.
void arm_commit(storage_actor::stateful_pointer<storage_state> self) {
  auto& st = *self->state.store;
  if (self->state.commit_armed || !st.holding())
    return;
  self->state.commit_armed = true;
  self->delayed_send(self, std::chrono::milliseconds(st.commit_interval_ms()),
                     commit_atom::value);
}

} // namespace

storage_actor::behavior_type
storage(storage_actor::stateful_pointer<storage_state> self,
        std::shared_ptr<store_backend> store) {
  if (stop_on_bad_config(self, "storage", validate(store)))
    return storage_actor::behavior_type::make_empty_behavior();
  self->state.store = std::move(store);
  auto& st = *self->state.store;
  return {
    [self, &st](store_atom, const metric_samples& xs) {
      auto n = store_samples(st, xs);
      arm_commit(self);
      return n;
    },
    [self, &st](store_atom, const log_lines& xs) {
      auto n = store_lines(st, xs);
      arm_commit(self);
      return n;
    },
    [self, &st](commit_atom) {
      self->state.commit_armed = false;
      if (auto err = st.commit_held())
        log_warning("storage", "held records lost: ", render(err));
    },
    [&st](fetch_atom, const std::string& stream,
          int64_t max) -> caf::result<unbatched_points> {
      return to_result(st.fetch(stream, max));
    },
    [&st](enqueue_atom, const queued_batch& b) -> caf::result<int64_t> {
      return to_result(st.enqueue(b));
    },
    [&st](pending_atom, const std::string& stream,
          int64_t max) -> caf::result<queued_batches> {
      return to_result(st.pending(stream, max));
    },
    [&st](ack_atom, const acked_batch& x) -> caf::result<int64_t> {
      return to_result(st.ack(x.stream, x.sequence, x.base, x.defs, x.history));
    },
    [&st](discard_atom, const std::string& stream,
          int64_t sequence) -> caf::result<int64_t> {
      return to_result(st.discard(stream, sequence));
    },
    [&st](session_atom,
          const std::string& stream) -> caf::result<wire_session> {
      return to_result(st.session(stream));
    },
    [&st](config_atom) -> caf::result<cloud_settings> {
      return to_result(st.load_settings());
    },
    [&st](config_atom, const cloud_settings& x) -> caf::result<bool> {
      if (auto err = st.save_settings(x))
        return err;
      return true;
    },
    [&st](flush_atom) -> caf::result<bool> {
      if (auto err = st.checkpoint())
        return err;
      return true;
    },
    [&st](event_atom, const std::string& kind, const std::string& message) {
      if (auto err = st.record_event(kind, message))
        log_warning_limited("storage", "record_event", "cannot record event ",
                            kind, ": ", render(err));
    },
    [&st](retry_atom, const std::string& stream, int64_t sequence,
          int64_t next_retry_ms) {
      if (auto err = st.note_retry(stream, sequence, next_retry_ms))
        log_warning_limited("storage", "note_retry",
                            "cannot count a retry of batch ", sequence, " of ",
                            stream, ": ", render(err));
    },
    [&st](debug_atom, const std::string& what) -> caf::result<debug_report> {
      return to_result(st.debug(what));
    },
    [&st](capabilities_atom, const capability_report& report) {
      st.apply(report.settings);
    },
    [&st](stats_atom) { return st.stats(); },
  };
}

} // namespace fleetd
