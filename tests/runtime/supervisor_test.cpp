// The supervisor and its relays: a child that dies is started again behind
// the same handle, with backoff, counted; the node's health names an
// essential child that is down, restarting too often or stopped.
#include "runtime/supervisor.hpp"

#include <atomic>
#include <memory>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/after.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "ask.hpp"
#include "helpers.hpp"
#include "messages/error.hpp"
#include "messages/register.hpp"

using namespace fleetd;
using namespace std::chrono_literals;
using fleetd::test::ask;
using fleetd::test::eventually;

namespace {

using stats_actor = caf::typed_actor<stats_handler>;

/// A child that tells which incarnation it is.
stats_actor::behavior_type incarnation(stats_actor::pointer, int64_t n) {
  return {
    [n](stats_atom) {
      actor_stats out;
      out.name = "child";
      out.counters["incarnation"] = n;
      return out;
    },
  };
}

struct holding_state {
  std::vector<caf::response_promise> held;
  static inline const char* name = "holding";
};

/// A child that takes stats requests and never answers, like one stuck in a
/// slow write when it dies; tick tells how many it holds.
caf::behavior holding(caf::stateful_actor<holding_state>* self) {
  return {
    [self](stats_atom) {
      self->state.held.push_back(self->make_response_promise());
      return caf::delegated<actor_stats>{};
    },
    [self](tick_atom) {
      return static_cast<int64_t>(self->state.held.size());
    },
  };
}

struct fixture {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<caf::scoped_actor> self;
  std::shared_ptr<manual_clock> clock = std::make_shared<manual_clock>(0);
  /// Incarnations started so far; the next start fails while `broken`.
  std::shared_ptr<std::atomic<int64_t>> started
    = std::make_shared<std::atomic<int64_t>>(0);
  std::shared_ptr<std::atomic<bool>> broken
    = std::make_shared<std::atomic<bool>>(false);
  /// Incarnations hold every request instead of answering.
  std::shared_ptr<std::atomic<bool>> hold
    = std::make_shared<std::atomic<bool>>(false);
  supervisor_config scfg;
  supervisor_actor sup;

  fixture() {
    register_messages(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    self = std::make_unique<caf::scoped_actor>(*sys);
    scfg.clock = clock;
    scfg.limits.backoff_initial = 1ms;
    scfg.limits.backoff_max = 4ms;
    scfg.limits.max_restarts = 2;
    scfg.limits.window = 60s;
  }

  ~fixture() {
    if (sup)
      (*self)->send_exit(sup, caf::exit_reason::user_shutdown);
    for (auto& c : scfg.children)
      (*self)->send_exit(c.relay, caf::exit_reason::user_shutdown);
  }

  child_factory factory() {
    return [n = started, broken = broken, hold = hold](caf::actor_system& s)
             -> caf::expected<caf::actor> {
      if (*broken)
        return make_error(ec::storage_failed, "cannot open the test store");
      if (*hold)
        return caf::actor_cast<caf::actor>(s.spawn(holding));
      return caf::actor_cast<caf::actor>(s.spawn(incarnation, ++*n));
    };
  }

  caf::actor add(const std::string& name, bool essential) {
    return scfg.add(*sys, name, essential, factory());
  }

  void start() {
    sup = sys->spawn(supervisor, scfg);
  }

  /// The incarnation answering through `relay`; 0 when none answers.
  int64_t incarnation_of(const caf::actor& relay) {
    int64_t out = 0;
    (*self)->request(relay, 2s, stats_atom::value)
      .receive([&](actor_stats& x) { out = x.counters["incarnation"]; },
               [](caf::error&) {
                 // Down: 0.
               });
    return out;
  }

  /// The supervisor's health: "ok" or the error's text.
  std::string health() {
    std::string out;
    (*self)->request(sup, 5s, health_atom::value)
      .receive([&](std::string& x) { out = x; },
               [&](caf::error& err) { out = render(err); });
    return out;
  }

  int64_t counter(const std::string& name) {
    auto st = ask<actor_stats>(*self, sup, 2s, stats_atom::value);
    return st.counters[name];
  }

  void kill(const std::string& name) {
    auto r = ask<debug_report>(*self, sup, 2s, debug_atom::value,
                               "kill " + name);
    CHECK(r.text == "killed " + name + "\n");
  }
};

} // namespace

TEST_CASE_FIXTURE(fixture, "a killed child is restarted behind the same handle") {
  auto relay = add("store", true);
  start();
  CHECK(incarnation_of(relay) == 1);
  CHECK(health() == "ok");
  kill("store");
  REQUIRE(eventually([&] { return incarnation_of(relay) == 2; }, 10s));
  CHECK(counter("store.deaths") == 1);
  CHECK(counter("store.restarts") == 1);
  CHECK(health() == "ok");
  // And again: the handle keeps reaching the newest incarnation.
  kill("store");
  REQUIRE(eventually([&] { return incarnation_of(relay) == 3; }, 10s));
  CHECK(counter("store.deaths") == 2);
}

TEST_CASE_FIXTURE(fixture, "while an essential child is down the node is "
                           "unhealthy and its relay says so") {
  scfg.limits.backoff_initial = 1h;
  scfg.limits.backoff_max = 1h;
  auto relay = add("store", true);
  add("helper", false);
  start();
  kill("store");
  REQUIRE(eventually(
    [&] { return health().find("store is down") != std::string::npos; }, 10s));
  CHECK(health().find("restart in") != std::string::npos);
  caf::error err;
  (*self)->request(relay, 2s, stats_atom::value)
    .receive([](actor_stats&) { FAIL("a dead child answered"); },
             [&](caf::error& x) { err = x; });
  CHECK(render(err) == "unreachable: store is down (restarting)");
  auto st = ask<actor_stats>(*self, sup, 2s, stats_atom::value);
  CHECK(st.state.rfind("unhealthy: store is down", 0) == 0);
  CHECK(started->load() == 2); // no restart within the hour of backoff
}

TEST_CASE_FIXTURE(fixture, "a non-essential child's death leaves the node "
                           "healthy") {
  scfg.limits.backoff_initial = 1h;
  scfg.limits.backoff_max = 1h;
  add("store", true);
  add("helper", false);
  start();
  kill("helper");
  REQUIRE(eventually([&] { return counter("helper.deaths") == 1; }, 10s));
  CHECK(health() == "ok");
}

TEST_CASE_FIXTURE(fixture, "past max_restarts deaths within the window the "
                           "node is unhealthy until the window moves on") {
  auto relay = add("store", true);
  start();
  for (int64_t i = 2; i <= 4; ++i) {
    kill("store");
    REQUIRE(eventually([&] { return incarnation_of(relay) == i; }, 10s));
  }
  // Three deaths, max_restarts 2: still restarted, but too often.
  CHECK(counter("store.restarts") == 3);
  auto h = health();
  CHECK(h == "unreachable: store is restarting too often (3 deaths within "
             "supervisor.window)");
  clock->advance(60000);
  CHECK(health() == "ok");
}

TEST_CASE_FIXTURE(fixture, "a child that cannot start is tried again with "
                           "backoff, each failure counted") {
  auto relay = add("store", true);
  start();
  *broken = true;
  kill("store");
  REQUIRE(eventually([&] { return counter("store.deaths") >= 3; }, 10s));
  CHECK(counter("store.restarts") == 0);
  CHECK(health().find("store is") != std::string::npos);
  *broken = false;
  REQUIRE(eventually([&] { return incarnation_of(relay) == 2; }, 10s));
  CHECK(counter("store.restarts") == 1);
}

TEST_CASE_FIXTURE(fixture, "an orderly stop is not a death: the child stays "
                           "stopped") {
  auto relay = add("store", true);
  start();
  (*self)->send_exit(scfg.children[0].first, caf::exit_reason::user_shutdown);
  REQUIRE(eventually(
    [&] { return health() == "unreachable: store is stopped"; }, 10s));
  CHECK(counter("store.deaths") == 0);
  CHECK(started->load() == 1);
  CHECK(incarnation_of(relay) == 0);
}

TEST_CASE_FIXTURE(fixture, "stopping a relay stops its child first") {
  auto relay = add("store", true);
  auto child = scfg.children[0].first;
  start();
  (*self)->send_exit(sup, caf::exit_reason::user_shutdown);
  (*self)->monitor(child);
  (*self)->monitor(relay);
  (*self)->send_exit(relay, caf::exit_reason::user_shutdown);
  std::vector<caf::actor_addr> order;
  for (int i = 0; i < 2; ++i)
    (*self)->receive([&](caf::down_msg& dm) { order.push_back(dm.source); });
  REQUIRE(order.size() == 2);
  CHECK(order[0] == child.address());
  CHECK(order[1] == relay.address());
}

TEST_CASE_FIXTURE(fixture, "kill names a child or is refused") {
  add("store", true);
  start();
  caf::error err;
  (*self)->request(sup, 2s, debug_atom::value, std::string{"kill nobody"})
    .receive([](debug_report&) { FAIL("killed nobody"); },
             [&](caf::error& x) { err = x; });
  CHECK(render(err) == "bad_config: no actor to kill in 'kill nobody'");
}

TEST_CASE_FIXTURE(fixture, "a child that cannot start at first is down, "
                           "then started by the supervisor") {
  *broken = true;
  auto relay = add("store", true);
  start();
  REQUIRE(eventually(
    [&] { return health().find("store is down") != std::string::npos; }, 10s));
  CHECK(incarnation_of(relay) == 0);
  *broken = false;
  REQUIRE(eventually([&] { return incarnation_of(relay) == 1; }, 10s));
  CHECK(health() == "ok");
  CHECK(counter("store.restarts") == 0);
}

TEST_CASE_FIXTURE(fixture, "requests in flight when the child dies are "
                           "answered with an error at once") {
  *hold = true;
  auto relay = add("store", true);
  start();
  // Two requests the child holds, from another actor than the killer.
  auto asker = sys->spawn([relay](caf::event_based_actor* self)
                            -> caf::behavior {
    return {
      [self, relay](tick_atom) -> caf::result<std::string> {
        auto rp = self->make_response_promise<std::string>();
        self->request(relay, 60s, stats_atom::value)
          .then([rp](actor_stats&) mutable { rp.deliver(std::string{"ok"}); },
                [rp](caf::error& err) mutable { rp.deliver(render(err)); });
        return rp;
      },
    };
  });
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 2; ++i)
    (*self)->send(asker, tick_atom::value);
  auto child = scfg.children[0].first;
  REQUIRE(eventually(
    [&] { return ask<int64_t>(*self, child, 2s, tick_atom::value) == 2; },
    10s));
  kill("store");
  std::vector<std::string> answers;
  for (int i = 0; i < 2; ++i)
    (*self)->receive([&](std::string& x) { answers.push_back(x); },
                     caf::after(20s) >> [] {
                       // Checked below.
                     });
  auto waited = std::chrono::steady_clock::now() - t0;
  REQUIRE(answers.size() == 2);
  for (auto& x : answers)
    CHECK(x == "unreachable: store died (exit_reason(kill))");
  CHECK(waited < 10s); // not the askers' 60 s timeouts
  (*self)->send_exit(asker, caf::exit_reason::user_shutdown);
}
