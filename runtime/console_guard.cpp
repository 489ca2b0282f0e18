#include "runtime/console_guard.hpp"

#include <caf/actor_cast.hpp>
#include <caf/make_actor.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/type_erased_tuple.hpp>

#include "runtime/logger.hpp"

namespace fleetd {

namespace {

template <class... Ins, class Out>
bool matches(const caf::type_erased_tuple& msg,
             caf::typed_mpi<caf::detail::type_list<Ins...>, Out>*) {
  return msg.template match_elements<Ins...>();
}

template <class... Sigs>
bool matches_any(const caf::type_erased_tuple& msg,
                 caf::detail::type_list<Sigs...>) {
  return (matches(msg, static_cast<Sigs*>(nullptr)) || ...);
}

// The inspector's requests (its interface, so a new one passes too), and
// nothing else: no exit, error, link or down message.
bool is_console_request(const caf::type_erased_tuple& msg) {
  return matches_any(msg, inspector_actor::signatures{});
}

} // namespace

console_guard::console_guard(caf::actor_config& cfg, inspector_actor inspector)
  : caf::monitorable_actor(cfg), inspector_(std::move(inspector)) {
}

void console_guard::enqueue(caf::mailbox_element_ptr what,
                            caf::execution_unit* host) {
  if (what && is_console_request(what->content())) {
    caf::actor_cast<caf::abstract_actor*>(inspector_)->enqueue(std::move(what),
                                                                host);
    return;
  }
  ++dropped_;
  log_warning_limited("console", "dropped",
                      "dropped a console message that is no request (",
                      dropped_.load(), " so far)");
}

std::set<std::string> console_guard::message_types() const {
  return caf::actor_cast<caf::abstract_actor*>(inspector_)->message_types();
}

caf::strong_actor_ptr spawn_console_guard(caf::actor_system& sys,
                                          const inspector_actor& inspector) {
  caf::actor_config cfg;
  return caf::make_actor<console_guard, caf::strong_actor_ptr>(
    sys.next_actor_id(), sys.node(), &sys, cfg, inspector);
}

} // namespace fleetd
