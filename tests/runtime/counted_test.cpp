// Per-actor statistics kept by the runtime (runtime/counted.hpp and
// runtime/actor_counters): messages, handling time (on an injected clock),
// error answers and failures, restarts, the mailbox of a blocked actor, and
// the process figures.
#include "runtime/counted.hpp"

#include <atomic>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "ask.hpp"
#include "helpers.hpp"
#include "messages/error.hpp"
#include "messages/interfaces.hpp"
#include "messages/register.hpp"
#include "runtime/supervisor.hpp"
#include "stuck_actor.hpp"

using namespace fleetd;
using namespace std::chrono_literals;
using fleetd::test::ask;
using fleetd::test::eventually;

namespace {

// The injected clock: handlers move it as if they took that long.
std::atomic<int64_t> fake_now{1'000'000'000};

int64_t fake_clock() {
  return fake_now.load();
}

/// Takes `us` microseconds of fake time per message; a negative `us`
/// answers with an error.
caf::behavior worker(caf::event_based_actor*) {
  return {
    [](int64_t us) -> caf::result<int64_t> {
      if (us < 0)
        return make_error(ec::bad_config, "negative work");
      fake_now += us * 1000;
      return us;
    },
  };
}

/// Passes each number on to `target` and its answer back, as node actors
/// that ask others do, waiting `timeout` for it.
caf::behavior asker(caf::event_based_actor* self, caf::actor target,
                    caf::duration timeout) {
  return {
    [self, target, timeout](int64_t us) -> caf::result<int64_t> {
      auto rp = self->make_response_promise<int64_t>();
      self->request(target, timeout, us)
        .then([rp](int64_t y) mutable { rp.deliver(y); },
              [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
  };
}

/// Never answers (someone else would).
caf::behavior silent(caf::event_based_actor*) {
  return {
    [](int64_t) -> caf::result<int64_t> { return caf::delegated<int64_t>{}; },
  };
}

using stats_actor = caf::typed_actor<stats_handler>;

// A typed actor: counted the same way.
stats_actor::behavior_type typed_worker(stats_actor::pointer) {
  return {
    [](stats_atom) {
      actor_stats out;
      out.name = "typed";
      return out;
    },
  };
}

struct system_fixture {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  stats_registry reg;

  system_fixture() {
    register_messages(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
  }

  /// `name`'s counters on the fake clock, every message timed.
  void fake_time(const std::string& name) {
    auto c = reg.slot(name);
    c->clock = fake_clock;
    c->stamp = fake_clock;
    c->sample_every = 1;
  }
};

} // namespace

TEST_CASE("time buckets are log2 microseconds") {
  CHECK(time_bucket(0) == 0);
  CHECK(time_bucket(999) == 0);
  CHECK(time_bucket(1000) == 1);
  CHECK(time_bucket(3000) == 2);
  CHECK(time_bucket(1'000'000) == 10);
  CHECK(time_bucket(1'000'000'000) == 20);
  CHECK(time_bucket(-5) == 0);
  CHECK(time_bucket(INT64_MAX) == actor_counters::buckets - 1);
}

TEST_CASE("a counted actor's messages and handling times are counted") {
  system_fixture f;
  f.fake_time("worker");
  auto hdl = spawn_counted(*f.sys, &f.reg, "worker", worker);
  caf::scoped_actor self{*f.sys};
  for (int i = 0; i < 99; ++i)
    CHECK(ask<int64_t>(self, hdl, 5s, int64_t{3}) == 3);
  CHECK(ask<int64_t>(self, hdl, 5s, int64_t{1000}) == 1000);
  // The time is counted after the answer went, on the actor's thread.
  REQUIRE(eventually([&] { return f.reg.slot("worker")->timed == 100; }, 5s));
  CHECK(f.reg.read("worker").handled == 100);
  auto r = f.reg.read("worker");
  CHECK(r.measured);
  CHECK(r.mailbox == 0);
  // 3 µs falls in [2, 4) µs; the slowest 1 % is the 1000 µs one.
  CHECK(r.p50_us == 4);
  CHECK(r.p99_us == 1024);
  CHECK(r.errors == 0);
  CHECK(r.restarts == 0);
  // A timed message stamps the time it was done.
  CHECK(f.reg.read("worker").idle_ms == 0);
  fake_now += 2'500'000'000;
  CHECK(f.reg.read("worker").idle_ms == 2500);
  // 100 messages handled before the first read, none since.
  CHECK(f.reg.read("worker").per_second == 0);
  self->send_exit(hdl, caf::exit_reason::user_shutdown);
}

TEST_CASE("a count that goes down reads as no messages, not a huge rate") {
  stats_registry reg;
  auto c = reg.slot("worker");
  c->stamp = fake_clock;
  auto old = c->begin_incarnation(false);
  old->handled = 10;
  CHECK(reg.read("worker").handled == 10);
  fake_now += 1'000'000'000;
  // A restart: the new incarnation begins before the old one is ended.
  auto fresh = c->begin_incarnation(false);
  auto r = reg.read("worker");
  CHECK(r.handled == 0);
  CHECK(r.per_second == 0);
  c->end_incarnation(old.get(), "");
  fake_now += 1'000'000'000;
  CHECK(reg.read("worker").handled == 10);
}

TEST_CASE("the rate counts the messages since the previous read") {
  system_fixture f;
  f.fake_time("worker");
  auto hdl = spawn_counted(*f.sys, &f.reg, "worker", worker);
  caf::scoped_actor self{*f.sys};
  f.reg.read("worker");
  for (int i = 0; i < 10; ++i)
    ask<int64_t>(self, hdl, 5s, int64_t{100'000});
  REQUIRE(eventually([&] {
    return f.reg.slot("worker")->handled() == 10;
  }, 5s));
  // 10 messages in 1 s of fake time.
  CHECK(f.reg.read("worker").per_second == 10);
  self->send_exit(hdl, caf::exit_reason::user_shutdown);
}

TEST_CASE("error answers and abnormal exits are counted with their text") {
  system_fixture f;
  auto hdl = spawn_counted(*f.sys, &f.reg, "worker", worker);
  auto front = spawn_counted(*f.sys, &f.reg, "asker", asker, hdl,
                              caf::duration{5s});
  caf::scoped_actor self{*f.sys};
  self->request(front, 5s, int64_t{-1})
    .receive([](int64_t) { FAIL("no error"); },
             [](caf::error& err) {
               CHECK(render(err).find("negative work") != std::string::npos);
             });
  // On the actor that answered it, not on the one that passed it on.
  REQUIRE(eventually([&] { return f.reg.read("worker").errors == 1; }, 5s));
  CHECK(f.reg.read("worker").last_error.find("negative work")
        != std::string::npos);
  CHECK(f.reg.read("asker").errors == 0);
  self->send_exit(hdl, make_error(ec::io_error, "disk gone"));
  // Counted as the actor's last act, beside whoever else watches it.
  REQUIRE(eventually([&] { return f.reg.read("worker").errors == 2; }, 5s));
  auto r = f.reg.read("worker");
  CHECK(r.last_error.find("disk gone") != std::string::npos);
  CHECK(r.mailbox == 0);
  self->send_exit(front, caf::exit_reason::user_shutdown);
}

TEST_CASE("an error passed on by a supervisor's relay counts on its child") {
  system_fixture f;
  supervisor_config scfg;
  scfg.registry = &f.reg;
  // The node's way: askers get the relay, which asks the child for them.
  auto relay = scfg.add(*f.sys, "worker", true,
                        [&f](caf::actor_system& sys)
                          -> caf::expected<caf::actor> {
                          return spawn_counted(sys, &f.reg, "worker", worker);
                        });
  auto front = spawn_counted(*f.sys, &f.reg, "asker", asker, relay,
                             caf::duration{5s});
  caf::scoped_actor self{*f.sys};
  self->request(front, 5s, int64_t{-1})
    .receive([](int64_t) { FAIL("no error"); }, [](caf::error&) {});
  REQUIRE(eventually([&] { return f.reg.read("worker").errors == 1; }, 5s));
  CHECK(f.reg.read("asker").errors == 0);
  CHECK(f.reg.read("worker").last_error.find("negative work")
        != std::string::npos);
  self->send_exit(front, caf::exit_reason::user_shutdown);
  for (auto& c : scfg.children)
    self->send_exit(c.first, caf::exit_reason::user_shutdown);
  self->send_exit(relay, caf::exit_reason::user_shutdown);
}

TEST_CASE("an error from outside the measured actors counts on the asker") {
  system_fixture f;
  // Not measured: its error answer counts as the asker's failed request.
  auto plain = f.sys->spawn(worker);
  auto front = spawn_counted(*f.sys, &f.reg, "asker", asker, plain,
                              caf::duration{5s});
  caf::scoped_actor self{*f.sys};
  self->request(front, 5s, int64_t{-1})
    .receive([](int64_t) { FAIL("no error"); }, [](caf::error&) {});
  REQUIRE(eventually([&] { return f.reg.read("asker").errors == 1; }, 5s));
  auto r = f.reg.read("asker");
  CHECK(r.last_error.find("request failed") != std::string::npos);
  CHECK(r.last_error.find("negative work") != std::string::npos);
  // Answers that are no errors count nothing.
  CHECK(ask<int64_t>(self, front, 5s, int64_t{2}) == 2);
  CHECK(f.reg.read("asker").errors == 1);
  self->send_exit(front, caf::exit_reason::user_shutdown);
  self->send_exit(plain, caf::exit_reason::user_shutdown);
}

TEST_CASE("a request that times out is an error; an answered one's timeout "
          "is not") {
  system_fixture f;
  auto hdl = spawn_counted(*f.sys, &f.reg, "worker", worker);
  auto quick = spawn_counted(*f.sys, &f.reg, "quick", asker, hdl,
                             caf::duration{20ms});
  auto mute = f.sys->spawn(silent);
  auto slow = spawn_counted(*f.sys, &f.reg, "slow", asker, mute,
                            caf::duration{200ms});
  caf::scoped_actor self{*f.sys};
  // Answered at once: its timeout, 20 ms later, reaches nobody.
  CHECK(ask<int64_t>(self, quick, 5s, int64_t{1}) == 1);
  self->request(slow, 5s, int64_t{1})
    .receive([](int64_t) { FAIL("no timeout"); },
             [](caf::error& err) {
               CHECK(render(err).find("request_timeout") != std::string::npos);
             });
  // The 200 ms timeout came after the 20 ms one: both were handled.
  REQUIRE(eventually([&] { return f.reg.read("slow").errors == 1; }, 5s));
  CHECK(f.reg.read("slow").last_error.find("request failed")
        != std::string::npos);
  CHECK(f.reg.read("quick").errors == 0);
  CHECK(f.reg.read("worker").errors == 0);
  for (auto& a : {hdl, quick, mute, slow})
    self->send_exit(a, caf::exit_reason::user_shutdown);
}

TEST_CASE("an orderly stop is no error; a second incarnation is a restart") {
  system_fixture f;
  caf::scoped_actor self{*f.sys};
  auto first = spawn_counted(*f.sys, &f.reg, "worker", worker);
  ask<int64_t>(self, first, 5s, int64_t{1});
  self->send_exit(first, caf::exit_reason::user_shutdown);
  self->wait_for(first);
  auto second = spawn_counted(*f.sys, &f.reg, "worker", worker);
  ask<int64_t>(self, second, 5s, int64_t{1});
  // Two messages, and maybe the first's exit message (counted as its
  // incarnation ends, which may be after wait_for returns).
  REQUIRE(eventually([&] { return f.reg.read("worker").handled >= 2; }, 5s));
  auto r = f.reg.read("worker");
  CHECK(r.handled <= 3);
  CHECK(r.errors == 0);
  CHECK(r.restarts == 1);
  self->send_exit(second, caf::exit_reason::user_shutdown);
}

TEST_CASE("typed actors are counted too") {
  system_fixture f;
  auto hdl = spawn_counted(*f.sys, &f.reg, "typed", typed_worker);
  caf::scoped_actor self{*f.sys};
  CHECK(ask<actor_stats>(self, hdl, 5s, stats_atom::value).name == "typed");
  REQUIRE(eventually([&] { return f.reg.read("typed").handled == 1; }, 5s));
  caf::anon_send_exit(hdl, caf::exit_reason::user_shutdown);
}

TEST_CASE("a blocked actor's mailbox depth is seen from another thread") {
  system_fixture f;
  auto g = std::make_shared<test::stuck_gate>();
  auto entered = g->entered.get_future();
  // Detached: its senders count what they put in.
  auto hdl = spawn_counted<caf::detached>(*f.sys, &f.reg, "blocked",
                                          test::stuck, g);
  caf::anon_send(hdl, int64_t{0});
  entered.wait();
  // The first message is in its handler (taken in hand); five wait.
  for (int i = 0; i < 5; ++i)
    caf::anon_send(hdl, int64_t{0});
  CHECK(f.reg.read("blocked").mailbox == 5);
  CHECK(f.reg.read("blocked").handled == 1);
  g->release.set_value();
  REQUIRE(eventually([&] { return f.reg.read("blocked").handled == 6; }, 5s));
  CHECK(f.reg.read("blocked").mailbox == 0);
  caf::anon_send_exit(hdl, caf::exit_reason::user_shutdown);
}

namespace {

// Messages 1 and 2 wait in their handlers until released.
struct two_gates {
  std::promise<void> entered[2];
  std::promise<void> release[2];
};

caf::behavior gated(caf::event_based_actor*, std::shared_ptr<two_gates> g) {
  return {
    [g](int64_t k) {
      if (k == 1 || k == 2) {
        g->entered[k - 1].set_value();
        g->release[k - 1].get_future().wait();
      }
    },
  };
}

} // namespace

TEST_CASE("a scheduled actor's mailbox depth is what it saw at its last look") {
  system_fixture f;
  f.fake_time("gated"); // every message timed: it looks at each one
  auto g = std::make_shared<two_gates>();
  auto first = g->entered[0].get_future();
  auto second = g->entered[1].get_future();
  auto hdl = spawn_counted(*f.sys, &f.reg, "gated", gated, g);
  caf::anon_send(hdl, int64_t{1});
  first.wait();
  caf::anon_send(hdl, int64_t{2});
  for (int i = 0; i < 4; ++i)
    caf::anon_send(hdl, int64_t{0});
  // It looked when it took message 1: arrivals since show at the next look.
  CHECK(f.reg.read("gated").mailbox == 0);
  g->release[0].set_value();
  second.wait();
  // It took message 2 and saw the four behind it.
  CHECK(f.reg.read("gated").mailbox == 4);
  CHECK(f.reg.read("gated").handled == 2);
  g->release[1].set_value();
  REQUIRE(eventually([&] { return f.reg.read("gated").handled == 6; }, 5s));
  CHECK(f.reg.read("gated").mailbox == 0);
  caf::anon_send_exit(hdl, caf::exit_reason::user_shutdown);
}

TEST_CASE("a scheduled actor's figures are published when it is asked") {
  system_fixture f;
  f.fake_time("worker");
  // Times (and publishes at) only its first message; between asks its
  // one-way messages are counted down in the actor alone.
  f.reg.slot("worker")->sample_every = 1000;
  auto hdl = spawn_counted(*f.sys, &f.reg, "worker", worker);
  for (int i = 0; i < 10; ++i)
    caf::anon_send(hdl, int64_t{0});
  // A request (the inspector's stats ask is one) publishes them and itself.
  caf::scoped_actor self{*f.sys};
  CHECK(ask<int64_t>(self, hdl, 5s, int64_t{0}) == 0);
  auto r = f.reg.read("worker");
  CHECK(r.handled == 11);
  CHECK(r.mailbox == 0);
  // So does the exit: the last figures count in the name's total.
  for (int i = 0; i < 5; ++i)
    caf::anon_send(hdl, int64_t{0});
  self->send_exit(hdl, caf::exit_reason::user_shutdown);
  self->wait_for(hdl);
  // Five and the exit message itself.
  CHECK(f.reg.slot("worker")->handled() == 17);
}

TEST_CASE("statistics off: a counted actor without a registry just works") {
  system_fixture f;
  auto hdl = spawn_counted(*f.sys, nullptr, "worker", worker);
  caf::scoped_actor self{*f.sys};
  CHECK(ask<int64_t>(self, hdl, 5s, int64_t{7}) == 7);
  CHECK_FALSE(f.reg.read("worker").measured);
  self->send_exit(hdl, caf::exit_reason::user_shutdown);
}

TEST_CASE("the process figures are sane") {
  auto x = read_process_figures();
  CHECK(x.rss_bytes > 0);
  CHECK(x.cpu_ms >= 0);
  CHECK(x.threads >= 1);
  // stdin, stdout, stderr at least.
  CHECK(x.fds >= 3);
  CHECK(x.sockets >= 0);
  CHECK(x.sockets <= x.fds);
  auto none = read_process_figures("/nonexistent");
  CHECK(none.rss_bytes == -1);
  CHECK(none.fds == -1);
}

TEST_CASE("one message in sample_every is timed, every one counted") {
  system_fixture f;
  f.fake_time("worker");
  f.reg.slot("worker")->sample_every = 4;
  auto hdl = spawn_counted(*f.sys, &f.reg, "worker", worker);
  caf::scoped_actor self{*f.sys};
  for (int i = 0; i < 12; ++i)
    ask<int64_t>(self, hdl, 5s, int64_t{3});
  REQUIRE(eventually([&] { return f.reg.read("worker").handled == 12; }, 5s));
  auto c = f.reg.slot("worker");
  // The 1st, 5th and 9th.
  CHECK(c->timed.load() == 3);
  CHECK(c->time[2].load() == 3);
  CHECK(f.reg.read("worker").p50_us == 4);
  self->send_exit(hdl, caf::exit_reason::user_shutdown);
}

TEST_CASE("idle time: the last timed message, or the read before untimed ones") {
  system_fixture f;
  f.fake_time("worker");
  f.reg.slot("worker")->sample_every = 1000;
  auto hdl = spawn_counted(*f.sys, &f.reg, "worker", worker);
  caf::scoped_actor self{*f.sys};
  // No message yet: idle since it started.
  fake_now += 300'000'000;
  CHECK(f.reg.read("worker").idle_ms == 300);
  // The first message is timed: done at its end (after its answer went).
  ask<int64_t>(self, hdl, 5s, int64_t{0});
  REQUIRE(eventually([&] { return f.reg.slot("worker")->timed == 1; }, 5s));
  fake_now += 1'000'000'000;
  CHECK(f.reg.read("worker").idle_ms == 1000);
  fake_now += 1'000'000'000;
  CHECK(f.reg.read("worker").idle_ms == 2000);
  // Untimed messages after that read: they came after it, at the latest now.
  for (int i = 0; i < 5; ++i)
    ask<int64_t>(self, hdl, 5s, int64_t{0});
  REQUIRE(eventually([&] { return f.reg.slot("worker")->handled() == 6; }, 5s));
  fake_now += 500'000'000;
  auto r = f.reg.read("worker");
  CHECK(r.idle_ms == 500);
  CHECK(r.handled == 6);
  CHECK(f.reg.slot("worker")->timed.load() == 1);
  fake_now += 250'000'000;
  CHECK(f.reg.read("worker").idle_ms == 750);
  self->send_exit(hdl, caf::exit_reason::user_shutdown);
}

template <caf::spawn_options Os>
void many_senders(const std::string& name) {
  system_fixture f;
  f.fake_time(name);
  auto hdl = spawn_counted<Os>(*f.sys, &f.reg, name, worker);
  constexpr int threads = 12;
  std::vector<std::thread> senders;
  for (int t = 0; t < threads; ++t)
    senders.emplace_back([&] {
      for (int i = 0; i < 200; ++i)
        caf::anon_send(hdl, int64_t{0});
    });
  for (auto& t : senders)
    t.join();
  auto want = int64_t{threads * 200};
  REQUIRE(eventually([&] { return f.reg.read(name).handled == want; }, 5s));
  CHECK(f.reg.read(name).mailbox == 0);
  caf::scoped_actor self{*f.sys};
  self->send_exit(hdl, caf::exit_reason::user_shutdown);
}

TEST_CASE("messages from many sending threads add up") {
  SUBCASE("senders counting (detached)") {
    many_senders<caf::detached>("counted_in");
  }
  SUBCASE("the actor looking (scheduled)") {
    many_senders<caf::no_spawn_options>("looking");
  }
}

TEST_CASE("the reader's own asks are no sign of life") {
  system_fixture f;
  f.fake_time("worker");
  f.reg.slot("worker")->sample_every = 1000;
  auto hdl = spawn_counted(*f.sys, &f.reg, "worker", worker);
  caf::scoped_actor self{*f.sys};
  auto handled = [&](uint64_t n) {
    return eventually([&] { return f.reg.slot("worker")->handled() == n; },
                      5s);
  };
  ask<int64_t>(self, hdl, 5s, int64_t{0});
  // Timed: stamped at its end, after its answer went.
  REQUIRE(eventually([&] { return f.reg.slot("worker")->timed == 1; }, 5s));
  REQUIRE(handled(1));
  CHECK(f.reg.read("worker").idle_ms == 0);
  // Each read after one probe of the reader's own (the inspector's ask).
  for (int64_t s = 1; s <= 3; ++s) {
    fake_now += 1'000'000'000;
    ask<int64_t>(self, hdl, 5s, int64_t{0});
    REQUIRE(handled(static_cast<uint64_t>(1 + s)));
    auto r = f.reg.read("worker", 1);
    CHECK(r.idle_ms == 1000 * s);
    CHECK(r.per_second == 0);
  }
  // A message of someone else's besides the probe: alive since the last read.
  fake_now += 1'000'000'000;
  ask<int64_t>(self, hdl, 5s, int64_t{0});
  ask<int64_t>(self, hdl, 5s, int64_t{0});
  REQUIRE(handled(6));
  auto r = f.reg.read("worker", 1);
  CHECK(r.idle_ms == 1000);
  CHECK(r.per_second == 1);
  self->send_exit(hdl, caf::exit_reason::user_shutdown);
}
