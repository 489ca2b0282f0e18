#include "runtime/supervisor.hpp"

#include <memory>

#include <caf/exit_reason.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "runtime/config_check.hpp"
#include "runtime/logger.hpp"
#include "runtime/options.hpp"
#include "runtime/actor_counters.hpp"
#include "runtime/relay.hpp"

namespace fleetd {

caf::actor supervisor_config::add(caf::actor_system& sys, std::string name,
                                  bool essential, child_factory make) {
  auto first = make(sys);
  if (!first)
    log_error("supervisor", name, " cannot start: ", render(first.error()));
  auto hdl = sys.spawn(relay, name, first ? *first : caf::actor{});
  if (registry)
    registry->alias(hdl.id(), name);
  children.push_back(supervised_child{
    std::move(name), essential, std::move(make), hdl,
    first ? *first : caf::actor{}, first ? caf::error{} : first.error()});
  return hdl;
}

caf::error validate(const supervisor_config& x) {
  if (auto err = validate(x.limits))
    return err;
  if (!x.clock)
    return bad_config("supervisor_config.clock: must be set");
  for (auto& c : x.children)
    if (c.name.empty() || !c.make || !c.relay)
      return bad_config("supervisor_config.children: '" + c.name
                        + "' was not added with add()");
  return caf::none;
}

namespace {

using supervisor_ptr = supervisor_actor::stateful_pointer<supervisor_state>;
using child = supervisor_state::child;

// How long an essential actor may take to answer the health check.
constexpr auto answer_timeout = std::chrono::seconds(2);

bool orderly(const caf::error& reason) {
  return reason == caf::exit_reason::normal
         || reason == caf::exit_reason::user_shutdown;
}

// Counts a death (or a failed start) and schedules the next start.
void on_death(supervisor_ptr self, size_t i, const caf::error& reason) {
  auto& st = self->state;
  auto& c = st.children[i];
  c.current = caf::actor{};
  // The relay is dynamically typed: a typed actor may only anon_send to it.
  caf::anon_send(c.spec.relay, relay_atom::value, caf::actor{});
  if (orderly(reason)) {
    c.stopped = true;
    log_info("supervisor", c.spec.name, " stopped (", render(reason),
             "): not restarted");
    return;
  }
  auto now = st.clock->steady_ms();
  auto delay = c.policy.died(now);
  c.restart_at_ms = now + delay.count();
  ++c.generation;
  log_warning("supervisor", c.spec.name, " died (", render(reason),
              "): death ", c.policy.deaths(), ", ",
              c.policy.recent_deaths(now), " within supervisor.window",
              c.policy.too_often(now) ? " (restarting too often)" : "",
              "; restarting in ", to_duration_text(delay));
  self->delayed_send(self, st.clock->real(delay), restart_atom::value,
                     static_cast<int64_t>(i), c.generation);
}

void restart(supervisor_ptr self, size_t i) {
  auto& c = self->state.children[i];
  auto next = c.spec.make(self->system());
  if (!next) {
    on_death(self, i, next.error());
    return;
  }
  c.current = std::move(*next);
  self->monitor(c.current);
  c.policy.started(self->state.clock->steady_ms());
  caf::anon_send(c.spec.relay, relay_atom::value, c.current);
  log_info("supervisor", c.spec.name, " restarted (restart ",
           c.policy.restarts(), ")");
}

// What keeps an essential child from being healthy, without asking it; empty
// when nothing does.
std::string trouble(const child& c, int64_t now) {
  if (c.stopped)
    return c.spec.name + " is stopped";
  if (!c.current)
    return c.spec.name + " is down (restart in "
           + to_duration_text(std::chrono::milliseconds{
             std::max<int64_t>(0, c.restart_at_ms - now)})
           + ")";
  if (c.policy.too_often(now))
    return c.spec.name + " is restarting too often ("
           + std::to_string(c.policy.recent_deaths(now))
           + " deaths within supervisor.window)";
  return {};
}

// Every essential child's trouble, joined; empty when none has any.
std::string troubles(const supervisor_state& st) {
  std::string out;
  auto now = st.clock->steady_ms();
  for (auto& c : st.children)
    if (c.spec.essential) {
      auto why = trouble(c, now);
      if (!why.empty())
        out += (out.empty() ? "" : "; ") + why;
    }
  return out;
}

// "ok" when no essential child is in trouble and each answers in time.
caf::result<std::string> health(supervisor_ptr self) {
  auto why = troubles(self->state);
  if (!why.empty())
    return make_error(ec::unreachable, why);
  auto rp = self->make_response_promise<std::string>();
  auto pending = std::make_shared<size_t>(1);
  auto failed = std::make_shared<std::string>();
  auto done = [rp, pending, failed]() mutable {
    if (--*pending > 0)
      return;
    if (failed->empty())
      rp.deliver(std::string{"ok"});
    else
      rp.deliver(make_error(ec::unreachable, *failed));
  };
  for (auto& c : self->state.children) {
    if (!c.spec.essential)
      continue;
    ++*pending;
    self->request(c.current, answer_timeout, stats_atom::value)
      .then([done](actor_stats&) mutable { done(); },
            [done, failed, name = c.spec.name](caf::error& err) mutable {
              *failed += (failed->empty() ? "" : "; ") + name
                         + " does not answer: " + render(err);
              done();
            });
  }
  done();
  return rp;
}

actor_stats stats(const supervisor_state& st) {
  actor_stats out;
  out.name = "supervisor";
  auto why = troubles(st);
  out.state = why.empty() ? "healthy" : "unhealthy: " + why;
  for (auto& c : st.children) {
    out.counters[c.spec.name + ".deaths"] = c.policy.deaths();
    out.counters[c.spec.name + ".restarts"] = c.policy.restarts();
  }
  return out;
}

// The test hook: "kill NAME" ends the child as a fault would.
caf::result<debug_report> kill_child(supervisor_ptr self,
                                     const std::string& what) {
  const std::string prefix = "kill ";
  for (auto& c : self->state.children)
    if (what == prefix + c.spec.name) {
      if (!c.current)
        return make_error(ec::unreachable, c.spec.name + " is down already");
      log_warning("supervisor", "test hook: killing ", c.spec.name);
      self->send_exit(c.current, caf::exit_reason::kill);
      auto text = "killed " + c.spec.name + "\n";
      return debug_report{text, "{\"killed\":\"" + c.spec.name + "\"}"};
    }
  return make_error(ec::bad_config, "no actor to kill in '" + what + "'");
}

} // namespace

supervisor_actor::behavior_type
supervisor(supervisor_ptr self, supervisor_config cfg) {
  if (stop_on_bad_config(self, "supervisor", validate(cfg)))
    return supervisor_actor::behavior_type::make_empty_behavior();
  auto& st = self->state;
  st.clock = cfg.clock;
  for (auto& spec : cfg.children) {
    st.children.push_back(child{spec, restart_policy{cfg.limits}, spec.first});
    if (!spec.first) {
      on_death(self, st.children.size() - 1, spec.first_error);
      continue;
    }
    st.children.back().policy.started(st.clock->steady_ms());
    self->monitor(spec.first);
  }
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& xs = self->state.children;
    for (size_t i = 0; i < xs.size(); ++i)
      if (xs[i].current && xs[i].current.address() == dm.source)
        on_death(self, i, dm.reason);
  });
  return {
    [self](health_atom) { return health(self); },
    [self](restart_atom, int64_t index, int64_t generation) {
      auto& xs = self->state.children;
      if (index < 0 || static_cast<size_t>(index) >= xs.size())
        return;
      auto& c = xs[static_cast<size_t>(index)];
      if (c.generation == generation && !c.current && !c.stopped)
        restart(self, static_cast<size_t>(index));
    },
    [self](debug_atom, const std::string& what) {
      return kill_child(self, what);
    },
    [self](stats_atom) { return stats(self->state); },
  };
}

void add_kill_hooks(std::map<std::string, caf::actor>& debug,
                    const supervisor_config& cfg, const supervisor_actor& sup) {
  std::string names;
  for (auto& c : cfg.children) {
    debug["kill " + c.name] = caf::actor_cast<caf::actor>(sup);
    names += " " + c.name;
  }
  log_warning("node", "node.test-hooks = true: the console may kill these "
                      "actors (fleetctl debug kill NAME):",
              names);
}

} // namespace fleetd
