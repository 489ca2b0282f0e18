#include "edge/system_collector.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/after.hpp>
#include <caf/send.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "ask.hpp"

#include "edge/fake_storage.hpp"

#include "messages/error.hpp"
#include "messages/register.hpp"

using namespace fleetd;
using namespace std::chrono_literals;

namespace {

const std::string fixture_root = FLEETD_SOURCE_DIR "/tests/edge/fixtures/proc";

constexpr int64_t clock_start_ms = 1'700'000'000'000;

// The collectors the actor tests run on the fixtures: 2 cpus with 8 modes
// and 2 guest modes, 41 meminfo fields, 3 load averages (node_metrics_test
// has every collector).
constexpr const char* fixture_collectors = "cpu,meminfo,loadavg";
constexpr size_t fixture_samples = 2 * (8 + 2) + 41 + 3;

// -- a storage that only stores ----------------------------------------------

enum class store_mode {
  /// Replies with the number of samples.
  answer,
  /// Replies with disk_full.
  fail,
  /// Never replies, like a storage stuck in a long transaction.
  hold,
};

struct fake_storage_state {
  caf::actor observer;
  store_mode mode = store_mode::answer;
  std::vector<caf::typed_response_promise<int64_t>> held;
  static inline const char* name = "fake_storage";
};

/// Tells `observer` about every stored batch as (store_atom, samples).
storage_actor::behavior_type
fake_storage(storage_actor::stateful_pointer<fake_storage_state> self,
             caf::actor observer, store_mode mode) {
  self->state.observer = std::move(observer);
  self->state.mode = mode;
  return test::fake_storage_behavior(
    [self](store_atom, metric_samples& xs) -> caf::result<int64_t> {
      auto& st = self->state;
      auto rp = self->make_response_promise<int64_t>();
      // Reply before telling the test: the collector then holds the reply
      // in its mailbox before any request the test sends afterwards.
      switch (st.mode) {
        case store_mode::answer:
          rp.deliver(static_cast<int64_t>(xs.size()));
          break;
        case store_mode::fail:
          rp.deliver(make_error(ec::disk_full, "fake storage"));
          break;
        case store_mode::hold:
          st.held.push_back(rp);
          break;
      }
      // Typed actors may only send() to typed ones; the observer is not.
      caf::anon_send(st.observer, store_atom::value, std::move(xs));
      return rp;
    },
    [](event_atom, const std::string&, const std::string&) {
      // Events are not what this test is about.
    },
    [](debug_atom, const std::string&) { return debug_report{}; },
    [](stats_atom) {
      actor_stats out;
      out.name = fake_storage_state::name;
      out.state = "ok";
      return out;
    });
}

// -- actor test helpers --------------------------------------------------------

struct actor_fixture {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<caf::scoped_actor> self;
  std::shared_ptr<manual_clock> clock;

  actor_fixture() : clock(std::make_shared<manual_clock>(clock_start_ms)) {
    register_messages(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    self = std::make_unique<caf::scoped_actor>(*sys);
  }

  ~actor_fixture() {
    // Kill what the test spawned: a pending timer would keep the system up.
    for (auto& x : spawned)
      (*self)->send_exit(x, caf::exit_reason::user_shutdown);
  }

  storage_actor spawn_storage(store_mode mode) {
    auto hdl = sys->spawn(fake_storage, caf::actor_cast<caf::actor>(*self),
                          mode);
    spawned.push_back(caf::actor_cast<caf::actor>(hdl));
    return hdl;
  }

  collector_actor spawn_collector(system_collector_config cc) {
    auto hdl = sys->spawn(system_collector, std::move(cc));
    spawned.push_back(caf::actor_cast<caf::actor>(hdl));
    return hdl;
  }

  system_collector_config collector_config(storage_actor storage) {
    system_collector_config cc;
    cc.metrics.proc_root = fixture_root;
    cc.metrics.enabled = fixture_collectors;
    cc.interval = 1ms;
    cc.clock = clock;
    cc.storage = std::move(storage);
    return cc;
  }

  /// The next `n` batches the fake storage got; fewer if none came in time.
  std::vector<metric_samples> await_batches(size_t n) {
    std::vector<metric_samples> out;
    bool timed_out = false;
    while (out.size() < n && !timed_out) {
      (*self)->receive(
        [&](store_atom, metric_samples& xs) { out.push_back(std::move(xs)); },
        caf::after(std::chrono::seconds(10)) >> [&] { timed_out = true; });
    }
    return out;
  }

  /// True when no batch arrives within `wait`.
  bool no_batch_within(std::chrono::milliseconds wait) {
    bool quiet = false;
    (*self)->receive([&](store_atom, metric_samples&) { quiet = false; },
                     caf::after(wait) >> [&] { quiet = true; });
    return quiet;
  }

  actor_stats stats_of(const collector_actor& collector) {
    actor_stats out;
    (*self)
      ->request(collector, std::chrono::seconds(5), stats_atom::value)
      .receive([&](actor_stats& x) { out = std::move(x); },
               [&](caf::error& err) { out.state = "error: " + render(err); });
    return out;
  }

  std::vector<caf::actor> spawned;
};

} // namespace

TEST_CASE("the collector stores max_rounds batches stamped by its clock") {
  actor_fixture f;
  auto cc = f.collector_config(f.spawn_storage(store_mode::answer));
  cc.max_rounds = 3;
  auto collector = f.spawn_collector(std::move(cc));
  auto batches = f.await_batches(3);
  REQUIRE(batches.size() == 3);
  for (auto& batch : batches) {
    CHECK(batch.size() == fixture_samples);
    for (auto& x : batch)
      CHECK(x.timestamp_ms == clock_start_ms);
  }
  auto stats = f.stats_of(collector);
  CHECK(stats.name == "system_collector");
  CHECK(stats.state == "done");
  auto points = static_cast<int64_t>(3 * (fixture_samples));
  CHECK(stats.counters["rounds"] == 3);
  CHECK(stats.counters["points_collected"] == points);
  CHECK(stats.counters["points_stored"] == points);
  CHECK(stats.counters["store_failures"] == 0);
  CHECK(stats.counters["read_problems"] == 0);
  CHECK(stats.counters.count("rounds_skipped") == 1);
  // Done means done: the timer is not re-armed after the last round.
  CHECK(f.no_batch_within(50ms));
}

TEST_CASE("a failed store is counted and collecting goes on") {
  actor_fixture f;
  auto cc = f.collector_config(f.spawn_storage(store_mode::fail));
  cc.max_rounds = 2;
  auto collector = f.spawn_collector(std::move(cc));
  REQUIRE(f.await_batches(2).size() == 2);
  auto stats = f.stats_of(collector);
  CHECK(stats.state == "done");
  CHECK(stats.counters["rounds"] == 2);
  CHECK(stats.counters["store_failures"] == 2);
  CHECK(stats.counters["points_stored"] == 0);
}

TEST_CASE("ticks while a store is unanswered are skipped, not queued") {
  actor_fixture f;
  auto cc = f.collector_config(f.spawn_storage(store_mode::hold));
  // Only the first round comes from the timer; the test sends the others.
  cc.interval = std::chrono::hours(1);
  auto collector = f.spawn_collector(std::move(cc));
  REQUIRE(f.await_batches(1).size() == 1);
  for (int i = 0; i < 3; ++i)
    (*f.self)->send(collector, tick_atom::value);
  // Same sender, same mailbox: the stats request comes after the ticks.
  auto stats = f.stats_of(collector);
  CHECK(stats.state == "collecting");
  CHECK(stats.counters["rounds"] == 1);
  CHECK(stats.counters["rounds_skipped"] == 3);
  CHECK(stats.counters["points_stored"] == 0);
  CHECK(f.no_batch_within(50ms));
}

TEST_CASE("a collector spawned with a bad config stops instead of collecting") {
  system_collector_config c;
  CHECK(!validate(c));
  c.max_rounds = -1;
  auto reason = fleetd::test::exit_reason_of(system_collector, c);
  CHECK(reason == ec::bad_config);
  CHECK(render(reason).find("collector.rounds") != std::string::npos);
}

TEST_CASE("a bad filter pattern stops the collector, naming the option") {
  system_collector_config c;
  c.metrics.netdev_device_exclude = "^(eth";
  auto reason = fleetd::test::exit_reason_of(system_collector, c);
  CHECK(reason == ec::bad_config);
  CHECK(render(reason).find("collector.netdev.device-exclude")
        != std::string::npos);
  // Another source (load, scrape) reads no node metrics: not its options.
  c.source = [](int64_t, std::vector<std::string>*) { return metric_samples{}; };
  CHECK(!validate(c));
}

TEST_CASE("rounds start on multiples of the interval, one per interval") {
  using std::chrono::milliseconds;
  constexpr int64_t grid = 1'700'000'000'000; // a multiple of 10 s
  auto in = [](int64_t now) {
    return next_round_in(now, milliseconds(10000)).count();
  };
  // On time, a little late, a little early: the next multiple one interval on.
  CHECK(in(grid) == 10000);
  CHECK(in(grid + 3) == 9997);
  CHECK(in(grid - 2) == 10002);
  // A round that started half an interval late keeps the grid.
  CHECK(in(grid + 4999) == 5001);
  CHECK(in(grid + 5000) == 15000);
  // The first round of a node started between multiples waits for the next.
  CHECK(in(grid + 7300) == 12700);
  // Two collectors whose timers fired apart land on the same instant.
  CHECK(grid + 3 + in(grid + 3) == grid - 2 + in(grid - 2));
  CHECK(next_round_in(grid, milliseconds(0)).count() == 0);
}

TEST_CASE("a new metric_interval re-arms the timer at once; 0 goes back to "
          "the configured interval") {
  actor_fixture f;
  auto cc = f.collector_config(f.spawn_storage(store_mode::answer));
  // Only the first round comes from the configured interval.
  cc.interval = std::chrono::hours(1);
  auto collector = f.spawn_collector(std::move(cc));
  REQUIRE(f.await_batches(1).size() == 1);
  CHECK(f.no_batch_within(50ms));
  capability_report report;
  report.settings.metric_interval_ms = 1;
  (*f.self)->send(caf::actor_cast<system_collector_actor>(collector),
                  capabilities_atom::value, report);
  // Not an hour later: the new chain runs every millisecond.
  CHECK(f.await_batches(3).size() == 3);
  CHECK(f.stats_of(collector).counters["interval_ms"] == 1);
  report.settings.metric_interval_ms = 0;
  (*f.self)->send(caf::actor_cast<system_collector_actor>(collector),
                  capabilities_atom::value, report);
  CHECK(f.stats_of(collector).counters["interval_ms"] == 3'600'000);
}
