// The inspector: the console's door into a node. Gathers every registered
// actor's statistics, forwards `devices`, and stops only for its own node.
#include "actors/inspector.hpp"

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/after.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "ask.hpp"
#include "helpers.hpp"
#include "messages/error.hpp"
#include "messages/register.hpp"
#include "runtime/counted.hpp"
#include "runtime/node.hpp"
#include "stuck_actor.hpp"

using namespace fleetd;
using namespace std::chrono_literals;
using fleetd::test::wait_child;

namespace {

constexpr int64_t clock_start_ms = 1'700'000'000'000;

// -- actors the inspector asks ------------------------------------------------

using stats_actor = caf::typed_actor<stats_handler>;

using devices_actor
  = caf::typed_actor<caf::replies_to<devices_atom>::with<device_infos>>;

using debug_actor = caf::typed_actor<
  caf::replies_to<debug_atom, std::string>::with<debug_report>>;

/// Answers a diagnostic with the text it was asked, named.
debug_actor::behavior_type echoing(debug_actor::pointer, std::string who) {
  return {
    [who](debug_atom, const std::string& what) {
      return debug_report{who + ": " + what, ""};
    },
  };
}

actor_stats make_stats(const std::string& name, const std::string& state,
                       int64_t count) {
  actor_stats out;
  out.name = name;
  out.state = state;
  out.counters["count"] = count;
  out.counters[name + "_only"] = 1;
  return out;
}

/// Answers at once.
stats_actor::behavior_type answering(stats_actor::pointer, actor_stats st) {
  return {
    [st](stats_atom) { return st; },
  };
}

struct late_state {
  std::vector<caf::typed_response_promise<actor_stats>> held;
  static inline const char* name = "late";
};

/// Holds its answer until told (tick) by the actors that must answer first.
caf::behavior late(caf::stateful_actor<late_state>* self, actor_stats st) {
  return {
    [self](stats_atom) -> caf::result<actor_stats> {
      auto rp = self->make_response_promise<actor_stats>();
      self->state.held.push_back(rp);
      return rp;
    },
    [self, st](tick_atom) {
      for (auto& rp : self->state.held)
        rp.deliver(st);
      self->state.held.clear();
    },
  };
}

/// Answers at once, then lets `late` answer: its answer comes after this.
caf::behavior answering_before(caf::event_based_actor* self, actor_stats st,
                               caf::actor late) {
  return {
    [self, st, late](stats_atom) {
      self->send(late, tick_atom::value);
      return st;
    },
  };
}

struct silent_state {
  std::vector<caf::typed_response_promise<actor_stats>> held;
  static inline const char* name = "silent";
};

/// Takes the request and never answers, like an actor stuck in a handler.
stats_actor::behavior_type
silent(stats_actor::stateful_pointer<silent_state> self) {
  return {
    [self](stats_atom) -> caf::result<actor_stats> {
      auto rp = self->make_response_promise<actor_stats>();
      self->state.held.push_back(rp);
      return rp;
    },
  };
}

struct once_state {
  bool answered = false;
  std::vector<caf::typed_response_promise<actor_stats>> held;
  static inline const char* name = "once";
};

/// Answers the first request, then gets stuck like silent (a sink runner
/// in a hung backend call).
stats_actor::behavior_type
answers_once(stats_actor::stateful_pointer<once_state> self, actor_stats st) {
  return {
    [self, st](stats_atom) -> caf::result<actor_stats> {
      if (!self->state.answered) {
        self->state.answered = true;
        return st;
      }
      auto rp = self->make_response_promise<actor_stats>();
      self->state.held.push_back(rp);
      return rp;
    },
  };
}

device_infos sample_devices() {
  device_info a;
  a.device_id = "dev-a";
  a.stream = "metrics";
  a.points_received = 120;
  a.batches_received = 4;
  a.duplicates = 1;
  a.last_acked_sequence = 4;
  a.gaps = 0;
  a.last_seen_ms = clock_start_ms;
  device_info b = a;
  b.device_id = "dev-b";
  b.gaps = 2;
  return {a, b};
}

devices_actor::behavior_type devices_answering(devices_actor::pointer) {
  return {
    [](devices_atom) { return sample_devices(); },
  };
}

devices_actor::behavior_type devices_failing(devices_actor::pointer) {
  return {
    [](devices_atom) -> caf::result<device_infos> {
      return make_error(ec::storage_failed, "test store is broken");
    },
  };
}

// -- fixture ------------------------------------------------------------------

struct inspector_fixture {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<caf::scoped_actor> self;
  std::shared_ptr<manual_clock> clock
    = std::make_shared<manual_clock>(clock_start_ms);
  std::vector<caf::actor> spawned;

  inspector_fixture() {
    register_messages(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    self = std::make_unique<caf::scoped_actor>(*sys);
  }

  ~inspector_fixture() {
    for (auto& x : spawned)
      (*self)->send_exit(x, caf::exit_reason::user_shutdown);
  }

  template <class Handle>
  caf::actor keep(const Handle& hdl) {
    auto out = caf::actor_cast<caf::actor>(hdl);
    spawned.push_back(out);
    return out;
  }

  inspector_config config() {
    inspector_config c;
    c.role = "edge";
    c.node_id = "dev-under-test";
    c.clock = clock;
    return c;
  }

  inspector_actor spawn_inspector(inspector_config c) {
    auto hdl = sys->spawn(inspector, std::move(c));
    keep(hdl);
    return hdl;
  }

  std::optional<node_status> status(const inspector_actor& insp,
                                    std::chrono::seconds timeout = 10s) {
    std::optional<node_status> out;
    (*self)
      ->request(insp, timeout, status_atom::value)
      .receive([&](node_status& x) { out = std::move(x); },
               [&](caf::error& err) { MESSAGE("status: ", render(err)); });
    return out;
  }

  /// True when `hdl` terminates within `timeout`.
  bool terminates(const caf::actor& hdl, std::chrono::milliseconds timeout) {
    bool down = false;
    (*self)->receive([&](caf::down_msg& msg) { down = msg.source == hdl; },
                     caf::after(timeout) >> [] {});
    return down;
  }
};

void check_stats(const actor_stats& got, const actor_stats& want) {
  CHECK(got.name == want.name);
  CHECK(got.state == want.state);
  CHECK(got.counters == want.counters);
}

// -- a console peer in another process ----------------------------------------

/// In a forked child: connects to `port`, sends the inspector an exit
/// message, then asks for status. 0 when the status still came back.
int remote_peer(uint16_t port) {
  node_config cfg;
  caf::actor_system sys{cfg};
  auto node = sys.middleman().remote_actor<inspector_actor>("127.0.0.1", port);
  if (!node)
    return 11;
  int rc = 12;
  {
    caf::scoped_actor self{sys};
    self->send_exit(*node, caf::exit_reason::user_shutdown);
    // Same sender, same connection: the status request arrives after the
    // exit message, so an answer means the exit was ignored.
    self->request(*node, 5s, status_atom::value)
      .receive([&](node_status&) { rc = 0; }, [&](caf::error&) { rc = 13; });
  }
  return rc;
}

} // namespace

TEST_CASE("status gathers every registered actor's stats in registration "
          "order") {
  inspector_fixture f;
  auto c = f.config();
  auto first = make_stats("collector", "collecting", 1);
  auto second = make_stats("storage", "ok", 2);
  auto third = make_stats("sync", "idle", 3);
  // The first answers last, released by the last one's answer: the order
  // must come from registration.
  auto held = f.keep(f.sys->spawn(late, first));
  c.actors = {{"collector", held},
              {"storage", f.keep(f.sys->spawn(answering, second))},
              {"sync", f.keep(f.sys->spawn(answering_before, third, held))}};
  auto insp = f.spawn_inspector(c);
  // The inspector notes its start time once it runs: ask once, then wait.
  auto st = f.status(insp);
  REQUIRE(st);
  CHECK(st->uptime_ms == 0);
  auto started = f.clock->now_ms();
  CHECK(st->started_ms == started);
  f.clock->advance(4321);
  st = f.status(insp);
  REQUIRE(st);
  CHECK(st->role == "edge");
  CHECK(st->node_id == "dev-under-test");
  CHECK(st->version == "0.1.0");
  CHECK(st->uptime_ms == 4321);
  // The process's start, not the answer's time: counters count from it.
  CHECK(st->started_ms == started);
  REQUIRE(st->actors.size() == 3);
  check_stats(st->actors[0], first);
  check_stats(st->actors[1], second);
  check_stats(st->actors[2], third);
}

TEST_CASE("a node without registered actors answers status at once") {
  inspector_fixture f;
  auto c = f.config();
  c.role = "cloud";
  auto insp = f.spawn_inspector(c);
  auto st = f.status(insp);
  REQUIRE(st);
  CHECK(st->role == "cloud");
  CHECK(st->actors.empty());
  CHECK(st->uptime_ms == 0);
}

TEST_CASE("an actor that never answers is reported unresponsive and the "
          "others still are") {
  inspector_fixture f;
  auto c = f.config();
  auto before = make_stats("storage", "ok", 7);
  auto after = make_stats("cloud_link", "connected", 8);
  c.actors = {{"storage", f.keep(f.sys->spawn(answering, before))},
              {"sync", f.keep(f.sys->spawn(silent))},
              {"cloud_link", f.keep(f.sys->spawn(answering, after))}};
  auto insp = f.spawn_inspector(c);
  // The caller waits 10 s; an answer at all shows the inspector's own, shorter
  // deadline for the silent actor.
  auto st = f.status(insp, 10s);
  REQUIRE(st);
  REQUIRE(st->actors.size() == 3);
  check_stats(st->actors[0], before);
  CHECK(st->actors[1].name == "sync");
  INFO("state: " << st->actors[1].state);
  CHECK(st->actors[1].state.rfind("unresponsive", 0) == 0);
  CHECK(st->actors[1].counters.empty());
  check_stats(st->actors[2], after);
}

TEST_CASE("an actor stuck past the deadline keeps its last figures, marked "
          "with their age") {
  inspector_fixture f;
  auto c = f.config();
  auto known = make_stats("sink_victoria", "draining", 5);
  c.actors = {{"sink_victoria", f.keep(f.sys->spawn(answers_once, known))}};
  auto insp = f.spawn_inspector(c);
  auto first = f.status(insp);
  REQUIRE(first);
  check_stats(first->actors[0], known);
  f.clock->advance(1500);
  auto st = f.status(insp);
  REQUIRE(st);
  REQUIRE(st->actors.size() == 1);
  auto& got = st->actors[0];
  INFO("state: " << got.state);
  CHECK(got.state.rfind("unresponsive", 0) == 0);
  CHECK(got.state.find("last answer 1500 ms ago: draining")
        != std::string::npos);
  CHECK(got.counters["stale_ms"] == 1500);
  got.counters.erase("stale_ms");
  CHECK(got.counters == known.counters);
}

TEST_CASE("an actor that is gone is reported unresponsive without waiting") {
  inspector_fixture f;
  auto c = f.config();
  auto gone = f.sys->spawn(answering, make_stats("sync", "idle", 1));
  (*f.self)->send_exit(gone, caf::exit_reason::kill);
  (*f.self)->wait_for(gone);
  c.actors = {{"sync", caf::actor_cast<caf::actor>(gone)}};
  auto insp = f.spawn_inspector(c);
  auto st = f.status(insp);
  REQUIRE(st);
  REQUIRE(st->actors.size() == 1);
  CHECK(st->actors[0].name == "sync");
  // Told at once that the actor is down, not after the ask deadline.
  INFO("state: " << st->actors[0].state);
  CHECK(st->actors[0].state.rfind("unresponsive", 0) == 0);
  CHECK(st->actors[0].state.find("timeout") == std::string::npos);
}

TEST_CASE("devices is forwarded to the devices actor") {
  inspector_fixture f;
  auto c = f.config();
  c.role = "cloud";
  c.devices = f.keep(f.sys->spawn(devices_answering));
  auto insp = f.spawn_inspector(c);
  device_infos got;
  (*f.self)->request(insp, 10s, devices_atom::value)
    .receive([&](device_infos& xs) { got = std::move(xs); },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  auto want = sample_devices();
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i].device_id == want[i].device_id);
    CHECK(got[i].stream == want[i].stream);
    CHECK(got[i].points_received == want[i].points_received);
    CHECK(got[i].batches_received == want[i].batches_received);
    CHECK(got[i].duplicates == want[i].duplicates);
    CHECK(got[i].last_acked_sequence == want[i].last_acked_sequence);
    CHECK(got[i].gaps == want[i].gaps);
    CHECK(got[i].last_seen_ms == want[i].last_seen_ms);
  }
}

TEST_CASE("debug goes to the subject's owner: the whole text, else the "
          "longest subject it starts with, word-wise") {
  inspector_fixture f;
  auto c = f.config();
  c.debug["storage"] = caf::actor_cast<caf::actor>(
    f.keep(f.sys->spawn(echoing, "store")));
  c.debug["config get"] = caf::actor_cast<caf::actor>(
    f.keep(f.sys->spawn(echoing, "caps")));
  c.debug["config"] = caf::actor_cast<caf::actor>(
    f.keep(f.sys->spawn(echoing, "other")));
  auto insp = f.spawn_inspector(c);
  auto ask = [&](const std::string& what) {
    std::string out;
    (*f.self)->request(insp, 10s, debug_atom::value, what)
      .receive([&](debug_report& r) { out = r.text; },
               [&](caf::error& err) { out = "error " + render(err); });
    return out;
  };
  CHECK(ask("storage") == "store: storage");
  CHECK(ask("config get compression") == "caps: config get compression");
  CHECK(ask("config get ") == "caps: config get ");
  CHECK(ask("config reload") == "other: config reload");
  CHECK(ask("storagex").rfind("error ", 0) == 0);
  CHECK(ask("stor").rfind("error ", 0) == 0);
  CHECK(ask("").rfind("error ", 0) == 0);
  CHECK(ask(" ").rfind("error ", 0) == 0);
}

TEST_CASE("devices on a node without a devices actor is empty") {
  inspector_fixture f;
  auto insp = f.spawn_inspector(f.config());
  std::optional<device_infos> got;
  (*f.self)->request(insp, 10s, devices_atom::value)
    .receive([&](device_infos& xs) { got = std::move(xs); },
             [&](caf::error& err) { FAIL_CHECK(render(err)); });
  REQUIRE(got);
  CHECK(got->empty());
}

TEST_CASE("an error of the devices actor reaches the caller") {
  inspector_fixture f;
  auto c = f.config();
  c.devices = f.keep(f.sys->spawn(devices_failing));
  auto insp = f.spawn_inspector(c);
  std::optional<caf::error> failure;
  (*f.self)->request(insp, 10s, devices_atom::value)
    .receive([&](device_infos&) {},
             [&](caf::error& err) { failure = std::move(err); });
  REQUIRE(failure);
  CHECK(failure->category() == caf::atom("fleetd"));
  CHECK(failure->code() == static_cast<uint8_t>(ec::storage_failed));
  // The inspector survives its helper's failure.
  CHECK(f.status(insp));
}

TEST_CASE("an exit message from an actor of this node stops the inspector") {
  inspector_fixture f;
  auto insp = f.spawn_inspector(f.config());
  auto hdl = caf::actor_cast<caf::actor>(insp);
  (*f.self)->monitor(hdl);
  SUBCASE("sent by a local actor") {
    (*f.self)->send_exit(hdl, caf::exit_reason::user_shutdown);
  }
  SUBCASE("sent anonymously by this process") {
    caf::anon_send_exit(hdl, caf::exit_reason::user_shutdown);
  }
  SUBCASE("through a link from a local actor that fails") {
    auto buddy = f.sys->spawn(
      [hdl](caf::event_based_actor* self) -> caf::behavior {
        self->link_to(hdl);
        return {
          [self](tick_atom) { self->quit(caf::exit_reason::user_shutdown); },
        };
      });
    caf::anon_send(buddy, tick_atom::value);
  }
  CHECK(f.terminates(hdl, 10s));
}

TEST_CASE("an exit message from a console peer in another process is "
          "ignored") {
  // Fork first, while this process runs no threads; the child waits for the
  // port on a pipe and only then starts an actor system of its own.
  int to_child[2];
  REQUIRE(pipe(to_child) == 0);
  auto pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(to_child[1]);
    uint16_t port = 0;
    auto n = read(to_child[0], &port, sizeof(port));
    close(to_child[0]);
    _exit(n == static_cast<ssize_t>(sizeof(port)) && port != 0
            ? remote_peer(port)
            : 10);
  }
  close(to_child[0]);
  std::optional<int> child_status;
  {
    node_config cfg;
    caf::actor_system sys{cfg};
    caf::scoped_actor self{sys};
    auto clock = std::make_shared<manual_clock>(clock_start_ms);
    inspector_config c;
    c.role = "edge";
    c.node_id = "dev-under-test";
    c.clock = clock;
    auto insp = sys.spawn(inspector, c);
    auto port = sys.middleman().publish(insp, 0, "127.0.0.1", true);
    uint16_t p = port ? *port : 0;
    auto written = write(to_child[1], &p, sizeof(p));
    close(to_child[1]);
    REQUIRE_MESSAGE(port, sys.render(port.error()));
    REQUIRE(written == static_cast<ssize_t>(sizeof(p)));
    child_status = wait_child(pid, 30s);
    if (!child_status) {
      kill(pid, SIGKILL);
      wait_child(pid, 5s);
    }
    // Still here for its own process.
    std::optional<node_status> st;
    self->request(insp, 5s, status_atom::value)
      .receive([&](node_status& x) { st = std::move(x); },
               [&](caf::error& err) { MESSAGE(render(err)); });
    CHECK(st);
    sys.middleman().unpublish(insp, *port);
    self->send_exit(insp, caf::exit_reason::user_shutdown);
    self->wait_for(insp);
  }
  REQUIRE(child_status);
  // 11: no connection, 12/13: no status after the exit message.
  CHECK(*child_status == 0);
}

TEST_CASE("an inspector spawned with a bad config stops instead of answering") {
  inspector_config c;
  c.role = "edge";
  c.node_id = "dev";
  c.clock = std::make_shared<manual_clock>(clock_start_ms);
  CHECK(!validate(c));
  c.role = "gateway";
  auto reason = fleetd::test::exit_reason_of(inspector, c);
  CHECK(reason == ec::bad_config);
  CHECK(render(reason).find("role") != std::string::npos);
  c.role = "cloud";
  c.clock = nullptr;
  CHECK(render(validate(c)).find("clock") != std::string::npos);
}

TEST_CASE("status carries the runtime's figures of each actor, a stuck "
          "one's mailbox too, and the process's") {
  inspector_fixture f;
  auto c = f.config();
  c.runtime = std::make_shared<stats_registry>();
  auto g = std::make_shared<test::stuck_gate>();
  auto entered = g->entered.get_future();
  auto blocked = f.keep(spawn_counted<caf::detached>(
    *f.sys, c.runtime.get(), "storage", test::stuck, g));
  auto fine = make_stats("backoff", "online", 3);
  c.actors = {{"storage", blocked},
              {"backoff", f.keep(spawn_counted(*f.sys, c.runtime.get(),
                                               "backoff", answering, fine))}};
  caf::anon_send(blocked, int64_t{0});
  entered.wait();
  for (int i = 0; i < 3; ++i)
    caf::anon_send(blocked, int64_t{0});
  auto st = f.status(f.spawn_inspector(c), 10s);
  g->release.set_value();
  REQUIRE(st);
  REQUIRE(st->actors.size() == 3);
  auto& storage = st->actors[0];
  INFO("state: " << storage.state);
  CHECK(storage.state.rfind("unresponsive", 0) == 0);
  CHECK(storage.runtime.measured);
  // Three messages and the inspector's own stats request wait behind the
  // one in its handler (taken in hand: counted).
  CHECK(storage.runtime.mailbox == 4);
  CHECK(storage.runtime.handled == 1);
  auto& backoff = st->actors[1];
  check_stats(backoff, fine);
  CHECK(backoff.runtime.measured);
  CHECK(backoff.runtime.mailbox == 0);
  // The inspector's ask, counted when it took it in hand.
  CHECK(backoff.runtime.handled == 1);
  CHECK(st->actors[2].name == "inspector");
  CHECK(st->process.rss_bytes > 0);
  CHECK(st->process.threads >= 1);
  CHECK(st->process.fds >= 3);
}
