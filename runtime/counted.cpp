#include "runtime/counted.hpp"

#include <caf/exit_reason.hpp>
#include <caf/type_erased_tuple.hpp>

#include "messages/error.hpp"

namespace fleetd::detail {

caf::error error_answer(caf::mailbox_element& x) {
  auto& xs = x.content();
  if (!xs.match_elements<caf::error>())
    return {};
  return xs.get_as<caf::error>(0);
}

void count_error_answer(actor_counters& c, caf::actor_id self,
                        caf::actor_id answerer, const caf::error& err) {
  auto text = render(err);
  // The actor that answered counts it, when it is one of this node's.
  if (answerer != 0 && answerer != self && c.directory)
    if (auto theirs = c.directory->find(answerer)) {
      theirs->failed(text);
      return;
    }
  // A timeout, or an answer from outside the node's measured actors.
  c.failed("request failed: " + text);
}

void watch_exit(caf::abstract_actor* self, std::shared_ptr<actor_counters> c,
                std::shared_ptr<mailbox_gauge> g) {
  if (c->directory)
    c->directory->bind(self->id(), c);
  self->attach_functor([c, g](const caf::error& reason) {
    bool orderly = !reason || reason == caf::exit_reason::normal
                   || reason == caf::exit_reason::user_shutdown;
    c->end_incarnation(g.get(), orderly ? std::string{}
                                        : "exited: " + render(reason));
  });
}

} // namespace fleetd::detail
