#pragma once

// Include only where actors are spawned (node mains, spawn helpers): the
// template below makes one actor class per actor type counted.

#include <atomic>
#include <memory>
#include <type_traits>
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

/// Actor class `Impl` whose senders count what they put in its mailbox:
/// for actors with a thread of their own, which may block in a handler.
template <class Impl>
class counting_in : public Impl {
public:
  using Impl::Impl;

  using Impl::enqueue;

  void enqueue(caf::mailbox_element_ptr x, caf::execution_unit* eu) override {
    // Set before the handle exists: no message can come earlier.
    in_->fetch_add(1, std::memory_order_relaxed);
    Impl::enqueue(std::move(x), eu);
  }

protected:
  std::atomic<uint64_t>* in_ = nullptr;
};

/// Actor class `Impl` (what CAF infers from an actor function) measured by
/// the runtime: messages it takes in hand, how many wait in its mailbox
/// (counted by the senders when `CountIn`, else looked at by the actor
/// itself on every timed message and every request or answer, the
/// inspector's stats ask among them), handling time (one message in
/// actor_counters::sample_every, which also stamps the time of the last
/// message) and error answers (seen where they arrive: wrapping the behavior
/// to see them where they are made cost ~5 % of an empty handler).
template <class Impl, bool CountIn = false>
class counted_actor final
  : public std::conditional_t<CountIn, counting_in<Impl>, Impl> {
public:
  using super = std::conditional_t<CountIn, counting_in<Impl>, Impl>;

  counted_actor(caf::actor_config& cfg, std::shared_ptr<actor_counters> c)
    : super(cfg),
      counters_(std::move(c)),
      gauge_(counters_->begin_incarnation(CountIn)) {
    if constexpr (CountIn)
      this->in_ = &gauge_->in;
  }

  using super::consume;

  caf::invoke_message_result consume(caf::mailbox_element& x) override {
    // The common path: an untimed one-way message, everything else out of
    // line so this path saves no registers.
    if (!x.mid.is_async() || --countdown_ == 0)
      return consume_rare(x);
    if constexpr (!CountIn) {
      // Counted by the countdown alone, published by the next rare message
      // (the inspector's stats ask is one) or at exit. A tail call: a
      // message skipped (an await or a skip handler; no fleetd actor has
      // one) counts again when it is handled.
      return super::consume(x);
    } else {
      // Senders count what they put in: what came out is counted at once.
      auto& n = gauge_->handled;
      n.store(n.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      auto result = super::consume(x);
      // Skipped: it stays in the mailbox, counted in once, comes back later.
      if (result == caf::invoke_message_result::skipped)
        n.store(n.load(std::memory_order_relaxed) - 1,
                std::memory_order_relaxed);
      return result;
    }
  }

  bool cleanup(caf::error&& reason, caf::execution_unit* host) override {
    // Before the exit watch reads the figures.
    if constexpr (!CountIn)
      publish();
    return super::cleanup(std::move(reason), host);
  }

  const std::shared_ptr<actor_counters>& counters() const {
    return counters_;
  }

  const std::shared_ptr<mailbox_gauge>& gauge() const {
    return gauge_;
  }

private:
  /// Adds the messages counted down since the last publish to `handled`
  /// (the actor's thread only).
  void publish() {
    auto& n = gauge_->handled;
    n.store(n.load(std::memory_order_relaxed) + (period_ - countdown_),
            std::memory_order_relaxed);
    period_ = countdown_;
  }

  [[gnu::noinline]] caf::invoke_message_result
  consume_rare(caf::mailbox_element& x) {
    auto relaxed = std::memory_order_relaxed;
    // A one-way message came here only when its countdown ran out.
    if (!x.mid.is_async())
      --countdown_;
    auto timed = countdown_ == 0;
    auto& g = *gauge_;
    if constexpr (CountIn) {
      g.handled.store(g.handled.load(relaxed) + 1, relaxed);
    } else {
      publish();
      // Its own look (senders do not count): a closed mailbox (the actor
      // ends) must not be touched again.
      if (!this->mailbox().closed())
        g.waiting.store(this->mailbox().size(), std::memory_order_release);
    }
    // Read before the handler, which may take the message apart.
    auto answer = x.mid.is_response() ? detail::error_answer(x) : caf::error{};
    auto answerer = answer && x.sender ? x.sender->id() : caf::actor_id{0};
    caf::invoke_message_result result;
    if (timed) {
      countdown_ = period_ = counters_->sample_every;
      auto begin = counters_->clock();
      result = super::consume(x);
      counters_->timed_since(begin);
    } else {
      result = super::consume(x);
    }
    if (result == caf::invoke_message_result::skipped)
      g.handled.store(g.handled.load(relaxed) - 1, relaxed);
    // Dropped: nobody waits for it, e.g. the timeout of a request answered.
    if (answer && result == caf::invoke_message_result::consumed)
      detail::count_error_answer(*counters_, this->id(), answerer, answer);
    return result;
  }

  std::shared_ptr<actor_counters> counters_;
  std::shared_ptr<mailbox_gauge> gauge_;
  /// Messages until the next timed one.
  uint32_t countdown_ = 1;
  /// countdown_ at the last publish: what it counted down since is unpublished.
  uint32_t period_ = 1;
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
  // Only an actor with a thread of its own may block with messages waiting.
  using counted = counted_actor<impl, caf::has_detach_flag(Os)>;
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
