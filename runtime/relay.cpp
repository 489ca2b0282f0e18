#include "runtime/relay.hpp"

#include <functional>
#include <utility>

#include <caf/detail/behavior_impl.hpp>
#include <caf/message_view.hpp>

#include "messages/atoms.hpp"
#include "messages/error.hpp"
#include "runtime/logger.hpp"

namespace fleetd {

namespace {

using relay_ptr = caf::stateful_actor<relay_state>*;

// A response handler that takes any answer, value or error: the relay does
// not know its children's reply types.
class any_answer : public caf::detail::behavior_impl {
public:
  any_answer(relay_ptr self, std::function<void(caf::message)> f)
    : self_(self), f_(std::move(f)) {
    begin_ = nullptr;
    end_ = nullptr;
  }

  caf::match_case::result invoke(caf::detail::invoke_result_visitor&,
                                 caf::type_erased_tuple& xs) override {
    // Moved, not copied: a storage batch answer is megabytes at tier 1.
    auto* elem = self_->current_mailbox_element();
    if (elem != nullptr && &elem->content() == &xs)
      f_(elem->move_content_to_message());
    else
      f_(caf::message::copy(xs));
    return caf::match_case::match;
  }

private:
  relay_ptr self_;
  std::function<void(caf::message)> f_;
};

// Asks the target on the sender's behalf; the answer goes back through the
// promise, unless the target died first (see fail_requests).
caf::result<caf::message> ask(relay_ptr self, caf::message msg) {
  auto& st = self->state;
  auto key = ++st.next_request;
  st.requests.emplace(key, relay_state::pending{self->make_response_promise(),
                                                st.target.address()});
  auto hdl = self->request(st.target, caf::infinite, std::move(msg));
  self->add_multiplexed_response_handler(
    hdl.id(), caf::behavior{caf::detail::behavior_impl::pointer{
                caf::make_counted<any_answer>(self, [self, key](caf::message answer) {
                  auto& xs = self->state.requests;
                  auto i = xs.find(key);
                  if (i == xs.end())
                    return;
                  i->second.promise.deliver(std::move(answer));
                  xs.erase(i);
                })}});
  return caf::delegated<caf::message>{};
}

caf::result<caf::message> forward(relay_ptr self, caf::message_view& xs) {
  auto& st = self->state;
  bool request = self->current_mailbox_element()->mid.is_request();
  if (st.target && request)
    return ask(self, xs.move_content_to_message());
  if (st.target)
    return self->delegate(st.target, xs.move_content_to_message());
  if (request)
    return make_error(ec::unreachable, st.child + " is down (restarting)");
  // An error answer to a message that expects none would stop its sender.
  log_debug("relay", "dropped a message to ", st.child, ": it is down");
  return caf::delegated<caf::message>{};
}

// The requests the dead incarnation `who` never answered get an error now.
void fail_requests(relay_ptr self, const caf::actor_addr& who,
                   const caf::error& reason) {
  auto& st = self->state;
  for (auto i = st.requests.begin(); i != st.requests.end();) {
    if (i->second.asked != who) {
      ++i;
      continue;
    }
    i->second.promise.deliver(make_error(
      ec::unreachable, st.child + " died (" + render(reason) + ")"));
    i = st.requests.erase(i);
  }
}

void set_target(relay_ptr self, caf::actor next) {
  self->state.target = std::move(next);
  if (self->state.target)
    self->monitor(self->state.target);
}

} // namespace

caf::behavior relay(caf::stateful_actor<relay_state>* self, std::string child,
                    caf::actor target) {
  self->state.child = std::move(child);
  set_target(self, std::move(target));
  self->set_default_handler([self](caf::scheduled_actor*,
                                   caf::message_view& xs) {
    return forward(self, xs);
  });
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    fail_requests(self, dm.source, dm.reason);
    if (st.target && st.target.address() == dm.source) {
      st.target = caf::actor{};
      if (st.stopping)
        self->quit(dm.reason);
    }
  });
  self->set_exit_handler([self](caf::exit_msg& msg) {
    // Stops the running incarnation first; quits once it is down.
    auto& st = self->state;
    st.stopping = true;
    if (!st.target)
      self->quit(std::move(msg.reason));
    else
      self->send_exit(st.target, std::move(msg.reason));
  });
  return {
    [self](relay_atom, caf::actor next) { set_target(self, std::move(next)); },
  };
}

} // namespace fleetd
