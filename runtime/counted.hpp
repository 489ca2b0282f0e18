#pragma once

// Include only where actors are spawned (node mains, spawn helpers): the
// template below makes one actor class per actor type counted.

#include <memory>
#include <string>
#include <utility>

#include <caf/actor_cast.hpp>
#include <caf/actor_config.hpp>
#include <caf/actor_system.hpp>
#include <caf/detail/init_fun_factory.hpp>
#include <caf/infer_handle.hpp>
#include <caf/invoke_message_result.hpp>
#include <caf/mailbox_element.hpp>
#include <caf/resumable.hpp>

#include "runtime/actor_counters.hpp"

namespace fleetd {

namespace detail {

/// The error a response carries (none for other contents).
caf::error error_answer(caf::mailbox_element& x);

/// Counts error answer `err` from `answerer` that actor `self` (counters
/// `c`) received: on the answerer when it is measured in the same registry,
/// else on `self` as a failed request.
void count_error_answer(actor_counters& c, caf::actor_id self,
                        caf::actor_id answerer, const caf::error& err);

/// Makes `self` known by id to its registry's directory, and ends
/// incarnation `g` in `c` when `self` exits (an abnormal reason counted).
void watch_exit(caf::abstract_actor* self, std::shared_ptr<actor_counters> c,
                std::shared_ptr<mailbox_gauge> g);

} // namespace detail

/// Actor class `Impl` (what CAF infers from an actor function) measured by
/// the runtime: messages in and out of its mailbox, handling time (one
/// message in actor_counters::sample_every, which also stamps the time of
/// the last message), error answers (seen where they arrive: wrapping the
/// behavior to see them where they are made cost ~5 % of an empty handler).
template <class Impl>
class counted_actor final : public Impl {
public:
  counted_actor(caf::actor_config& cfg, std::shared_ptr<actor_counters> c)
    : Impl(cfg),
      counters_(std::move(c)),
      gauge_(counters_->begin_incarnation()) {
    // nop
  }

  using Impl::enqueue;

  void enqueue(caf::mailbox_element_ptr x, caf::execution_unit* eu) override {
    gauge_->count_in();
    Impl::enqueue(std::move(x), eu);
  }

  using Impl::consume;

  caf::invoke_message_result consume(caf::mailbox_element& x) override {
    // Error answers are rare: the common path tests one bit.
    if (x.mid.is_response())
      return consume_response(x);
    return counted_consume(x);
  }

  const std::shared_ptr<actor_counters>& counters() const {
    return counters_;
  }

  const std::shared_ptr<mailbox_gauge>& gauge() const {
    return gauge_;
  }

private:
  caf::invoke_message_result counted_consume(caf::mailbox_element& x) {
    // One writer (this actor's thread): loads and stores, no locked adds.
    auto& g = *gauge_;
    auto relaxed = std::memory_order_relaxed;
    g.dequeued.store(g.dequeued.load(relaxed) + 1, relaxed);
    caf::invoke_message_result result;
    if (--countdown_ > 0) {
      result = Impl::consume(x);
    } else {
      countdown_ = counters_->sample_every;
      auto begin = counters_->clock();
      result = Impl::consume(x);
      counters_->timed_since(begin);
    }
    // A skipped message stays in the mailbox and comes back later.
    if (result != caf::invoke_message_result::skipped)
      g.handled.store(g.handled.load(relaxed) + 1, relaxed);
    else
      g.dequeued.store(g.dequeued.load(relaxed) - 1, relaxed);
    return result;
  }

  caf::invoke_message_result consume_response(caf::mailbox_element& x) {
    auto answer = detail::error_answer(x);
    if (!answer)
      return counted_consume(x);
    // Read before the handler, which may take the message apart.
    auto answerer = x.sender ? x.sender->id() : caf::actor_id{0};
    auto result = counted_consume(x);
    // Dropped: nobody waits for it, e.g. the timeout of a request answered.
    if (result == caf::invoke_message_result::consumed)
      detail::count_error_answer(*counters_, this->id(), answerer, answer);
    return result;
  }

  std::shared_ptr<actor_counters> counters_;
  std::shared_ptr<mailbox_gauge> gauge_;
  /// Messages until the next timed one.
  uint32_t countdown_ = 1;
};

/// sys.spawn<Os>(fun, xs...) with the actor measured under `name` in `reg`
/// (restarted incarnations of the same name count in the same place); with
/// no registry (statistics off) it is sys.spawn itself, at no cost.
template <caf::spawn_options Os = caf::no_spawn_options, class F, class... Ts>
caf::infer_handle_from_fun_t<F>
spawn_counted(caf::actor_system& sys, stats_registry* reg,
              const std::string& name, F fun, Ts&&... xs) {
  if (!reg)
    return sys.spawn<Os>(std::move(fun), std::forward<Ts>(xs)...);
  using impl = caf::infer_impl_from_fun_t<F>;
  using counted = counted_actor<impl>;
  caf::actor_config cfg;
  caf::detail::init_fun_factory<impl, F> fac;
  cfg.init_fun = fac(std::move(fun), std::forward<Ts>(xs)...);
  auto hdl = sys.spawn_impl<counted, Os>(cfg, reg->slot(name));
  auto* self = caf::actor_cast<caf::abstract_actor*>(hdl);
  auto* ptr = static_cast<counted*>(self);
  detail::watch_exit(self, ptr->counters(), ptr->gauge());
  return hdl;
}

} // namespace fleetd
