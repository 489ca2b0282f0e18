#pragma once

#include <atomic>
#include <cstdint>

#include <caf/actor_system.hpp>
#include <caf/monitorable_actor.hpp>

#include "messages/interfaces.hpp"

namespace fleetd {

/// What the console publishes in place of the inspector. It has no mailbox
/// and no behavior: each message that matches the inspector's interface is
/// handed on with its sender, anything else (exit messages of every reason,
/// `kill` included, errors, links) is dropped and counted. So no peer can
/// stop the console, and the inspector sees only requests it answers.
class console_guard : public caf::monitorable_actor {
public:
  console_guard(caf::actor_config& cfg, inspector_actor inspector);

  void enqueue(caf::mailbox_element_ptr what, caf::execution_unit* host) override;

  std::set<std::string> message_types() const override;

  /// Messages dropped so far.
  int64_t dropped() const {
    return dropped_;
  }

private:
  inspector_actor inspector_;
  std::atomic<int64_t> dropped_{0};
};

/// Spawns a guard for `inspector`.
caf::strong_actor_ptr spawn_console_guard(caf::actor_system& sys,
                                          const inspector_actor& inspector);

} // namespace fleetd
