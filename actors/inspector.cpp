#include "actors/inspector.hpp"

#include <memory>

#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "messages/error.hpp"
#include "runtime/config_check.hpp"
#include "runtime/logger.hpp"
#include "runtime/options.hpp"

namespace fleetd {

namespace {

constexpr auto ask_timeout = std::chrono::seconds(2);

} // namespace

caf::error validate(const inspector_config& x) {
  auto bad = [](std::string what) {
    return bad_config("inspector_config." + std::move(what));
  };
  if (x.role != "edge" && x.role != "cloud")
    return bad("role: '" + x.role + "' is not edge or cloud");
  if (x.node_id.empty())
    return bad("node_id: must not be empty");
  if (!x.clock)
    return bad("clock: must be set (uptime is read there)");
  for (auto& [name, hdl] : x.actors)
    if (name.empty() || !hdl)
      return bad("actors: '" + name + "' has no name or no handle");
  return caf::none;
}

namespace {

using inspector_ptr = inspector_actor::stateful_pointer<inspector_state>;

// Asks `dest` and hands its answer (or error) to the console that asked us.
template <class T, class Dest, class Timeout, class... Ts>
caf::result<T> forward(inspector_ptr self, const Dest& dest, Timeout timeout,
                       Ts&&... xs) {
  auto rp = self->make_response_promise<T>();
  self->request(dest, timeout, std::forward<Ts>(xs)...)
    .then([rp](T& x) mutable { rp.deliver(std::move(x)); },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
  return rp;
}

// What to show for actor `i` that did not answer: a stuck one (timeout)
// keeps its last figures, marked with their age (stale_ms).
actor_stats unanswered(inspector_ptr self, size_t i, const caf::error& err) {
  auto& st = self->state;
  actor_stats out;
  out.name = st.cfg.actors[i].first;
  out.state = "unresponsive: " + render(err);
  auto& [at, known] = st.last[i];
  if (at < 0 || err != caf::sec::request_timeout)
    return out;
  auto age = st.cfg.clock->now_ms() - at;
  out = known;
  out.state = "unresponsive: " + render(err) + "; last answer "
              + std::to_string(age) + " ms ago: " + known.state;
  out.counters["stale_ms"] = age;
  return out;
}

// Every registered actor's statistics, in registration order; an actor that
// does not answer in time is listed as unresponsive.
caf::result<node_status> gather_status(inspector_ptr self) {
  auto& st = self->state;
  auto out = std::make_shared<node_status>();
  out->role = st.cfg.role;
  out->node_id = st.cfg.node_id;
  out->version = fleetd_version();
  out->uptime_ms = st.cfg.clock->now_ms() - st.started_ms;
  out->started_ms = st.started_ms;
  out->actors.resize(st.cfg.actors.size());
  out->process = read_process_figures();
  if (st.cfg.runtime) {
    // Its own row: the one actor that answers here rather than being asked.
    actor_stats me;
    me.name = "inspector";
    me.state = "running";
    me.runtime = st.cfg.runtime->read("inspector");
    out->actors.push_back(std::move(me));
  }
  if (st.cfg.actors.empty())
    return *out;
  st.last.resize(st.cfg.actors.size(), {-1, actor_stats{}});
  auto rp = self->make_response_promise<node_status>();
  auto pending = std::make_shared<size_t>(st.cfg.actors.size());
  for (size_t i = 0; i < st.cfg.actors.size(); ++i) {
    auto done = [self, out, pending, rp, i](actor_stats stats) mutable {
      // Read after the answer (or its absence): a stuck actor's mailbox
      // depth shows even when it cannot answer.
      if (auto& reg = self->state.cfg.runtime)
        stats.runtime = reg->read(self->state.cfg.actors[i].first, 1);
      out->actors[i] = std::move(stats);
      if (--*pending == 0)
        rp.deliver(*out);
    };
    self->request(st.cfg.actors[i].second, ask_timeout, stats_atom::value)
      .then(
        [self, done, i](actor_stats& stats) mutable {
          self->state.last[i] = {self->state.cfg.clock->now_ms(), stats};
          done(std::move(stats));
        },
        [self, done, i](caf::error& err) mutable {
          done(unanswered(self, i, err));
        });
  }
  return rp;
}

} // namespace

inspector_actor::behavior_type
inspector(inspector_actor::stateful_pointer<inspector_state> self,
          inspector_config cfg) {
  if (stop_on_bad_config(self, "inspector", validate(cfg)))
    return inspector_actor::behavior_type::make_empty_behavior();
  self->state.cfg = std::move(cfg);
  self->state.started_ms = self->state.cfg.clock->now_ms();
  self->set_exit_handler([self](caf::exit_msg& msg) {
    // Only this process may stop the inspector; a console peer may not.
    if (msg.source && msg.source.node() != self->node()) {
      log_warning("inspector", "ignored exit message from a remote peer");
      return;
    }
    self->quit(msg.reason);
  });
  self->set_error_handler([](caf::error& err) {
    log_debug("inspector", "ignored error message: ", render(err));
  });
  return {
    [self](status_atom) { return gather_status(self); },
    [self](devices_atom) -> caf::result<device_infos> {
      auto& st = self->state;
      if (!st.cfg.devices)
        return device_infos{};
      return forward<device_infos>(self, st.cfg.devices, ask_timeout,
                                   devices_atom::value);
    },
    [self](config_atom, const std::string& device,
           const settings_change& x) -> caf::result<cloud_settings> {
      auto& st = self->state;
      if (!st.cfg.devices)
        return make_error(ec::bad_config, "only a cloud node holds device "
                                          "settings");
      if (device.empty())
        return make_error(ec::bad_config, "config: no device named");
      return forward<cloud_settings>(
        self, caf::actor_cast<cloud_store_actor>(st.cfg.devices), ask_timeout,
        config_atom::value, device, x);
    },
    [self](tenancy_atom,
           const tenancy_command& cmd) -> caf::result<tenancy_answer> {
      auto& st = self->state;
      if (!st.cfg.tenancy)
        return make_error(ec::bad_config, "only a cloud node holds orgs, "
                                          "devices and keys");
      return forward<tenancy_answer>(
        self, caf::actor_cast<tenancy_actor>(st.cfg.tenancy), ask_timeout,
        tenancy_atom::value, cmd);
    },
    [self](rollout_atom,
           const rollout_command& cmd) -> caf::result<rollout_status> {
      auto& st = self->state;
      if (!st.cfg.rollout)
        return make_error(ec::bad_config, "only a cloud node runs rollouts");
      // A rollout's pushes take a while on a large org.
      return forward<rollout_status>(
        self, caf::actor_cast<rollout_actor>(st.cfg.rollout),
        std::chrono::seconds(60), rollout_atom::value, cmd);
    },
    [self](debug_atom, const std::string& what) -> caf::result<debug_report> {
      auto& st = self->state;
      auto i = st.cfg.debug.find(what);
      // "config get KEY", "sync now 30000": the subject, then its argument.
      for (auto end = what.rfind(' '); i == st.cfg.debug.end()
                                       && end != std::string::npos && end > 0;
           end = what.rfind(' ', end - 1))
        i = st.cfg.debug.find(what.substr(0, end));
      if (i == st.cfg.debug.end())
        return make_error(ec::bad_config, "this node has no '" + what
                                            + "' diagnostics");
      return forward<debug_report>(self, i->second, std::chrono::seconds(60),
                                   debug_atom::value, what);
    },
    [self](delivery_atom, const std::string& device,
           int64_t since_ms) -> caf::result<delivery_rows> {
      auto& st = self->state;
      if (!st.cfg.devices)
        return delivery_rows{};
      return forward<delivery_rows>(
        self, caf::actor_cast<cloud_store_actor>(st.cfg.devices), ask_timeout,
        delivery_atom::value, device, since_ms);
    },
    [self](report_atom, std::string& name, caf::actor& hdl) {
      // The console's guard lets no peer send this; check anyway.
      auto src = self->current_sender();
      if (!hdl || !src || src->node() != self->node())
        return;
      self->state.cfg.actors.emplace_back(std::move(name), std::move(hdl));
    },
  };
}

} // namespace fleetd
