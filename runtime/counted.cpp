#include "runtime/counted.hpp"

#include <caf/behavior.hpp>
#include <caf/detail/behavior_impl.hpp>
#include <caf/detail/invoke_result_visitor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/make_counted.hpp>
#include <caf/scheduled_actor.hpp>

#include "messages/error.hpp"

namespace fleetd::detail {

namespace {

// Passes every result on and counts the errors among them.
class error_counter : public caf::detail::invoke_result_visitor {
public:
  error_counter(caf::detail::invoke_result_visitor& inner, actor_counters& c)
    : inner_(inner), c_(c) {
    // nop
  }

  void operator()() override {
    inner_();
  }

  void operator()(caf::error& x) override {
    if (x)
      c_.failed(render(x));
    inner_(x);
  }

  void operator()(caf::message& x) override {
    inner_(x);
  }

  void operator()(const caf::none_t& x) override {
    inner_(x);
  }

private:
  caf::detail::invoke_result_visitor& inner_;
  actor_counters& c_;
};

// The actor's own behavior, its results seen by an error_counter.
class counting_behavior : public caf::detail::behavior_impl {
public:
  counting_behavior(caf::behavior inner, std::shared_ptr<actor_counters> c)
    : caf::detail::behavior_impl(inner.timeout()),
      inner_(std::move(inner)),
      c_(std::move(c)) {
    begin_ = nullptr;
    end_ = nullptr;
  }

  caf::match_case::result invoke(caf::detail::invoke_result_visitor& f,
                                 caf::type_erased_tuple& xs) override {
    error_counter g{f, *c_};
    return inner_.as_behavior_impl()->invoke(g, xs);
  }

  caf::match_case::result
  invoke_empty(caf::detail::invoke_result_visitor& f) override {
    error_counter g{f, *c_};
    return inner_.as_behavior_impl()->invoke_empty(g);
  }

  void handle_timeout() override {
    inner_.handle_timeout();
  }

private:
  caf::behavior inner_;
  std::shared_ptr<actor_counters> c_;
};

} // namespace

void count_errors(caf::scheduled_actor* self,
                  const std::shared_ptr<actor_counters>& c) {
  auto& stack = self->bhvr_stack();
  if (stack.empty())
    return;
  auto& current = stack.back();
  caf::behavior wrapped{caf::detail::behavior_impl::pointer{
    caf::make_counted<counting_behavior>(std::move(current), c)}};
  current = std::move(wrapped);
}

void watch_exit(caf::abstract_actor* self, std::shared_ptr<actor_counters> c,
                std::shared_ptr<mailbox_gauge> g) {
  self->attach_functor([c, g](const caf::error& reason) {
    bool orderly = !reason || reason == caf::exit_reason::normal
                   || reason == caf::exit_reason::user_shutdown;
    c->end_incarnation(g.get(), orderly ? std::string{}
                                        : "exited: " + render(reason));
  });
}

} // namespace fleetd::detail
