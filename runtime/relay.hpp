#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <caf/actor.hpp>
#include <caf/behavior.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>

namespace fleetd {

struct relay_state {
  /// Whom the relay stands for (in errors and logs).
  std::string child;
  /// The running incarnation; none while it is down.
  caf::actor target;
  /// Requests forwarded and not answered yet, with the incarnation asked.
  struct pending {
    caf::response_promise promise;
    caf::actor_addr asked;
  };
  std::map<uint64_t, pending> requests;
  uint64_t next_request = 0;
  bool stopping = false;
  static inline const char* name = "relay";
};

/// The stable handle of a supervised actor: whoever holds it reaches every
/// incarnation. Forwards each message to the current one; the relay asks on
/// a request's behalf and hands the answer back, so when the incarnation dies
/// its unanswered requests get ec::unreachable at once instead of waiting for
/// their timeouts. While none runs, a request gets ec::unreachable naming
/// the actor and an asynchronous message is dropped. The supervisor alone sets
/// the target, with (relay_atom, actor). An exit message stops the
/// incarnation and waits for it, so stopping relays in reverse order stops
/// the actors behind them in that order.
caf::behavior relay(caf::stateful_actor<relay_state>* self, std::string child,
                    caf::actor target);

} // namespace fleetd
