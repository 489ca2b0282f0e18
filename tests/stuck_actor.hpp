#pragma once

// An actor that blocks its thread in its first message until released: a
// stuck actor whose mailbox fills up, as a hung disk or network call does.

#include <atomic>
#include <future>
#include <memory>

#include <caf/behavior.hpp>
#include <caf/event_based_actor.hpp>

namespace fleetd::test {

/// Where the stuck actor says it is in its handler and waits to go on.
struct stuck_gate {
  std::promise<void> entered;
  std::promise<void> release;
  std::atomic<bool> first{true};
};

/// Spawn detached (only its own thread waits); takes int64_t messages.
inline caf::behavior stuck(caf::event_based_actor*,
                           std::shared_ptr<stuck_gate> g) {
  return {
    [g](int64_t) {
      if (!g->first.exchange(false))
        return;
      g->entered.set_value();
      g->release.get_future().wait();
    },
  };
}

} // namespace fleetd::test
