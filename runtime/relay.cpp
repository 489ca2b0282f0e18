#include "runtime/relay.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/message_view.hpp>

#include "messages/atoms.hpp"
#include "messages/error.hpp"
#include "runtime/logger.hpp"

namespace fleetd {

namespace {

using relay_ptr = caf::stateful_actor<relay_state>*;

caf::result<caf::message> forward(relay_ptr self, caf::message_view& xs) {
  auto& st = self->state;
  if (st.target)
    return self->delegate(st.target, xs.move_content_to_message());
  if (self->current_mailbox_element()->mid.is_request())
    return make_error(ec::unreachable, st.child + " is down (restarting)");
  // An error answer to a message that expects none would stop its sender.
  log_debug("relay", "dropped a message to ", st.child, ": it is down");
  return caf::delegated<caf::message>{};
}

// Stops the running incarnation with `reason`, then the relay itself.
void stop(relay_ptr self, caf::error reason) {
  auto target = self->state.target;
  if (!target) {
    self->quit(std::move(reason));
    return;
  }
  self->set_down_handler([self, target, reason](caf::down_msg& dm) {
    if (dm.source == target.address())
      self->quit(reason);
  });
  self->monitor(target);
  self->send_exit(target, reason);
}

} // namespace

caf::behavior relay(caf::stateful_actor<relay_state>* self, std::string child,
                    caf::actor target) {
  self->state.child = std::move(child);
  self->state.target = std::move(target);
  self->set_default_handler([self](caf::scheduled_actor*,
                                   caf::message_view& xs) {
    return forward(self, xs);
  });
  self->set_exit_handler(
    [self](caf::exit_msg& msg) { stop(self, std::move(msg.reason)); });
  return {
    [self](relay_atom, caf::actor next) {
      self->state.target = std::move(next);
    },
  };
}

} // namespace fleetd
