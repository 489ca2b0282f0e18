#include "edge/sync_now.hpp"

#include <caf/typed_event_based_actor.hpp>

#include <algorithm>
#include <sstream>

#include "messages/error.hpp"
#include "runtime/config_check.hpp"
#include "runtime/json.hpp"
#include "runtime/options.hpp"
#include "runtime/text.hpp"

namespace fleetd {

void declare(option_set& opts, sync_now_config& x) {
  using namespace std::chrono_literals;
  opts.add("sync.now-timeout", x.timeout, 30s,
           "fleetd sync now: how long it waits for the cloud's acks (at most "
           "55s)",
           1ms);
}

caf::error validate(const sync_now_config& x) {
  if (x.timeout.count() <= 0 || x.timeout > max_sync_now_timeout)
    return bad_config("sync.now-timeout: must be positive and at most 55s");
  return caf::none;
}

namespace {

using sync_now_ptr = sync_now_actor::stateful_pointer<sync_now_state>;
constexpr auto ask_timeout = std::chrono::seconds(5);
constexpr auto max_poll = std::chrono::milliseconds(250);

int64_t count(const actor_stats& x, const std::string& name) {
  auto i = x.counters.find(name);
  return i == x.counters.end() ? 0 : i->second;
}

// The store's counter of what `sync_<stream>` has not cut into a batch.
std::string unbatched_counter(const std::string& sync_name) {
  auto stream = sync_name.substr(sync_name.find('_') + 1);
  return stream == "metrics" ? "unbatched_points" : "unbatched_" + stream;
}

// Done by what the actors do, not by their state text: a quiet stream
// keeps a stale "retrying: ..." until it next sends.
bool stream_done(const sync_now_request& r, const std::string& name) {
  auto& now = r.now.at(name);
  auto& before = r.before.at(name);
  return count(now, "busy") == 0
         && (count(r.storage, unbatched_counter(name)) == 0
             || count(now, "batches_acked") > count(before, "batches_acked"));
}

bool done(const sync_now_request& r) {
  if (count(r.storage, "queued_batches") != 0)
    return false;
  for (auto& kv : r.now)
    if (!stream_done(r, kv.first))
      return false;
  return true;
}

bool any_busy(const sync_now_request& r) {
  for (auto& kv : r.now)
    if (count(kv.second, "busy") != 0)
      return true;
  return false;
}

debug_report render(const sync_now_request& r, int64_t took_ms, bool acked) {
  std::ostringstream text;
  text << "sync now: "
       << (acked ? "every stream acked" : "not everything acked") << " in "
       << took_ms << " ms\n";
  std::string streams = "[";
  for (auto& kv : r.now) {
    auto& before = r.before.at(kv.first);
    auto batches = count(kv.second, "batches_acked")
                   - count(before, "batches_acked");
    auto records = count(kv.second, "records_synced")
                   - count(before, "records_synced");
    auto last = count(kv.second, "last_acked_sequence");
    text << "  " << kv.first << ": " << batches << " batch(es) acked, "
         << records << " record(s), last acked sequence " << last;
    if (kv.second.state != "idle")
      text << " (" << kv.second.state << ")";
    text << "\n";
    streams += (streams.size() > 1 ? "," : "")
               + json_object{}
                   .add("stream", kv.first)
                   .add("batches_acked", batches)
                   .add("records", records)
                   .add("last_acked_sequence", last)
                   .add("state", kv.second.state)
                   .str();
  }
  streams += "]";
  auto queued = count(r.storage, "queued_batches");
  if (queued > 0)
    text << "  still queued: " << queued << " batch(es)\n";
  json_object out;
  out.add("acked", acked)
    .add("ms", took_ms)
    .add("queued_batches", queued)
    .raw("streams", streams);
  return debug_report{text.str(), out.str()};
}

void look(sync_now_ptr self, int64_t id);

// The open request `id`; none once it was answered.
std::shared_ptr<sync_now_request> open_request(sync_now_ptr self, int64_t id) {
  auto& open = self->state.open;
  auto i = open.find(id);
  return i == open.end() ? nullptr : i->second;
}

// Looks again later, each wait twice the last up to max_poll: the store is
// not asked to count its rows every 50 ms for a slow link.
void again(sync_now_ptr self, int64_t id, sync_now_request& r) {
  self->delayed_send(self, r.poll, tick_atom::value, id);
  r.poll = std::min(r.poll * 2, max_poll);
}

// Ends request `id` with `answer`.
void finish(sync_now_ptr self, int64_t id, caf::expected<debug_report> answer) {
  auto& st = self->state;
  auto i = st.open.find(id);
  if (i == st.open.end())
    return;
  if (answer)
    i->second->promise.deliver(std::move(*answer));
  else
    i->second->promise.deliver(answer.error());
  st.open.erase(i);
}

// Past the deadline: the figures as they are, not acked.
bool timed_out(sync_now_ptr self, int64_t id, const sync_now_request& r) {
  auto& st = self->state;
  auto took = st.cfg.clock->now_ms() - r.started_ms;
  if (took < r.deadline_ms - r.started_ms)
    return false;
  ++st.timed_out;
  auto report = render(r, took, false);
  report.text = "sync now: timed out after " + std::to_string(took) + " ms\n"
                + report.text;
  finish(self, id, std::move(report));
  return true;
}

// The store's answer is in (every sync actor was idle): done, or later.
void settle_storage(sync_now_ptr self, int64_t id) {
  auto& st = self->state;
  auto r = open_request(self, id);
  if (!r)
    return;
  if (done(*r)) {
    ++st.acked;
    finish(self, id, render(*r, st.cfg.clock->now_ms() - r->started_ms, true));
    return;
  }
  if (!timed_out(self, id, *r))
    again(self, id, *r);
}

// Every sync actor's answer is in: the figures before and the rounds on the
// first look; then the store, once no sync actor is busy.
void settle_syncs(sync_now_ptr self, int64_t id) {
  auto& st = self->state;
  auto r = open_request(self, id);
  if (!r || --r->waiting > 0)
    return;
  if (!r->started) {
    r->started = true;
    r->before = r->now;
    for (auto& y : st.cfg.syncs)
      self->send(y.second, tick_atom::value);
    again(self, id, *r);
    return;
  }
  if (any_busy(*r)) {
    if (!timed_out(self, id, *r))
      again(self, id, *r);
    return;
  }
  self->request(st.cfg.storage, ask_timeout, stats_atom::value)
    .then(
      [self, id, r](actor_stats& x) {
        r->storage = std::move(x);
        settle_storage(self, id);
      },
      [self, id](caf::error& err) {
        finish(self, id,
               make_error(ec::io_error, "sync now: storage did not answer: "
                                          + fleetd::render(err)));
      });
}

// Asks every sync actor for its figures.
void look(sync_now_ptr self, int64_t id) {
  auto& st = self->state;
  auto r = open_request(self, id);
  if (!r)
    return;
  r->waiting = st.cfg.syncs.size();
  r->now.clear();
  for (auto& y : st.cfg.syncs)
    self->request(y.second, ask_timeout, stats_atom::value)
      .then(
        [self, id, r, name = y.first](actor_stats& x) {
          r->now[name] = std::move(x);
          settle_syncs(self, id);
        },
        [self, id](caf::error& err) {
          finish(self, id,
                 make_error(ec::io_error, "sync now: a sync actor did not "
                                          "answer: "
                                            + fleetd::render(err)));
        });
}

// "sync now" or "sync now 30000": the request's timeout.
caf::expected<std::chrono::milliseconds>
timeout_of(const std::string& what, std::chrono::milliseconds fallback) {
  auto arg = std::string(trim(std::string_view(what).substr(8)));
  if (arg.empty())
    return fallback;
  if (arg.size() > 6 || arg.find_first_not_of("0123456789") != std::string::npos
      || std::stoll(arg) <= 0
      || std::stoll(arg) > max_sync_now_timeout.count())
    return bad_config("sync now: the timeout must be 1 to "
                      + std::to_string(max_sync_now_timeout.count())
                      + " ms, not '" + printable(arg, 16) + "'");
  return std::chrono::milliseconds{std::stoll(arg)};
}

} // namespace

sync_now_actor::behavior_type
sync_now(sync_now_actor::stateful_pointer<sync_now_state> self,
         sync_now_config cfg) {
  if (stop_on_bad_config(self, "sync_now", validate(cfg)))
    return sync_now_actor::behavior_type::make_empty_behavior();
  if (!cfg.clock)
    cfg.clock = make_system_clock();
  self->state.cfg = std::move(cfg);
  return {
    [self](debug_atom, const std::string& what) -> caf::result<debug_report> {
      auto& st = self->state;
      if (what.rfind("sync now", 0) != 0)
        return make_error(ec::bad_config, "sync_now answers 'sync now', not '"
                                            + printable(what, 64) + "'");
      auto timeout = timeout_of(what, st.cfg.timeout);
      if (!timeout)
        return timeout.error();
      ++st.requests;
      auto r = std::make_shared<sync_now_request>();
      // No sync actor: nothing to wait for.
      if (st.cfg.syncs.empty()) {
        ++st.acked;
        return render(*r, 0, true);
      }
      r->promise = self->make_response_promise<debug_report>();
      r->started_ms = st.cfg.clock->now_ms();
      r->deadline_ms = r->started_ms + timeout->count();
      r->poll = st.cfg.poll;
      auto id = st.next_id++;
      st.open.emplace(id, r);
      look(self, id);
      return r->promise;
    },
    [self](tick_atom, int64_t id) { look(self, id); },
    [self](stats_atom) {
      auto& st = self->state;
      actor_stats out;
      out.name = sync_now_state::name;
      out.state = st.open.empty() ? "idle" : "waiting for acks";
      out.counters = {{"requests", st.requests},
                      {"acked", st.acked},
                      {"timed_out", st.timed_out},
                      {"open", static_cast<int64_t>(st.open.size())}};
      return out;
    },
  };
}

} // namespace fleetd
