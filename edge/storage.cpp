#include "edge/storage.hpp"

#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "messages/wire.hpp"
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

caf::expected<int64_t> store_samples(store_backend& st,
                                     const metric_samples& xs) {
  auto n = st.store(xs);
  if (!n) {
    log_warning_limited("storage", "store_samples", "store of ", xs.size(),
                        " samples failed: ", render(n.error()));
    return n.error();
  }
  // Tests and operators read "committed" as: this much is on disk.
  if (st.grouping())
    return n;
  if (!xs.empty() && st.held_points() == 0)
    log_debug("storage", "committed ", *n, " samples up to ts ",
              xs.back().timestamp_ms);
  else if (!xs.empty())
    log_debug("storage", "stored ", *n, " samples up to ts ",
              xs.back().timestamp_ms, ", held for storage.commit-interval");
  return *n;
}

caf::expected<int64_t> store_lines(store_backend& st, const log_lines& xs,
                                   const source_cursors& cursors) {
  auto n = st.store_logs(xs, cursors);
  if (!n) {
    log_warning_limited("storage", "store_logs", "store of ", xs.size(),
                        " log lines failed: ", render(n.error()));
    return n.error();
  }
  return *n;
}

// Each event as record_event keeps one (its own time, kind and message),
// all in one group when none is open so they share one commit; the first
// failure is the answer.
caf::expected<int64_t> store_events(store_backend& st,
                                    const event_records& xs) {
  bool own_group = xs.size() > 1 && !st.grouping() && st.begin_group();
  caf::error err;
  for (auto& x : xs)
    if ((err = st.record_event(x.kind, x.message)))
      break;
  if (own_group)
    if (auto end = st.end_group(); end && !err)
      err = std::move(end);
  if (err) {
    log_warning_limited("storage", "store_events", "store of ", xs.size(),
                        " events failed: ", render(err));
    return err;
  }
  return static_cast<int64_t>(xs.size());
}

// Held records commit one interval later at the latest, even when no
// later store comes to commit them.
void arm_commit(storage_actor::stateful_pointer<storage_state> self) {
  auto& st = *self->state.store;
  if (self->state.commit_armed || !st.holding() || st.grouping())
    return;
  self->state.commit_armed = true;
  self->delayed_send(self, std::chrono::milliseconds(st.commit_interval_ms()),
                     commit_atom::value);
}

using storage_ptr = storage_actor::stateful_pointer<storage_state>;

// Counts what a store of `stream` was handed and what it accepted.
void count_stream(storage_ptr self, const char* stream, int64_t collected,
                  int64_t stored) {
  auto& state = self->state;
  count_flow(state.flow, state.store->epoch(), stream, collected, stored);
}

// The stream's declaration: its drops, and its flow as the store keeps it
// (saved first when it grew), so no later start declares less.
drop_declaration declaration(storage_ptr self, const std::string& stream) {
  auto& state = self->state;
  auto& st = *state.store;
  auto out = drop_kind::declared(stream, st.epoch(), st.drops());
  if (state.flow.epoch != st.epoch())
    state.flow = flow_counts{st.epoch(), {}};
  if (state.flow != state.flow_saved) {
    if (auto err = st.save_flow(state.flow))
      log_warning_limited("storage", "save_flow",
                          "cannot keep the collected and stored counts: ",
                          render(err));
    else
      state.flow_saved = state.flow;
  }
  if (state.flow_saved.epoch == st.epoch()) {
    auto i = state.flow_saved.streams.find(stream);
    if (i != state.flow_saved.streams.end()) {
      out.collected = i->second.collected;
      out.stored = i->second.stored;
    }
  }
  return out;
}

// Answers every store of the group with its commit's outcome.
void settle_group(storage_ptr self) {
  auto& state = self->state;
  if (!state.group_open)
    return;
  state.group_open = false;
  auto err = state.store->end_group();
  int64_t samples = 0, lines = 0;
  for (auto& x : state.grouped)
    (x.samples ? samples : lines) += x.records;
  if (err)
    log_warning("storage", "commit of ", samples, " samples and ", lines,
                " log lines in a group of ", state.grouped.size(),
                " stores failed: ", render(err));
  else
    log_debug("storage", "committed ", samples, " samples and ", lines,
              " log lines in a group of ", state.grouped.size(), " stores");
  for (auto& x : std::exchange(state.grouped, {})) {
    if (err) {
      x.promise.deliver(err);
    } else {
      count_stream(self, x.stream, 0, x.records);
      x.promise.deliver(x.records);
    }
  }
}

// After a handler whose commit may have ended the group early (a batch,
// settings, a checkpoint, a clean): its stores are on disk, answer them.
template <class T>
caf::result<T> settled(storage_ptr self, caf::expected<T> x) {
  if (self->state.group_open && !self->state.store->grouping())
    settle_group(self);
  return to_result(std::move(x));
}

// Runs one store inside the open group (opening one when none is), so the
// stores of a collection round share a commit; each is answered after it.
template <class F>
caf::result<int64_t> grouped_store(storage_ptr self, const char* stream,
                                   int64_t collected, F&& store) {
  auto& state = self->state;
  auto& st = *state.store;
  count_stream(self, stream, collected, 0);
  bool samples = std::string_view{stream} == metrics_stream;
  // A commit made early (a batch, disk pressure) ended the group: settle it.
  if (state.group_open && !st.grouping())
    settle_group(self);
  if (!state.group_open && st.group_window_ms() > 0 && st.begin_group()) {
    state.group_open = true;
    self->delayed_send(self, std::chrono::milliseconds(st.group_window_ms()),
                       commit_atom::value);
  }
  caf::expected<int64_t> n = store();
  if (state.group_open && !st.grouping()) {
    // Ended while this store ran: this store committed on its own.
    settle_group(self);
    if (n)
      count_stream(self, stream, 0, *n);
    return to_result(std::move(n));
  }
  if (!state.group_open || !n) {
    if (n)
      count_stream(self, stream, 0, *n);
    return to_result(std::move(n));
  }
  auto rp = self->make_response_promise<int64_t>();
  state.grouped.push_back(
    storage_state::grouped_reply{rp, *n, samples, stream});
  return rp;
}

// False when the settings say log lines are not kept (store_logs), counted.
bool kept_lines(storage_ptr self, const log_lines& xs) {
  if (self->state.store_logs)
    return true;
  auto n = static_cast<int64_t>(xs.size());
  self->state.log_lines_not_kept += n;
  count_stream(self, logs_stream, n, 0);
  return false;
}

} // namespace

storage_state::~storage_state() {
  if (!store || flow == flow_saved || flow.epoch != store->epoch())
    return;
  if (auto err = store->save_flow(flow))
    log_warning("storage", "cannot keep the collected and stored counts: ",
                render(err));
}

storage_actor::behavior_type
storage(storage_actor::stateful_pointer<storage_state> self,
        std::shared_ptr<store_backend> store) {
  if (stop_on_bad_config(self, "storage", validate(store)))
    return storage_actor::behavior_type::make_empty_behavior();
  self->state.store = std::move(store);
  auto& st = *self->state.store;
  self->state.flow = self->state.flow_saved = st.load_flow();
  return {
    [self, &st](store_atom, const metric_samples& xs) {
      auto n = grouped_store(self, metrics_stream,
                             static_cast<int64_t>(xs.size()),
                             [&] { return store_samples(st, xs); });
      arm_commit(self);
      return n;
    },
    [self, &st](store_atom, const log_lines& xs) -> caf::result<int64_t> {
      if (!kept_lines(self, xs))
        return int64_t{0};
      auto n = grouped_store(self, logs_stream,
                             static_cast<int64_t>(xs.size()),
                             [&] { return store_lines(st, xs, {}); });
      arm_commit(self);
      return n;
    },
    [self, &st](store_atom, const log_lines& xs,
                const source_cursors& cursors) {
      // Not kept: the cursors still move, the lines are not read again.
      static const log_lines none;
      const log_lines& kept = kept_lines(self, xs) ? xs : none;
      auto n = grouped_store(self, logs_stream,
                             static_cast<int64_t>(kept.size()),
                             [&] { return store_lines(st, kept, cursors); });
      arm_commit(self);
      return n;
    },
    [&st](cursor_atom) -> caf::result<source_cursors> {
      return to_result(st.cursors());
    },
    [self, &st](store_atom, const event_records& xs) {
      auto n = grouped_store(self, events_stream,
                             static_cast<int64_t>(xs.size()),
                             [&] { return store_events(st, xs); });
      arm_commit(self);
      return n;
    },
    [self, &st](commit_atom) {
      if (self->state.group_open) {
        settle_group(self);
        return;
      }
      self->state.commit_armed = false;
      if (auto err = st.commit_held())
        log_warning("storage", "held records lost: ", render(err));
    },
    [self, &st](fetch_atom, const std::string& stream, int64_t max,
                int64_t max_bytes) -> caf::result<unbatched_points> {
      auto up = st.fetch(stream, max, max_bytes);
      // A batch is cut from these: its first send declares with it.
      if (up && up->size() > 0)
        up->declared = declaration(self, stream);
      return to_result(std::move(up));
    },
    [self, &st](enqueue_atom, const queued_batch& b) -> caf::result<int64_t> {
      return settled(self, st.enqueue(b));
    },
    [self, &st](pending_atom, const std::string& stream,
          int64_t max) -> caf::result<queued_batches> {
      auto xs = st.pending(stream, max);
      // Sent beside the batch: the cloud learns the drops with the data.
      if (xs && !xs->empty()) {
        auto d = declaration(self, stream);
        for (auto& x : *xs)
          x.declared = d;
      }
      return to_result(std::move(xs));
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
    [self, &st](config_atom, const cloud_settings& x) -> caf::result<bool> {
      auto err = st.save_settings(x);
      return settled(self, err ? caf::expected<bool>{err}
                               : caf::expected<bool>{true});
    },
    [self, &st](flush_atom) -> caf::result<bool> {
      auto err = st.checkpoint();
      return settled(self, err ? caf::expected<bool>{err}
                               : caf::expected<bool>{true});
    },
    [self, &st](event_atom, const std::string& kind,
                const std::string& message) {
      auto err = st.record_event(kind, message);
      count_stream(self, events_stream, 1, err ? 0 : 1);
      if (err)
        log_warning_limited("storage", "record_event", "cannot record event ",
                            kind, ": ", render(err));
    },
    [&st](refused_atom, const std::string& stream, const std::string& why,
          int64_t n) {
      // Names a store keeps only: a kind is never made of hostile text.
      if (check_stream(stream) || n <= 0 || why.empty() || why.size() > 16)
        return;
      if (auto err = st.count_refused(drop_kind::refused(stream, why.c_str()),
                                      n))
        log_warning_limited("storage", "count_refused",
                            "cannot count refused records: ", render(err));
    },
    [&st](retry_atom, const std::string& stream, int64_t sequence,
          int64_t next_retry_ms) {
      if (auto err = st.note_retry(stream, sequence, next_retry_ms))
        log_warning_limited("storage", "note_retry",
                            "cannot count a retry of batch ", sequence, " of ",
                            stream, ": ", render(err));
    },
    [self, &st](debug_atom,
                const std::string& what) -> caf::result<debug_report> {
      return settled(self, st.debug(what));
    },
    [self, &st](capabilities_atom, const capability_report& report) {
      st.apply(report.settings);
      self->state.store_logs = report.settings.store_logs;
    },
    [self, &st](stats_atom) {
      auto out = st.stats();
      out.counters["log_lines_not_kept"] = self->state.log_lines_not_kept;
      out.counters["store_logs"] = self->state.store_logs ? 1 : 0;
      for (auto& [stream, f] : self->state.flow.streams) {
        out.counters["collected_" + stream] = f.collected;
        out.counters["stored_" + stream] = f.stored;
      }
      return out;
    },
  };
}

} // namespace fleetd
