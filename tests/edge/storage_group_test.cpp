// storage.group-window: the stores of one collection round share one commit
// and each is answered only after it; a commit made early (a batch) ends the
// group, a failed one fails every store in it, and a power cut never loses a
// store that was answered.
#include "edge/sqlite_store.hpp"
#include "edge/storage.hpp"

#include <chrono>
#include <memory>
#include <random>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "commit_fixture.hpp"
#include "fault_disk.hpp"
#include "messages/register.hpp"
#include "runtime/sqlite.hpp"
#include "scratch_dir.hpp"

using namespace fleetd;
using namespace std::chrono_literals;

namespace {

constexpr int64_t start_ms = test::commit_start_ms;
using test::round_of;

struct fixture : test::limit_fixture<&storage_limits::group_window_ms> {
  fixture() : limit_fixture("fleetd-storage-group") {}
};

log_lines lines_of(int64_t n, int64_t ts) {
  log_lines xs;
  for (int64_t i = 0; i < n; ++i)
    xs.push_back(log_line{{{"job", "t"}}, ts * 1000000 + i, "line"});
  return xs;
}

} // namespace

TEST_CASE("a group's stores share one commit and none is in the file before "
          "it") {
  fixture f;
  auto st = sqlite_store::open(f.config(50));
  REQUIRE(st);
  auto commits = st->stats().counters["commits"];
  REQUIRE(st->begin_group());
  CHECK(st->grouping());
  // A second begin joins the open group rather than nesting one.
  CHECK_FALSE(st->begin_group());
  REQUIRE(st->store_logs(lines_of(10, start_ms)));
  REQUIRE(st->store(round_of(40, start_ms)));
  REQUIRE(st->store(round_of(60, start_ms)));
  CHECK(f.rows_on_disk("metrics") == 0);
  CHECK(f.rows_on_disk("logs") == 0);
  CHECK(st->held_points() == 100);
  REQUIRE_FALSE(st->end_group());
  CHECK_FALSE(st->grouping());
  CHECK(f.rows_on_disk("metrics") == 100);
  CHECK(f.rows_on_disk("logs") == 10);
  auto c = st->stats().counters;
  CHECK(c["commits"] == commits + 1);
  CHECK(c["groups"] == 1);
  CHECK(c["uncommitted_points"] == 0);
  auto report = st->debug("storage");
  REQUIRE(report);
  CHECK(report->text.find("every round: stores within 50 ms share one commit")
        != std::string::npos);
}

TEST_CASE("a commit interval holds stores itself: no group opens beside it") {
  fixture f;
  auto cfg = f.config(50);
  cfg.limits.commit_interval_ms = 60000;
  auto st = sqlite_store::open(cfg);
  REQUIRE(st);
  CHECK_FALSE(st->begin_group());
  CHECK_FALSE(st->grouping());
  // Ending the group that did not open leaves what the interval holds held.
  REQUIRE(st->store(round_of(10, start_ms)));
  CHECK_FALSE(st->end_group());
  CHECK(st->held_points() == 10);
  CHECK(f.rows_on_disk("metrics") == 0);
}

TEST_CASE("a batch enqueued inside a group commits the group and ends it") {
  fixture f;
  auto st = sqlite_store::open(f.config(50));
  REQUIRE(st);
  REQUIRE(st->begin_group());
  REQUIRE(st->store(round_of(5, start_ms)));
  test::enqueue_all(*st, 5);
  CHECK_FALSE(st->grouping());
  CHECK(f.rows_on_disk("metrics") == 5);
  CHECK(f.rows_on_disk("sync_queue") == 1);
  // Its stores were committed by the batch: the group's answer is success.
  CHECK_FALSE(st->end_group());
  // A store after the group commits on its own.
  REQUIRE(st->store(round_of(2, start_ms + 1)));
  CHECK(f.rows_on_disk("metrics") == 7);
}

TEST_CASE("a group whose commit fails fails every store in it, counted as "
          "rejected") {
  fixture f;
  auto disk = test::fault_disk::make();
  auto cfg = f.config(50);
  cfg.disk = disk;
  auto st = sqlite_store::open(cfg);
  REQUIRE(st);
  REQUIRE(st->begin_group());
  REQUIRE(st->store(round_of(30, start_ms)));
  REQUIRE(st->store_logs(lines_of(4, start_ms)));
  disk->fail_syncs(true);
  auto err = st->end_group();
  disk->fail_syncs(false);
  REQUIRE(err);
  CHECK_FALSE(st->grouping());
  // The next store commits on its own and counts the loss in the file.
  REQUIRE(st->store(round_of(1, start_ms + 1)));
  auto d = st->drops();
  CHECK(d[drop_kind::metrics_rejected] == 30);
  CHECK(d[drop_kind::logs_rejected] == 4);
  CHECK(f.rows_on_disk("metrics") == 1);
  CHECK(f.rows_on_disk("logs") == 0);
}

TEST_CASE("a power cut keeps every store whose group was answered") {
  // The power goes out at a random write (seeded); every group whose commit
  // returned before it must be in the file when it is opened again.
  std::mt19937_64 rng{20261206};
  for (int run = 0; run < 25; ++run) {
    fixture f;
    auto disk = test::fault_disk::make();
    auto cfg = f.config(50);
    cfg.disk = disk;
    auto cut_at = static_cast<int64_t>(rng() % 600) + 1;
    CAPTURE(cut_at);
    int64_t points = 0, lines = 0;
    {
      auto st = sqlite_store::open(cfg);
      REQUIRE(st);
      disk->cut_power_after_writes(cut_at);
      for (int round = 0; round < 200 && !disk->power_cut(); ++round) {
        f.clk->advance(10000);
        auto now = f.clk->now_ms();
        st->begin_group();
        auto n = st->store(round_of(30, now));
        auto m = st->store_logs(lines_of(3, now));
        if (!st->end_group()) {
          points += n ? *n : 0;
          lines += m ? *m : 0;
        }
      }
      REQUIRE(disk->power_cut());
    }
    disk->revive();
    auto st = sqlite_store::open(cfg);
    REQUIRE_MESSAGE(st, render(st.error()));
    auto c = st->stats().counters;
    CHECK(c["metrics_rows"] >= points);
    CHECK(c["metrics_rows"] <= points + 30);
    CHECK(c["logs_rows"] >= lines);
    CHECK(c["logs_rows"] <= lines + 3);
  }
}

TEST_CASE("the storage actor answers a group's stores after its one commit") {
  fixture f;
  // A window no test waits for: the group ends by the commit message sent
  // below, or by a batch.
  auto store = std::make_shared<sqlite_store>(
    [&] {
      auto st = sqlite_store::open(f.config(600'000));
      REQUIRE(st);
      return std::move(*st);
    }());
  caf::actor_system_config cfg;
  register_messages(cfg);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto actor = sys.spawn<caf::detached>(storage, store);
  auto stats = [&] {
    actor_stats out;
    self->request(actor, 5s, stats_atom::value)
      .receive([&](actor_stats& x) { out = std::move(x); },
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
    return out;
  };
  // Replies to send() come back as ordinary messages, in order.
  auto replies_now = [&] {
    int64_t total = 0;
    bool more = true;
    while (more)
      self->receive([&](int64_t n) { total += n; },
                    caf::after(std::chrono::seconds(0)) >> [&] { more = false; });
    return total;
  };
  SUBCASE("the commit message ends the group") {
    self->send(actor, store_atom::value, lines_of(10, start_ms));
    self->send(actor, store_atom::value, round_of(40, start_ms));
    self->send(actor, store_atom::value, round_of(60, start_ms));
    // stats is answered after the three stores were handled.
    CHECK(stats().counters["uncommitted_points"] == 100);
    CHECK(replies_now() == 0);
    CHECK(f.rows_on_disk("metrics") == 0);
    self->send(actor, commit_atom::value);
    int64_t answered = 0;
    for (int i = 0; i < 3; ++i)
      self->receive([&](int64_t n) { answered += n; },
                    caf::after(5s) >> [&] { FAIL_CHECK("no answer"); });
    CHECK(answered == 110);
    CHECK(f.rows_on_disk("metrics") == 100);
    CHECK(f.rows_on_disk("logs") == 10);
    CHECK(stats().counters["groups"] == 1);
  }
  SUBCASE("a batch commits the group and its stores are answered with it") {
    self->send(actor, store_atom::value, round_of(5, start_ms));
    unbatched_points up;
    self->request(actor, 5s, fetch_atom::value, std::string{"metrics"},
                  int64_t{100}, int64_t{1} << 30)
      .receive([&](unbatched_points& x) { up = std::move(x); },
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
    REQUIRE(up.samples.size() == 5);
    CHECK(replies_now() == 0);
    queued_batch b{"metrics", up.next_sequence, up.last_id, 5, start_ms, 0,
                   "body"};
    self->request(actor, 5s, enqueue_atom::value, b)
      .receive([&](int64_t) {},
               [&](caf::error& err) { FAIL_CHECK(render(err)); });
    CHECK(replies_now() == 5);
    CHECK(f.rows_on_disk("metrics") == 5);
  }
  self->send_exit(actor, caf::exit_reason::user_shutdown);
}
