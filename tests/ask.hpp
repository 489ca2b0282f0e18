#pragma once

// One request from a test to an actor, waited for.

#include <chrono>
#include <utility>

#include <caf/scoped_actor.hpp>
#include <doctest/doctest.h>

#include "messages/error.hpp"

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

} // namespace fleetd::test
