#include "cloud/rollout.hpp"

#include <algorithm>
#include <functional>
#include <tuple>

#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "runtime/config_check.hpp"
#include "runtime/logger.hpp"
#include "runtime/options.hpp"

namespace fleetd {

namespace {

constexpr auto store_timeout = std::chrono::seconds(30);

// Phases in which the org's devices are watched and no other start is taken.
bool under_way(const std::string& phase) {
  return phase == "pushing" || phase == "baking" || phase == "halted";
}

} // namespace

void declare(option_set& opts, rollout_config& x) {
  using namespace std::chrono_literals;
  opts.add("rollout.check-interval", x.check_interval, 1s,
           "How often a rollout's bake is checked for its end (fleetctl "
           "rollout --bake sets the bake itself)",
           10ms);
  opts.add("rollout.max-devices", x.max_devices, 100000, "devices",
           "Most devices of an org one rollout takes; an org with more is "
           "refused",
           1, 10'000'000);
}

caf::error validate(const rollout_config& x) {
  if (x.check_interval.count() <= 0)
    return bad_config("rollout.check-interval: must be positive");
  if (x.max_devices < 1)
    return bad_config("rollout.max-devices: must be positive");
  return caf::none;
}

namespace {

// What the actor needs beside its options.
caf::error check_parts(const rollout_config& x) {
  if (!x.store)
    return bad_config("rollout: no cloud store");
  if (!x.book)
    return bad_config("rollout: no book to persist rollouts in");
  if (!x.clock)
    return bad_config("rollout: no clock");
  return caf::none;
}

using rollout_ptr = rollout_actor::stateful_pointer<rollout_state>;

// The org's devices as the store lists them, with tier and storage use.
struct population {
  std::vector<rollout_device> devices;
  std::map<std::string, double> storage;
};

population population_of(const device_infos& xs, const std::string& org) {
  std::map<std::string, int64_t> tier;
  population out;
  for (auto& d : xs) {
    if (org_of(d.device_id) != org)
      continue;
    auto& t = tier[d.device_id];
    if (d.capability.tier > 0)
      t = d.capability.tier;
    auto& c = d.capability;
    if (c.total_disk > 0 && c.available_disk >= 0
        && c.available_disk <= c.total_disk)
      out.storage[d.device_id] = 1.0 - static_cast<double>(c.available_disk)
                                         / static_cast<double>(c.total_disk);
  }
  for (auto& [id, t] : tier)
    out.devices.push_back({id, t});
  return out;
}

// The ids of the org's devices.
std::set<std::string> ids_of(const population& p) {
  std::set<std::string> out;
  for (auto& d : p.devices)
    out.insert(d.id);
  return out;
}

void save(rollout_ptr self, const rollout_record& x) {
  auto& st = self->state;
  if (auto err = st.cfg.book->save(x)) {
    ++st.save_failures;
    st.last_error = render(err);
    log_warning("rollout", "cannot save the rollout of org '", x.status.org,
                "': ", render(err));
  }
}

// Opens a fresh bake window for the org's devices.
void open_window(rollout_ptr self, rollout_record& x) {
  auto& st = self->state;
  auto now = st.cfg.clock->now_ms();
  x.status.phase = "baking";
  x.status.bake_started_ms = now;
  x.status.bake_ends_ms = now + x.status.plan.bake_ms;
  for (auto& [id, t] : st.tracks)
    if (org_of(id) == x.status.org)
      t.window = device_window{};
}

using done_fn = std::function<void(const caf::error&)>;

// Shared by the callbacks of one command's requests; null for a step the
// actor takes by itself.
using promise_ptr
  = std::shared_ptr<caf::typed_response_promise<rollout_status>>;

using device_fn = std::function<void(const std::string&, cloud_settings&)>;
using change_fn = std::function<settings_change(const std::string&)>;

// Most store requests a rollout has outstanding at once: the store and the
// actor's mailbox hold a window, not the whole org.
constexpr size_t store_window = 64;

// One pass over devices: the next to ask for, what is outstanding.
struct device_pass {
  std::vector<std::string> devices;
  /// Null: read each device's settings; else set these.
  change_fn change_of;
  device_fn ok;
  done_fn done;
  size_t next = 0;
  size_t pending = 0;
  caf::error first;
};

void answered(rollout_ptr self, std::shared_ptr<device_pass> a);

// Asks the store about the next device of `a`.
void ask_next(rollout_ptr self, std::shared_ptr<device_pass> a) {
  auto id = a->devices[a->next++];
  ++a->pending;
  auto on_ok = [self, a, id](cloud_settings& x) {
    if (a->change_of)
      ++self->state.pushes;
    a->ok(id, x);
    answered(self, a);
  };
  auto on_err = [self, a, id](caf::error& err) {
    if (a->change_of)
      ++self->state.push_failures;
    if (!a->first)
      a->first = make_error(ec::storage_failed,
                            "device '" + id + "': " + render(err));
    answered(self, a);
  };
  auto& store = self->state.cfg.store;
  if (a->change_of)
    self->request(store, store_timeout, config_atom::value, id,
                  a->change_of(id))
      .then(on_ok, on_err);
  else
    self->request(store, store_timeout, config_atom::value, id)
      .then(on_ok, on_err);
}

// One answer in: the next device takes its place, or the pass ends.
void answered(rollout_ptr self, std::shared_ptr<device_pass> a) {
  --a->pending;
  if (a->next < a->devices.size())
    ask_next(self, a);
  else if (a->pending == 0)
    a->done(a->first);
}

// Reads (change_of null) or sets each device's settings, at most
// store_window at once; calls `ok` with each the store answered, then
// `done` with the first failure.
void each_device(rollout_ptr self, const std::vector<std::string>& devices,
                 change_fn change_of, device_fn ok, done_fn done) {
  if (devices.empty()) {
    done(caf::none);
    return;
  }
  auto a = std::make_shared<device_pass>();
  a->devices = devices;
  a->change_of = std::move(change_of);
  a->ok = std::move(ok);
  a->done = std::move(done);
  while (a->next < a->devices.size() && a->next < store_window)
    ask_next(self, a);
}

// Ends a push or judgement: a halt asked for meanwhile wins.
void settle(rollout_ptr self, rollout_record& x) {
  if (x.status.reason == "halt requested") {
    x.status.phase = "halted";
    x.status.reason = "halted by the operator";
  }
}

// Pushes the current stage to the devices it adds, then bakes it.
void push_stage(rollout_ptr self, const std::string& org,
                promise_ptr rp) {
  auto& st = self->state;
  auto& x = st.rollouts[org];
  x.status.phase = "pushing";
  // Once: when the stage is recorded, or when it failed before that.
  auto reply = [self, org, rp] {
    if (rp && rp->pending())
      rp->deliver(self->state.rollouts[org].status);
  };
  auto fail = [self, org, reply](const std::string& what,
                                 const caf::error& err) {
    auto& x = self->state.rollouts[org];
    x.status.phase = "halted";
    x.status.reason = what + ": " + render(err);
    x.status.changed = static_cast<int64_t>(x.pushed.size());
    self->state.last_error = x.status.reason;
    save(self, x);
    reply();
  };
  self->request(st.cfg.store, store_timeout, devices_atom::value)
    .then(
      [self, org, reply, fail](device_infos& xs) {
        auto& st = self->state;
        auto& x = st.rollouts[org];
        auto p = population_of(xs, org);
        if (static_cast<int64_t>(p.devices.size()) > st.cfg.max_devices) {
          fail("refused",
               make_error(ec::too_large,
                          "org has " + std::to_string(p.devices.size())
                            + " devices, more than rollout.max-devices"));
          return;
        }
        x.status.devices = static_cast<int64_t>(p.devices.size());
        auto targets = stage_targets(p.devices, x.status.stages,
                                     static_cast<size_t>(x.status.stage));
        // Pushed again unless the store confirmed it: a push that failed or
        // was cut by a restart is made by resume (or the restart) itself.
        std::vector<std::string> add;
        std::vector<std::string> read;
        for (auto& id : targets)
          if (x.pushed.count(id) == 0) {
            add.push_back(id);
            if (x.previous.count(id) == 0)
              read.push_back(id);
          }
        // Tracked from now: the new devices' outcomes count in the bake.
        for (auto& id : ids_of(p))
          st.tracks[id];
        // The stage is recorded: the operator has the answer now, and
        // status shows the pushes' progress.
        save(self, x);
        reply();
        auto keep = [self, org](const std::string& id, cloud_settings& x) {
          self->state.rollouts[org].previous.emplace(id, x);
        };
        each_device(self, read, nullptr, keep, [self, org, add, reply, fail](
                                                  const caf::error& err) {
          if (err) {
            fail("cannot read the settings before the change", err);
            return;
          }
          auto& x = self->state.rollouts[org];
          // Saved before the change: a rollback after a crash finds them.
          save(self, x);
          auto change = x.status.plan.change;
          change.create = false;
          each_device(self, add,
                      [change](const std::string&) { return change; },
                      [self, org](const std::string& id, cloud_settings&) {
                        self->state.rollouts[org].pushed.insert(id);
                      },
                      [self, org, reply, fail](const caf::error& err) {
                        if (err) {
                          fail("push failed", err);
                          return;
                        }
                        auto& x = self->state.rollouts[org];
                        x.status.changed
                          = static_cast<int64_t>(x.pushed.size());
                        open_window(self, x);
                        settle(self, x);
                        save(self, x);
                        reply();
                      });
        });
      },
      [fail](caf::error& err) { fail("cannot list the org's devices", err); });
}

// The changed and unchanged devices' health over the bake window so far,
// as the current stage is judged (status shows the same).
std::pair<rollout_health, rollout_health>
health_of(rollout_ptr self, const rollout_record& x, const population& p) {
  std::map<std::string, device_window> window;
  for (auto& [id, t] : self->state.tracks)
    if (org_of(id) == x.status.org)
      window.emplace(id, t.window);
  auto k = static_cast<size_t>(x.status.stage);
  auto stage = k < x.status.stages.size() ? x.status.stages[k]
                                          : rollout_stage{};
  return stage_health(p.devices, x.pushed, stage, window, p.storage);
}

// Judges the bake that just ended: halt, next stage, or done.
void judge_stage(rollout_ptr self, const std::string& org) {
  auto& st = self->state;
  st.rollouts[org].status.phase = "pushing";
  self->request(st.cfg.store, store_timeout, devices_atom::value)
    .then(
      [self, org](device_infos& xs) {
        auto& st = self->state;
        auto& x = st.rollouts[org];
        std::tie(x.status.changed_health, x.status.unchanged_health)
          = health_of(self, x, population_of(xs, org));
        auto verdict = judge(x.status.changed_health,
                             x.status.unchanged_health, x.status.plan.margins);
        auto last = x.status.stage + 1
                    >= static_cast<int64_t>(x.status.stages.size());
        if (!verdict.empty()) {
          ++st.auto_halts;
          x.status.phase = "halted";
          x.status.reason = "halted by itself after stage "
                            + std::to_string(x.status.stage + 1) + " of "
                            + std::to_string(x.status.stages.size()) + ": "
                            + verdict;
          log_warning("rollout", "org '", org, "': ", x.status.reason);
          save(self, x);
          return;
        }
        if (x.status.reason == "halt requested") {
          settle(self, x);
          save(self, x);
          return;
        }
        if (last) {
          x.status.phase = "done";
          x.status.reason = "every stage done";
          save(self, x);
          return;
        }
        ++x.status.stage;
        x.status.reason.clear();
        push_stage(self, org, nullptr);
      },
      [self, org](caf::error& err) {
        // The store may be restarting: judged again at the next check.
        auto& x = self->state.rollouts[org];
        x.status.phase = "baking";
        self->state.last_error = "cannot list the devices: " + render(err);
      });
}

// Restores the settings each changed device had before the rollout.
void roll_back(rollout_ptr self, const std::string& org,
               promise_ptr rp) {
  auto& x = self->state.rollouts[org];
  x.status.phase = "pushing";
  // Every device read, pushed or not: a push whose answer was lost may
  // have changed it.
  std::vector<std::string> devices;
  for (auto& kv : x.previous)
    devices.push_back(kv.first);
  auto fields = x.status.plan.change.fields;
  each_device(self, devices,
              [self, org, fields](const std::string& id) {
                return settings_change{self->state.rollouts[org].previous[id],
                                       fields, false};
              },
              [self, org](const std::string& id, cloud_settings&) {
                self->state.rollouts[org].pushed.erase(id);
              },
              [self, org, rp, n = devices.size()](const caf::error& err) {
                auto& x = self->state.rollouts[org];
                if (err) {
                  // Kept: a second rollback sets them all again.
                  x.status.phase = "halted";
                  x.status.reason = "rollback failed: " + render(err);
                  x.status.changed = static_cast<int64_t>(x.pushed.size());
                } else {
                  x.previous.clear();
                  x.pushed.clear();
                  x.status.changed = 0;
                  x.status.phase = "rolled_back";
                  x.status.reason = "previous settings restored on "
                                    + std::to_string(n) + " device(s)";
                }
                save(self, x);
                rp->deliver(x.status);
              });
}

// The status; while baking, with the bake window's figures so far.
caf::result<rollout_status> current(rollout_ptr self, const std::string& org) {
  auto& st = self->state;
  auto i = st.rollouts.find(org);
  if (i == st.rollouts.end()) {
    rollout_status out;
    out.org = org;
    return out;
  }
  if (i->second.status.phase == "pushing") {
    // Progress: the devices whose push the store confirmed so far.
    auto out = i->second.status;
    out.changed = static_cast<int64_t>(i->second.pushed.size());
    return out;
  }
  if (i->second.status.phase != "baking")
    return i->second.status;
  auto rp = self->make_response_promise<rollout_status>();
  // The org's devices, tiers and storage, as the judgement takes them.
  self->request(st.cfg.store, store_timeout, devices_atom::value)
    .then(
      [self, org, rp](device_infos& xs) mutable {
        auto i = self->state.rollouts.find(org);
        if (i == self->state.rollouts.end()) {
          rp.deliver(rollout_status{});
          return;
        }
        auto out = i->second.status;
        std::tie(out.changed_health, out.unchanged_health)
          = health_of(self, i->second, population_of(xs, org));
        rp.deliver(std::move(out));
      },
      [self, org, rp](caf::error&) mutable {
        // The last judgement's figures, rather than no answer.
        auto i = self->state.rollouts.find(org);
        rp.deliver(i == self->state.rollouts.end() ? rollout_status{}
                                                   : i->second.status);
      });
  return rp;
}

caf::result<rollout_status> command(rollout_ptr self,
                                    const rollout_command& cmd) {
  auto& st = self->state;
  auto& org = cmd.org;
  auto i = st.rollouts.find(org);
  auto phase = i == st.rollouts.end() ? std::string{"none"}
                                      : i->second.status.phase;
  if (cmd.op != "start" && cmd.op != "status" && cmd.op != "halt"
      && cmd.op != "resume" && cmd.op != "rollback")
    return make_error(ec::bad_config, "rollout: unknown command '"
                                        + cmd.op.substr(0, 32)
                                        + "' (start, status, halt, resume, "
                                          "rollback)");
  if (cmd.op == "status")
    return current(self, org);
  if (cmd.op == "start") {
    if (under_way(phase))
      return make_error(ec::conflict, "org '" + org + "' has a rollout "
                                        + phase + "; halt and roll it back "
                                                  "or resume it first");
    if (auto err = check_rollout_start(cmd))
      return err;
    rollout_record x;
    x.status.org = org;
    x.status.plan = cmd;
    x.status.plan.change.create = false;
    x.status.started_ms = st.cfg.clock->now_ms();
    auto rp = std::make_shared<caf::typed_response_promise<rollout_status>>(
      self->make_response_promise<rollout_status>());
    st.rollouts[org] = x;
    st.rollouts[org].status.phase = "pushing";
    // Stages need the tiers present: ask the store first.
    self->request(st.cfg.store, store_timeout, devices_atom::value)
      .then(
        [self, org, rp](device_infos& xs) {
          auto& x = self->state.rollouts[org];
          auto p = population_of(xs, org);
          if (p.devices.empty()) {
            self->state.rollouts.erase(org);
            rp->deliver(make_error(ec::unknown_device,
                                   "org '" + org + "' has no devices the "
                                   "cloud has heard from"));
            return;
          }
          auto n = static_cast<int64_t>(p.devices.size());
          if (n > self->state.cfg.max_devices) {
            self->state.rollouts.erase(org);
            rp->deliver(make_error(ec::too_large,
                                   "org '" + org + "' has "
                                     + std::to_string(n)
                                     + " devices, more than "
                                       "rollout.max-devices"));
            return;
          }
          std::set<int64_t> tiers;
          for (auto& d : p.devices)
            tiers.insert(d.tier > 0 ? d.tier : -1);
          x.status.stages = plan_stages(x.status.plan, tiers);
          push_stage(self, org, rp);
        },
        [self, org, rp](caf::error& err) {
          self->state.rollouts.erase(org);
          rp->deliver(std::move(err));
        });
    return *rp;
  }
  if (phase == "none")
    return make_error(ec::bad_config, "org '" + org + "' has no rollout");
  auto& x = i->second;
  if (cmd.op == "halt") {
    if (phase == "baking") {
      x.status.phase = "halted";
      x.status.reason = "halted by the operator";
      save(self, x);
    } else if (phase == "pushing") {
      x.status.reason = "halt requested";
    } else if (phase != "halted") {
      return make_error(ec::bad_config, "org '" + org + "': the rollout is "
                                          + phase + ", nothing to halt");
    }
    return x.status;
  }
  if (phase == "pushing")
    return make_error(ec::conflict, "org '" + org + "': the rollout is "
                                      "pushing settings; try again");
  if (cmd.op == "resume") {
    if (phase != "halted")
      return make_error(ec::bad_config, "org '" + org + "': the rollout is "
                                          + phase + ", not halted");
    x.status.reason.clear();
    auto rp = std::make_shared<caf::typed_response_promise<rollout_status>>(
      self->make_response_promise<rollout_status>());
    push_stage(self, org, rp);
    return *rp;
  }
  // rollback
  {
    if (phase == "rolled_back")
      return x.status;
    auto rp = std::make_shared<caf::typed_response_promise<rollout_status>>(
      self->make_response_promise<rollout_status>());
    roll_back(self, org, rp);
    return *rp;
  }
  return x.status;
}

// The device's track, made on its first outcome while its org's rollout is
// under way (after a restart no push made it); null when none is watched.
rollout_track* track_of(rollout_ptr self, const std::string& device) {
  auto& st = self->state;
  if (auto t = st.tracks.find(device); t != st.tracks.end())
    return &t->second;
  auto r = st.rollouts.find(org_of(device));
  if (r == st.rollouts.end() || !under_way(r->second.status.phase))
    return nullptr;
  // Bounded: no org under way has more devices than this.
  if (st.tracks.size() >= static_cast<size_t>(st.cfg.max_devices)
                            * st.rollouts.size())
    return nullptr;
  return &st.tracks[device];
}

void outcome(rollout_ptr self, const sync_outcome& x) {
  auto& st = self->state;
  ++st.outcomes;
  auto t = track_of(self, x.device);
  if (!t) {
    ++st.outcomes_ignored;
    return;
  }
  auto& w = t->window;
  auto& last = t->last_sequence[x.stream];
  if (x.accepted) {
    ++w.accepted;
    w.bytes += std::max<int64_t>(x.bytes, 0);
    w.records += std::max<int64_t>(x.records, 0);
  } else {
    ++w.failed;
  }
  // A sequence skipped is a batch the cloud never got; the first one seen
  // only sets where counting starts.
  // Written so that no hostile sequence overflows.
  if (last > 0 && x.sequence > last && x.sequence - 1 > last)
    w.missing += std::min<int64_t>(x.sequence - 1 - last, 1'000'000);
  last = std::max(last, x.sequence);
}

void tick(rollout_ptr self) {
  auto& st = self->state;
  auto now = st.cfg.clock->now_ms();
  std::vector<std::string> due;
  for (auto& [org, x] : st.rollouts)
    if (x.status.phase == "baking" && now >= x.status.bake_ends_ms)
      due.push_back(org);
  for (auto& org : due)
    judge_stage(self, org);
  // Devices of orgs no longer under way are not watched.
  for (auto i = st.tracks.begin(); i != st.tracks.end();) {
    auto r = st.rollouts.find(org_of(i->first));
    if (r == st.rollouts.end() || !under_way(r->second.status.phase))
      i = st.tracks.erase(i);
    else
      ++i;
  }
}

} // namespace

rollout_actor::behavior_type
rollout(rollout_ptr self, rollout_config cfg) {
  auto err = validate(cfg);
  if (!err)
    err = check_parts(cfg);
  if (stop_on_bad_config(self, "rollout", err))
    return rollout_actor::behavior_type::make_empty_behavior();
  auto& st = self->state;
  st.cfg = std::move(cfg);
  auto loaded = st.cfg.book->load();
  if (!loaded) {
    log_error("rollout", "cannot load the rollouts: ", render(loaded.error()));
    self->quit(loaded.error());
    return rollout_actor::behavior_type::make_empty_behavior();
  }
  for (auto& x : *loaded) {
    auto org = x.status.org;
    st.rollouts[org] = std::move(x);
  }
  // After a restart: a push goes on where it was, a bake starts again (the
  // window's figures were in memory).
  for (auto& [org, x] : st.rollouts) {
    if (x.status.phase == "pushing") {
      push_stage(self, org, nullptr);
    } else if (x.status.phase == "baking") {
      open_window(self, x);
      save(self, x);
    }
  }
  self->delayed_send(self, st.cfg.clock->real(st.cfg.check_interval),
                     tick_atom::value);
  return {
    [self](rollout_atom, const rollout_command& cmd) {
      return command(self, cmd);
    },
    [self](outcome_atom, const sync_outcome& x) { outcome(self, x); },
    [self](tick_atom) {
      tick(self);
      // Only its own timer arms the next one; a nudge does not add a chain.
      if (self->current_sender().get() == self->ctrl())
        self->delayed_send(self,
                           self->state.cfg.clock->real(
                             self->state.cfg.check_interval),
                           tick_atom::value);
    },
    [self](stats_atom) {
      auto& st = self->state;
      actor_stats out;
      out.name = "rollout";
      int64_t active = 0;
      for (auto& kv : st.rollouts)
        active += under_way(kv.second.status.phase) ? 1 : 0;
      out.state = active > 0 ? std::to_string(active) + " under way" : "idle";
      out.counters["rollouts_under_way"] = active;
      out.counters["devices_watched"] = static_cast<int64_t>(st.tracks.size());
      out.counters["outcomes"] = st.outcomes;
      out.counters["outcomes_ignored"] = st.outcomes_ignored;
      out.counters["pushes"] = st.pushes;
      out.counters["push_failures"] = st.push_failures;
      out.counters["auto_halts"] = st.auto_halts;
      out.counters["save_failures"] = st.save_failures;
      return out;
    },
  };
}

} // namespace fleetd
