// sync_now against stand-in sync actors and storage whose figures the test
// sets: done is judged by busy and what is queued or unbatched, not by a
// sync actor's state text; no sync actor answers at once; a timeout gives
// the report with "acked": false; the store is asked only once the sync
// actors are idle, and less often as the wait grows.
#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "edge/fake_storage.hpp"
#include "edge/sync_now.hpp"
#include "messages/register.hpp"

using namespace fleetd;
using namespace std::chrono_literals;

namespace {

struct figures {
  std::atomic<int64_t> busy{0};
  std::atomic<int64_t> queued{0};
  std::atomic<int64_t> storage_asked{0};
  std::string sync_state = "idle";
};

sync_actor::behavior_type stand_in_sync(sync_actor::pointer,
                                        std::shared_ptr<figures> f) {
  return {
    [](tick_atom) {},
    [](tick_atom, int64_t) {},
    [](store_atom) {},
    [](capabilities_atom, const capability_report&) {},
    [f](stats_atom) {
      actor_stats out;
      out.name = "sync_metrics";
      out.state = f->sync_state;
      out.counters["busy"] = f->busy;
      return out;
    },
  };
}

storage_actor::behavior_type stand_in_storage(storage_actor::pointer,
                                              std::shared_ptr<figures> f) {
  return test::fake_storage_behavior(
    [](store_atom, const metric_samples&) { return int64_t{0}; },
    [](event_atom, const std::string&, const std::string&) {},
    [](debug_atom, const std::string&) { return debug_report{}; },
    [f](stats_atom) {
      ++f->storage_asked;
      actor_stats out;
      out.counters["queued_batches"] = f->queued;
      out.counters["unbatched_points"] = 0;
      return out;
    });
}

struct fixture {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<caf::scoped_actor> self;
  std::shared_ptr<figures> f = std::make_shared<figures>();
  std::vector<caf::actor> spawned;

  fixture() {
    register_messages(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    self = std::make_unique<caf::scoped_actor>(*sys);
  }

  ~fixture() {
    for (auto& x : spawned)
      (*self)->send_exit(x, caf::exit_reason::user_shutdown);
  }

  sync_now_actor spawn(bool with_sync) {
    sync_now_config c;
    c.storage = sys->spawn(stand_in_storage, f);
    spawned.push_back(caf::actor_cast<caf::actor>(c.storage));
    if (with_sync) {
      c.syncs.emplace_back("sync_metrics", sys->spawn(stand_in_sync, f));
      spawned.push_back(caf::actor_cast<caf::actor>(c.syncs.back().second));
    }
    auto now = sys->spawn(sync_now, c);
    spawned.push_back(caf::actor_cast<caf::actor>(now));
    return now;
  }

  caf::expected<debug_report> ask(const sync_now_actor& now,
                                  const std::string& what) {
    caf::expected<debug_report> out{caf::error{}};
    (*self)
      ->request(now, 10s, debug_atom::value, what)
      .receive([&](debug_report& r) { out = std::move(r); },
               [&](caf::error& err) { out = std::move(err); });
    return out;
  }
};

} // namespace

TEST_CASE("a quiet stream with a stale error is done: not busy, nothing "
          "queued or unbatched") {
  fixture fx;
  fx.f->sync_state = "retrying: connection refused";
  auto r = fx.ask(fx.spawn(true), "sync now 5000");
  REQUIRE(r);
  CHECK(r->json.rfind("{\"acked\":true", 0) == 0);
  CHECK(r->text.rfind("sync now: every stream acked", 0) == 0);
}

TEST_CASE("without sync actors sync now answers at once") {
  fixture fx;
  auto r = fx.ask(fx.spawn(false), "sync now 5000");
  REQUIRE(r);
  CHECK(r->json.rfind("{\"acked\":true", 0) == 0);
  CHECK(fx.f->storage_asked == 0);
}

TEST_CASE("past the timeout the report says not acked; the store is asked "
          "with a growing wait") {
  fixture fx;
  fx.f->queued = 1;
  auto r = fx.ask(fx.spawn(true), "sync now 600");
  REQUIRE(r);
  CHECK(r->text.rfind("sync now: timed out after ", 0) == 0);
  CHECK(r->json.rfind("{\"acked\":false", 0) == 0);
  CHECK(r->json.find("\"queued_batches\":1") != std::string::npos);
  // 50, 100, 200, 250 ms: at most 4 looks in 600 ms (every 50 ms made 12).
  CHECK(fx.f->storage_asked <= 4);
  CHECK(fx.f->storage_asked >= 1);
}

TEST_CASE("while a sync actor is busy the store is not asked") {
  fixture fx;
  fx.f->busy = 1;
  auto r = fx.ask(fx.spawn(true), "sync now 300");
  REQUIRE(r);
  CHECK(r->json.rfind("{\"acked\":false", 0) == 0);
  CHECK(fx.f->storage_asked == 0);
}
