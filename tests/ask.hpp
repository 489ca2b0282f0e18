#pragma once

// One request from a test to an actor, waited for.

#include <chrono>
#include <utility>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <doctest/doctest.h>

#include "messages/error.hpp"
#include "messages/register.hpp"

namespace fleetd::test {

/// Asks `hdl` and returns its answer of type T; an error fails the check
/// and gives a default T.
template <class T, class Handle, class... Ts>
T ask(caf::scoped_actor& self, const Handle& hdl,
      std::chrono::milliseconds timeout, Ts&&... xs) {
  T out{};
  self->request(hdl, timeout, std::forward<Ts>(xs)...)
    .receive([&](T& x) { out = std::move(x); },
             [&](caf::error& err) {
               FAIL_CHECK("request failed: " << render(err));
             });
  return out;
}

/// Spawns `fn(cfg)` and returns the reason it stopped with: an actor spawned
/// with a config its validate() refuses stops at once with that error.
template <class Fn, class Config>
caf::error exit_reason_of(Fn fn, Config cfg) {
  caf::actor_system_config sys_cfg;
  register_messages(sys_cfg);
  caf::actor_system sys{sys_cfg};
  caf::scoped_actor self{sys};
  auto hdl = sys.spawn(fn, std::move(cfg));
  self->monitor(hdl);
  caf::error out;
  self->receive([&](caf::down_msg& msg) { out = std::move(msg.reason); });
  return out;
}

} // namespace fleetd::test
