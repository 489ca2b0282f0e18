#include "edge/backoff.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/after.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "edge/fake_storage.hpp"
#include "helpers.hpp"

#include "messages/error.hpp"
#include "messages/register.hpp"

using namespace fleetd;
using namespace std::chrono_literals;

namespace {

constexpr int64_t clock_start_ms = 1'700'000'000'000;

link_report failed(std::string stream, std::string error,
                   int64_t retry_after_ms = 0) {
  link_report x;
  x.stream = std::move(stream);
  x.ok = false;
  x.retry_after_ms = retry_after_ms;
  x.error = std::move(error);
  return x;
}

link_report delivered(std::string stream, bool backlog = false,
                      int64_t retry_after_ms = 0) {
  link_report x;
  x.stream = std::move(stream);
  x.ok = true;
  x.backlog = backlog;
  x.retry_after_ms = retry_after_ms;
  return x;
}

/// The largest delay full jitter may pick after `n` failures.
int64_t ceiling(int64_t base, int64_t cap, int64_t n) {
  auto x = base;
  for (int64_t i = 1; i < n && x < cap; ++i)
    x *= 2;
  return std::min(x, cap);
}

// -- a storage that only keeps events -----------------------------------------

struct event_storage_state {
  std::vector<std::pair<std::string, std::string>> events;
  static inline const char* name = "event_storage";
};

/// Answers `debug "events"` with one "kind: message" line per event.
storage_actor::behavior_type
event_storage(storage_actor::stateful_pointer<event_storage_state> self) {
  return test::fake_storage_behavior(
    [](store_atom, const metric_samples&) { return int64_t{0}; },
    [self](event_atom, const std::string& kind, const std::string& message) {
      self->state.events.emplace_back(kind, message);
    },
    [self](debug_atom, const std::string&) {
      debug_report out;
      for (auto& [kind, message] : self->state.events)
        out.text += kind + ": " + message + "\n";
      return out;
    },
    [self](stats_atom) {
      actor_stats out;
      out.name = event_storage_state::name;
      out.counters["events"] = static_cast<int64_t>(self->state.events.size());
      return out;
    });
}

// -- actor test helpers --------------------------------------------------------

struct fixture {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<caf::scoped_actor> self;
  std::shared_ptr<manual_clock> clock;
  std::vector<caf::actor> spawned;

  fixture() : clock(std::make_shared<manual_clock>(clock_start_ms)) {
    register_messages(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    self = std::make_unique<caf::scoped_actor>(*sys);
  }

  ~fixture() {
    for (auto& x : spawned)
      (*self)->send_exit(x, caf::exit_reason::user_shutdown);
  }

  /// base 1 s, cap 1 min, threshold 3, probe timeout 30 s, seed 42.
  backoff_config config() {
    backoff_config bc;
    bc.base = 1000ms;
    bc.cap = 60000ms;
    bc.breaker_threshold = 3;
    bc.probe_timeout = 30000ms;
    bc.seed = 42;
    bc.clock = clock;
    return bc;
  }

  backoff_actor spawn_backoff(backoff_config bc) {
    auto hdl = sys->spawn(backoff, std::move(bc));
    spawned.push_back(caf::actor_cast<caf::actor>(hdl));
    return hdl;
  }

  storage_actor spawn_storage() {
    auto hdl = sys->spawn(event_storage);
    spawned.push_back(caf::actor_cast<caf::actor>(hdl));
    return hdl;
  }

  int64_t permit(const backoff_actor& hdl, const std::string& stream) {
    int64_t out = -1;
    (*self)
      ->request(hdl, 5s, permit_atom::value, stream)
      .receive([&](int64_t x) { out = x; },
               [&](caf::error& err) { FAIL("no permit: " << render(err)); });
    return out;
  }

  /// Reports arrive before any later request of this test (one sender).
  void report(const backoff_actor& hdl, link_report x) {
    (*self)->send(hdl, report_atom::value, std::move(x));
  }

  link_status link(const backoff_actor& hdl) {
    link_status out;
    (*self)
      ->request(hdl, 5s, link_atom::value)
      .receive([&](link_status& x) { out = std::move(x); },
               [&](caf::error& err) { FAIL("no status: " << render(err)); });
    return out;
  }

  actor_stats stats(const backoff_actor& hdl) {
    actor_stats out;
    (*self)
      ->request(hdl, 5s, stats_atom::value)
      .receive([&](actor_stats& x) { out = std::move(x); },
               [&](caf::error& err) { FAIL("no stats: " << render(err)); });
    return out;
  }

  /// The events the storage got, one "kind: message" per line. Ask the
  /// backoff actor something first: what it sent before is then queued
  /// ahead of this request.
  std::string events(const storage_actor& hdl) {
    std::string out;
    (*self)
      ->request(hdl, 5s, debug_atom::value, std::string{"events"})
      .receive([&](debug_report& x) { out = std::move(x.text); },
               [&](caf::error& err) { FAIL("no events: " << render(err)); });
    return out;
  }

  /// `n` failures of a stream that asked no permit: each one counts.
  void fail_times(const backoff_actor& hdl, int n,
                  const std::string& error = "connection refused") {
    for (int i = 0; i < n; ++i)
      report(hdl, failed("metrics", error));
  }

  /// Moves the clock to the next allowed attempt (or leaves it there).
  void advance_to_next_attempt(const backoff_actor& hdl) {
    auto next = link(hdl).next_attempt_ms;
    if (next > clock->now_ms())
      clock->set(next);
  }
};

} // namespace

// -- full_jitter_delay -----------------------------------------------------------

TEST_CASE("full jitter stays within min(cap, base * 2^(n-1)) and the first "
          "draws of nearby seeds spread over that range") {
  constexpr int64_t base = 1000;
  constexpr int64_t cap = 60000;
  for (int64_t n = 1; n <= 12; ++n) {
    auto top = ceiling(base, cap, n);
    std::set<int64_t> seen;
    int64_t largest = 0;
    for (uint64_t seed = 1; seed <= 200; ++seed) {
      auto rng = make_jitter_rng(seed);
      auto d = full_jitter_delay(std::chrono::milliseconds{base},
                                 std::chrono::milliseconds{cap}, n, rng)
                 .count();
      CHECK(d >= 0);
      CHECK(d <= top);
      seen.insert(d);
      largest = std::max(largest, d);
    }
    INFO("failures: " << n);
    CHECK(seen.size() > 100);
    // The ceiling really grows: some draws land in its upper half.
    CHECK(largest > top / 2);
  }
}

TEST_CASE("the same seed gives the same delays") {
  auto a = make_jitter_rng(99);
  auto b = make_jitter_rng(99);
  auto c = make_jitter_rng(100);
  std::vector<int64_t> xs, ys, zs;
  for (int64_t n = 1; n <= 8; ++n) {
    xs.push_back(full_jitter_delay(1000ms, 60000ms, n, a).count());
    ys.push_back(full_jitter_delay(1000ms, 60000ms, n, b).count());
    zs.push_back(full_jitter_delay(1000ms, 60000ms, n, c).count());
  }
  CHECK(xs == ys);
  CHECK(xs != zs);
}

TEST_CASE("full jitter is 0 without failures and never overflows past the "
          "cap") {
  auto rng = make_jitter_rng(7);
  CHECK(full_jitter_delay(1000ms, 60000ms, 0, rng).count() == 0);
  for (int i = 0; i < 100; ++i) {
    auto d = full_jitter_delay(1000ms, 60000ms, 10'000, rng).count();
    CHECK(d >= 0);
    CHECK(d <= 60000);
  }
}

TEST_CASE("a config that cannot work is refused with the option's name") {
  backoff_config ok;
  CHECK(!validate(ok));
  auto bad_base = ok;
  bad_base.base = 0ms;
  CHECK(render(validate(bad_base)).find("sync.backoff-base") != std::string::npos);
  auto bad_cap = ok;
  bad_cap.cap = 500ms;
  CHECK(render(validate(bad_cap)).find("sync.backoff-cap") != std::string::npos);
  auto bad_threshold = ok;
  bad_threshold.breaker_threshold = 0;
  CHECK(render(validate(bad_threshold)).find("sync.breaker-threshold")
        != std::string::npos);
  auto bad_probe = ok;
  bad_probe.probe_timeout = 0ms;
  CHECK(render(validate(bad_probe)).find("probe_timeout")
        != std::string::npos);
}

TEST_CASE("an actor spawned with a bad config stops instead of answering") {
  fixture f;
  auto bc = f.config();
  bc.breaker_threshold = 0;
  auto hdl = f.spawn_backoff(std::move(bc));
  bool refused = false;
  (*f.self)
    ->request(hdl, 5s, permit_atom::value, std::string{"metrics"})
    .receive([&](int64_t) {}, [&](caf::error&) { refused = true; });
  CHECK(refused);
}

// -- the actor -------------------------------------------------------------------

TEST_CASE("every stream may send at once while the link is online") {
  fixture f;
  auto hdl = f.spawn_backoff(f.config());
  for (auto stream : {"metrics", "logs", "events", "metrics"})
    CHECK(f.permit(hdl, stream) == 0);
  auto status = f.link(hdl);
  CHECK(status.state == "online");
  CHECK(status.consecutive_failures == 0);
  CHECK(status.next_attempt_ms == 0);
  CHECK(status.last_error.empty());
  auto stats = f.stats(hdl);
  CHECK(stats.name == "backoff");
  CHECK(stats.state == "online");
  CHECK(stats.counters["permits_granted"] == 4);
  CHECK(stats.counters["permits_delayed"] == 0);
  CHECK(stats.counters["next_attempt_in_ms"] == 0);
}

TEST_CASE("each failure bars every stream for exactly the jitter the seed "
          "gives, within a ceiling that doubles up to the cap") {
  constexpr int64_t base = 1000;
  constexpr int64_t cap = 8000;
  fixture f;
  std::set<int64_t> waits;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    auto bc = f.config();
    bc.cap = std::chrono::milliseconds{cap};
    bc.breaker_threshold = 100;
    bc.seed = seed;
    auto hdl = f.spawn_backoff(bc);
    // The same draws the actor makes, in the same order.
    auto rng = make_jitter_rng(seed);
    for (int64_t n = 1; n <= 6; ++n) {
      INFO("seed " << seed << ", failure " << n);
      // The probe (or, at first, any stream) fails.
      f.report(hdl, failed("metrics", "timeout"));
      auto expected = full_jitter_delay(bc.base, bc.cap, n, rng).count();
      auto now = f.clock->now_ms();
      auto status = f.link(hdl);
      CHECK(status.consecutive_failures == n);
      CHECK(status.state == "retrying");
      CHECK(status.last_error == "timeout");
      auto wait = status.next_attempt_ms - now;
      CHECK(wait == expected);
      CHECK(wait >= 0);
      CHECK(wait <= ceiling(base, cap, n));
      waits.insert(wait);
      if (wait > 0) {
        CHECK(f.permit(hdl, "metrics") == wait);
        CHECK(f.permit(hdl, "logs") == wait);
        f.clock->advance(wait - 1);
        CHECK(f.permit(hdl, "metrics") == 1);
        f.clock->advance(1);
      }
      // The wait is over: metrics is the probe.
      CHECK(f.permit(hdl, "metrics") == 0);
      CHECK(f.link(hdl).state == "probing");
    }
  }
  // Ten seeds times six failures are not all the same delay.
  CHECK(waits.size() > 10);
  CHECK(*waits.rbegin() > base);
}

TEST_CASE("streams that fail together count as one failure") {
  fixture f;
  auto hdl = f.spawn_backoff(f.config());
  for (auto stream : {"metrics", "logs", "events"})
    REQUIRE(f.permit(hdl, stream) == 0);
  f.report(hdl, failed("metrics", "connection reset"));
  f.report(hdl, failed("logs", "connection reset"));
  f.report(hdl, failed("events", "timeout"));
  auto status = f.link(hdl);
  CHECK(status.consecutive_failures == 1);
  CHECK(status.state == "retrying");
  CHECK(status.last_error == "timeout");
  auto stats = f.stats(hdl);
  CHECK(stats.counters["failures_total"] == 3);
  CHECK(stats.counters["consecutive_failures"] == 1);
  CHECK(stats.counters["went_offline"] == 0);
}

TEST_CASE("the breaker opens after breaker_threshold consecutive failures and "
          "the link says offline") {
  fixture f;
  auto hdl = f.spawn_backoff(f.config());
  f.fail_times(hdl, 2, "connection refused");
  auto status = f.link(hdl);
  CHECK(status.state == "retrying");
  CHECK(status.consecutive_failures == 2);
  f.fail_times(hdl, 1, "connection refused");
  status = f.link(hdl);
  CHECK(status.state == "offline");
  CHECK(status.consecutive_failures == 3);
  CHECK(status.last_error == "connection refused");
  CHECK(status.next_attempt_ms >= f.clock->now_ms());
  CHECK(status.next_attempt_ms <= f.clock->now_ms() + 4000);
  auto stats = f.stats(hdl);
  CHECK(stats.state == "offline: connection refused");
  CHECK(stats.counters["consecutive_failures"] == 3);
  CHECK(stats.counters["failures_total"] == 3);
  CHECK(stats.counters["went_offline"] == 1);
  CHECK(stats.counters["next_attempt_in_ms"]
        == status.next_attempt_ms - f.clock->now_ms());
  // More failures keep it offline but do not open it twice.
  f.advance_to_next_attempt(hdl);
  f.fail_times(hdl, 1);
  CHECK(f.link(hdl).state == "offline");
  CHECK(f.stats(hdl).counters["went_offline"] == 1);
}

TEST_CASE("a half-open breaker lets exactly one probe through while the "
          "others wait") {
  fixture f;
  auto hdl = f.spawn_backoff(f.config());
  f.fail_times(hdl, 3);
  f.advance_to_next_attempt(hdl);
  CHECK(f.permit(hdl, "logs") == 0);
  auto status = f.link(hdl);
  CHECK(status.state == "probing");
  CHECK(status.consecutive_failures == 3);
  // Others poll every `base` (1 s) while the probe is out.
  f.clock->advance(probe_join_ms + 1);
  CHECK(f.permit(hdl, "metrics") == 1000);
  CHECK(f.permit(hdl, "events") == 1000);
  f.clock->advance(1000);
  CHECK(f.permit(hdl, "metrics") == 1000);
  // The probe's own stream may ask again: it still holds the probe.
  CHECK(f.permit(hdl, "logs") == 0);
  auto stats = f.stats(hdl);
  CHECK(stats.state == "probing: connection refused");
  CHECK(stats.counters["probes"] == 1);
  CHECK(stats.counters["permits_delayed"] == 3);
}

TEST_CASE("streams due with the half-open probe join it, and a probe that "
          "gets through wakes the streams told to wait") {
  fixture f;
  auto bc = f.config();
  bc.events_stream.clear();
  auto hdl = f.spawn_backoff(std::move(bc));
  f.fail_times(hdl, 3);
  f.advance_to_next_attempt(hdl);
  REQUIRE(f.permit(hdl, "metrics") == 0);
  // Within probe_join_ms: the same request as the probe.
  f.clock->advance(probe_join_ms);
  CHECK(f.permit(hdl, "logs") == 0);
  // Past it: told to wait, as before.
  f.clock->advance(1);
  CHECK(f.permit(hdl, "events") > 0);
  CHECK(f.stats(hdl).counters["probes"] == 1);
  // The joined stream failing with the probe counts one failure, not two.
  f.report(hdl, failed("metrics", "connection refused"));
  f.report(hdl, failed("logs", "connection refused"));
  CHECK(f.link(hdl).consecutive_failures == 4);
  f.advance_to_next_attempt(hdl);
  REQUIRE(f.permit(hdl, "metrics") == 0);
  f.clock->advance(probe_join_ms + 1);
  REQUIRE(f.permit(hdl, "events") > 0);
  // The probe gets through: the waiting stream is woken with a tick.
  f.report(hdl, delivered("metrics"));
  CHECK(f.link(hdl).state == "online");
  bool woken = false;
  (*f.self)->receive([&](tick_atom) { woken = true; },
                     caf::after(5s) >> [] {});
  CHECK(woken);
  CHECK(f.permit(hdl, "events") == 0);
}

TEST_CASE("a successful probe brings the link online for every stream") {
  fixture f;
  auto bc = f.config();
  bc.events_stream.clear();
  auto hdl = f.spawn_backoff(std::move(bc));
  f.fail_times(hdl, 3);
  f.advance_to_next_attempt(hdl);
  REQUIRE(f.permit(hdl, "metrics") == 0);
  f.clock->advance(probe_join_ms + 1);
  REQUIRE(f.permit(hdl, "logs") > 0);
  f.report(hdl, delivered("metrics"));
  auto status = f.link(hdl);
  CHECK(status.state == "online");
  CHECK(status.consecutive_failures == 0);
  CHECK(status.next_attempt_ms == 0);
  CHECK(status.last_error.empty());
  CHECK(f.permit(hdl, "logs") == 0);
  CHECK(f.permit(hdl, "metrics") == 0);
  auto stats = f.stats(hdl);
  CHECK(stats.state == "online");
  CHECK(stats.counters["went_online"] == 1);
  CHECK(stats.counters["went_offline"] == 1);
}

TEST_CASE("a failed probe backs off again with the next, doubled ceiling") {
  fixture f;
  auto bc = f.config();
  auto hdl = f.spawn_backoff(bc);
  auto rng = make_jitter_rng(bc.seed);
  for (int64_t n = 1; n <= 3; ++n)
    full_jitter_delay(bc.base, bc.cap, n, rng);
  f.fail_times(hdl, 3);
  f.advance_to_next_attempt(hdl);
  REQUIRE(f.permit(hdl, "metrics") == 0);
  f.report(hdl, failed("metrics", "tls handshake failed"));
  auto expected = full_jitter_delay(bc.base, bc.cap, 4, rng).count();
  auto status = f.link(hdl);
  CHECK(status.state == "offline");
  CHECK(status.consecutive_failures == 4);
  CHECK(status.last_error == "tls handshake failed");
  CHECK(status.next_attempt_ms - f.clock->now_ms() == expected);
  CHECK(expected <= 8000);
  if (expected > 0)
    CHECK(f.permit(hdl, "metrics") == expected);
  CHECK(f.stats(hdl).counters["went_offline"] == 1);
}

TEST_CASE("a probe that never reports is replaced after probe_timeout") {
  fixture f;
  auto bc = f.config();
  bc.probe_timeout = 5000ms;
  auto hdl = f.spawn_backoff(std::move(bc));
  f.fail_times(hdl, 3);
  f.advance_to_next_attempt(hdl);
  REQUIRE(f.permit(hdl, "metrics") == 0);
  f.clock->advance(probe_join_ms + 1);
  CHECK(f.permit(hdl, "logs") == 1000);
  f.clock->advance(4500 - probe_join_ms - 1);
  // Never past the moment a new probe may go.
  CHECK(f.permit(hdl, "logs") == 500);
  f.clock->advance(500);
  CHECK(f.permit(hdl, "logs") == 0);
  CHECK(f.link(hdl).state == "probing");
  // Now logs holds the probe; metrics waits like everyone else.
  f.clock->advance(probe_join_ms + 1);
  CHECK(f.permit(hdl, "metrics") == 1000);
  CHECK(f.stats(hdl).counters["probes"] == 2);
  // The lost probe timing out alone is no failure.
  CHECK(f.link(hdl).consecutive_failures == 3);
}

TEST_CASE("retry_after from the cloud is obeyed even when the jitter is 0") {
  fixture f;
  auto bc = f.config();
  // Jitter is 0 or 1 ms: only the hint can make the wait long.
  bc.base = 1ms;
  bc.cap = 1ms;
  auto hdl = f.spawn_backoff(std::move(bc));
  f.report(hdl, failed("metrics", "503 service unavailable", 60000));
  CHECK(f.permit(hdl, "metrics") == 60000);
  CHECK(f.permit(hdl, "events") == 60000);
  f.clock->advance(59999);
  CHECK(f.permit(hdl, "logs") == 1);
  f.clock->advance(1);
  CHECK(f.permit(hdl, "logs") == 0);
  auto status = f.link(hdl);
  CHECK(status.state == "probing");
  CHECK(status.consecutive_failures == 1);
}

TEST_CASE("a delivered batch with a retry_after hint delays everyone but "
          "counts no failure") {
  fixture f;
  auto hdl = f.spawn_backoff(f.config());
  f.report(hdl, delivered("metrics", true, 5000));
  auto status = f.link(hdl);
  CHECK(status.state == "online");
  CHECK(status.consecutive_failures == 0);
  CHECK(status.next_attempt_ms == f.clock->now_ms() + 5000);
  CHECK(f.permit(hdl, "metrics") == 5000);
  CHECK(f.permit(hdl, "events") == 5000);
  f.clock->advance(5000);
  // Online, so no probe: everyone goes.
  CHECK(f.permit(hdl, "metrics") == 0);
  CHECK(f.permit(hdl, "events") == 0);
  auto stats = f.stats(hdl);
  CHECK(stats.counters["failures_total"] == 0);
  CHECK(stats.counters["probes"] == 0);
  CHECK(stats.counters["permits_delayed"] == 2);
}

TEST_CASE("a late success from an exchange sent before the failure brings "
          "the link back at once, keeping only its own retry_after") {
  fixture f;
  auto bc = f.config();
  bc.base = 60000ms;
  bc.events_stream.clear();
  auto hdl = f.spawn_backoff(std::move(bc));
  REQUIRE(f.permit(hdl, "metrics") == 0);
  REQUIRE(f.permit(hdl, "logs") == 0);
  f.report(hdl, failed("metrics", "timeout"));
  auto barred = f.link(hdl).next_attempt_ms - f.clock->now_ms();
  // Longer than the hint below, so keeping the failure's window would show.
  REQUIRE(barred > 2010);
  f.clock->advance(10);
  // The cloud did answer logs, slowly, and asks for 2 s of quiet.
  f.report(hdl, delivered("logs", false, 2000));
  auto status = f.link(hdl);
  CHECK(status.state == "online");
  CHECK(status.consecutive_failures == 0);
  CHECK(status.next_attempt_ms == f.clock->now_ms() + 2000);
  CHECK(f.permit(hdl, "metrics") == 2000);
  f.clock->advance(2000);
  CHECK(f.permit(hdl, "metrics") == 0);
  CHECK(f.permit(hdl, "logs") == 0);
}

TEST_CASE("after the link comes back events go first until they report no "
          "backlog") {
  fixture f;
  auto hdl = f.spawn_backoff(f.config());
  // Events waiting when the link went: they are what goes first.
  f.report(hdl, delivered("events", true));
  f.fail_times(hdl, 3);
  f.advance_to_next_attempt(hdl);
  // The events stream never asks for the probe: metrics probes after the
  // events-first bound.
  f.clock->advance(10000);
  REQUIRE(f.permit(hdl, "metrics") == 0);
  f.report(hdl, delivered("metrics"));
  REQUIRE(f.link(hdl).state == "online");
  CHECK(f.permit(hdl, "metrics") == events_first_poll_ms);
  CHECK(f.permit(hdl, "logs") == events_first_poll_ms);
  CHECK(f.permit(hdl, "events") == 0);
  f.report(hdl, delivered("events", true));
  f.clock->advance(3000);
  CHECK(f.permit(hdl, "metrics") == events_first_poll_ms);
  CHECK(f.permit(hdl, "events") == 0);
  f.report(hdl, delivered("events", false));
  CHECK(f.permit(hdl, "metrics") == 0);
  CHECK(f.permit(hdl, "logs") == 0);
  // Online, a backlog of events holds nobody back.
  f.report(hdl, delivered("events", true));
  CHECK(f.permit(hdl, "metrics") == 0);
  CHECK(f.stats(hdl).counters["permits_delayed"] == 3);
}

TEST_CASE("events go first after a recovery below the breaker threshold too, "
          "unless the events stream brought the link back") {
  fixture f;
  auto hdl = f.spawn_backoff(f.config());
  f.report(hdl, failed("events", "timeout"));
  f.advance_to_next_attempt(hdl);
  f.clock->advance(10000);
  REQUIRE(f.permit(hdl, "metrics") == 0);
  f.fail_times(hdl, 1);
  f.advance_to_next_attempt(hdl);
  f.clock->advance(10000);
  REQUIRE(f.permit(hdl, "logs") == 0);
  f.report(hdl, delivered("logs"));
  CHECK(f.permit(hdl, "logs") == events_first_poll_ms);
  f.report(hdl, delivered("events"));
  CHECK(f.permit(hdl, "logs") == 0);
  // Now events is the probe and reports it has nothing more to send.
  f.fail_times(hdl, 1);
  f.advance_to_next_attempt(hdl);
  REQUIRE(f.permit(hdl, "events") == 0);
  f.report(hdl, delivered("events", false));
  CHECK(f.permit(hdl, "metrics") == 0);
}

TEST_CASE("an idle events stream holds nobody back after the link comes "
          "back") {
  fixture f;
  auto hdl = f.spawn_backoff(f.config());
  // The events stream's last word: nothing waiting.
  f.report(hdl, delivered("events", false));
  f.fail_times(hdl, 3);
  f.advance_to_next_attempt(hdl);
  REQUIRE(f.permit(hdl, "metrics") == 0);
  f.report(hdl, delivered("metrics"));
  REQUIRE(f.link(hdl).state == "online");
  CHECK(f.permit(hdl, "metrics") == 0);
  CHECK(f.permit(hdl, "logs") == 0);
}

TEST_CASE("a stuck events stream holds the others back no longer than "
          "events_first_limit") {
  fixture f;
  auto hdl = f.spawn_backoff(f.config());
  f.report(hdl, failed("events", "timeout"));
  f.fail_times(hdl, 3);
  f.advance_to_next_attempt(hdl);
  f.clock->advance(10000);
  REQUIRE(f.permit(hdl, "metrics") == 0);
  f.report(hdl, delivered("metrics"));
  CHECK(f.permit(hdl, "metrics") == events_first_poll_ms);
  f.clock->advance(9990);
  // Never past the limit.
  CHECK(f.permit(hdl, "metrics") == 10);
  f.clock->advance(10);
  CHECK(f.permit(hdl, "metrics") == 0);
  CHECK(f.permit(hdl, "logs") == 0);
}

TEST_CASE("going offline and coming back are recorded as events, with the "
          "failures, the last error and the time offline") {
  fixture f;
  auto storage = f.spawn_storage();
  auto bc = f.config();
  bc.storage = storage;
  auto hdl = f.spawn_backoff(std::move(bc));
  // Below the threshold: retrying is no transition.
  f.fail_times(hdl, 2, "connection refused");
  REQUIRE(f.link(hdl).state == "retrying");
  CHECK(f.events(storage).empty());
  f.fail_times(hdl, 1, "no route to host");
  REQUIRE(f.link(hdl).state == "offline");
  CHECK(f.events(storage)
        == "link_offline: link offline after 3 consecutive failures; last "
           "error: no route to host\n");
  f.clock->advance(90'000);
  REQUIRE(f.permit(hdl, "metrics") == 0);
  f.report(hdl, delivered("metrics"));
  REQUIRE(f.link(hdl).state == "online");
  CHECK(f.events(storage)
        == "link_offline: link offline after 3 consecutive failures; last "
           "error: no route to host\n"
           "link_online: link online again after 90.0 s offline (3 "
           "consecutive failures; last error: no route to host)\n");
  // One failure and back: the breaker never opened, nothing to record.
  f.fail_times(hdl, 1);
  f.advance_to_next_attempt(hdl);
  REQUIRE(f.permit(hdl, "metrics") == 0);
  f.report(hdl, delivered("metrics"));
  REQUIRE(f.link(hdl).state == "online");
  auto stats = f.stats(hdl);
  CHECK(stats.counters["went_offline"] == 1);
  CHECK(stats.counters["went_online"] == 1);
  std::string all = f.events(storage);
  CHECK(std::count(all.begin(), all.end(), '\n') == 2);
}

TEST_CASE("events held back by an outage take the half-open probe") {
  fixture f;
  auto hdl = f.spawn_backoff(f.config());
  f.report(hdl, failed("events", "timeout"));
  f.fail_times(hdl, 3);
  f.advance_to_next_attempt(hdl);
  // Metrics asks first but waits: the probe is the events stream's.
  CHECK(f.permit(hdl, "metrics") == events_first_poll_ms);
  CHECK(f.permit(hdl, "events") == 0);
  CHECK(f.link(hdl).state == "probing");
  CHECK(f.permit(hdl, "metrics") > 0);
  f.report(hdl, delivered("events", false));
  CHECK(f.link(hdl).state == "online");
  CHECK(f.permit(hdl, "metrics") == 0);
  SUBCASE("an events stream that never asks does not block the probe") {
    f.fail_times(hdl, 3);
    f.report(hdl, failed("events", "timeout"));
    f.advance_to_next_attempt(hdl);
    f.clock->advance(10000);
    CHECK(f.permit(hdl, "metrics") == 0);
  }
}

// -- health probes while offline -------------------------------------------------

namespace {

struct fake_link_state {
  /// The answers to GET /healthz, in order; the last one repeats.
  std::vector<sync_ack> answers;
  size_t asked = 0;
  static inline const char* name = "fake_link";
};

/// A cloud link whose batches all fail and whose health probes get
/// `answers`: what a cloud (or something posing as one) might send.
cloud_link_actor::behavior_type
fake_link(cloud_link_actor::stateful_pointer<fake_link_state> self,
          std::vector<sync_ack> answers) {
  self->state.answers = std::move(answers);
  return {
    [](sync_atom, const std::string&) -> caf::result<sync_ack> {
      return make_error(ec::unreachable, "connection refused");
    },
    [](tick_atom, int64_t) {},
    [self](health_atom) {
      auto& st = self->state;
      auto i = std::min(st.asked++, st.answers.size() - 1);
      return st.answers[i];
    },
    [self](stats_atom) {
      actor_stats out;
      out.name = fake_link_state::name;
      out.counters["asked"] = static_cast<int64_t>(self->state.asked);
      return out;
    },
  };
}

sync_ack health(unsigned status, int64_t retry_after_ms = 0) {
  sync_ack a;
  a.status = status;
  a.success = status == 200;
  a.retry_after_ms = retry_after_ms;
  return a;
}

/// Polls the backoff actor's stats until `pred` holds (real time: the probe
/// timer runs on the scheduler while the manual clock stands still).
bool stats_until(fixture& f, const backoff_actor& hdl,
                 const std::function<bool(actor_stats&)>& pred) {
  return test::eventually(
    [&] {
      auto st = f.stats(hdl);
      return pred(st);
    },
    5s);
}

} // namespace

TEST_CASE("offline, a health probe that succeeds brings the link back at "
          "once and wakes the streams told to wait") {
  fixture f;
  auto bc = f.config();
  bc.probe_interval = 20ms;
  bc.cap = 3600000ms;
  bc.link = f.sys->spawn(fake_link, std::vector<sync_ack>{health(503),
                                                           health(200)});
  f.spawned.push_back(caf::actor_cast<caf::actor>(bc.link));
  auto hdl = f.spawn_backoff(std::move(bc));
  f.fail_times(hdl, 8);
  REQUIRE(f.link(hdl).state == "offline");
  // The batch backoff is long now; this stream is told to wait for it.
  REQUIRE(f.permit(hdl, "metrics") > 0);
  REQUIRE(stats_until(f, hdl, [](actor_stats& st) {
    return st.counters["health_probes_ok"] == 1;
  }));
  auto st = f.stats(hdl);
  CHECK(st.counters["health_probes"] == 2);
  CHECK(st.counters["went_online"] == 1);
  // Probes count no failure; the one success resets everything.
  CHECK(st.counters["failures_total"] == 8);
  CHECK(f.link(hdl).state == "online");
  CHECK(f.permit(hdl, "metrics") == 0);
  // The waiting stream was woken with a tick rather than left to its timer.
  bool woken = false;
  (*f.self)->receive([&](tick_atom) { woken = true; },
                     caf::after(5s) >> [] {});
  CHECK(woken);
}

TEST_CASE("retry_after hints are clamped to [0, max(cap, 5 min)] and "
          "counted, from batches and from health probes") {
  fixture f;
  auto bc = f.config(); // cap 1 min: the ceiling is 5 min
  bc.probe_interval = 20ms;
  bc.link = f.sys->spawn(fake_link, std::vector<sync_ack>{
                                      health(503, INT64_MAX)});
  f.spawned.push_back(caf::actor_cast<caf::actor>(bc.link));
  auto hdl = f.spawn_backoff(std::move(bc));
  auto now = f.clock->now_ms();
  f.report(hdl, failed("metrics", "busy", -5));
  f.report(hdl, failed("logs", "busy", INT64_MIN));
  f.report(hdl, failed("events", "refused"));
  CHECK(f.stats(hdl).counters["hints_clamped"] == 2);
  // Offline now: the first probe's hostile hint is clamped, so the next
  // probe is 5 min away, not never (nor an overflow into the past).
  REQUIRE(stats_until(f, hdl, [](actor_stats& st) {
    return st.counters["hints_clamped"] == 3;
  }));
  auto st = f.stats(hdl);
  CHECK(st.counters["next_probe_in_ms"] == 300000);
  CHECK(st.counters["health_probes"] == 1);
  CHECK(f.link(hdl).state == "offline");
  // A batch's hostile hint bars the batches for 5 min, not forever.
  f.report(hdl, failed("metrics", "busy", INT64_MAX));
  CHECK(f.link(hdl).next_attempt_ms == now + 300000);
  CHECK(f.stats(hdl).counters["hints_clamped"] == 4);
}
