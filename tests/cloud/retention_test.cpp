// Retention against a real PostgreSQL 15: whole days past
// store.retention-days go, today's and the kept days stay with every row;
// the actor does it at start and counts it; the embedded store refuses the
// option.
#include "cloud/retention.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <doctest/doctest.h>

#include "ask.hpp"
#include "cloud/pg_migrate.hpp"
#include "cloud/pg_store.hpp"
#include "helpers.hpp"
#include "messages/error.hpp"
#include "messages/register.hpp"
#include "messages/wire.hpp"
#include "pg_fixture.hpp"
#include "skip.hpp"

using namespace fleetd;
using namespace std::chrono_literals;
using test::pg_connect;
using test::pg_must;

namespace {

constexpr int64_t day_ms = 86'400'000;

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

ingest_batch day_batch(int64_t seq, const char* stream) {
  ingest_batch b;
  b.device_id = "acme/dev1";
  b.stream = stream;
  b.epoch = "e1";
  b.sequence = seq;
  if (std::string{stream} == metrics_stream)
    for (int i = 0; i < 10; ++i)
      b.samples.push_back({"cpu", {{"core", "0"}}, seq * 1000 + i, 1.0 * i});
  else
    b.logs.push_back({{{"unit", "sshd"}}, seq, "line"});
  return b;
}

// One database with points and logs received 10, 5, 2 and 0 days ago (the
// server's today: its date decides what may go).
struct fixture {
  std::optional<test::pg_database> db;
  std::string why;
  int64_t now = wall_ms();
  std::shared_ptr<manual_clock> clock = std::make_shared<manual_clock>(0);

  bool ready() {
    db = test::fresh_pg_database("retention", why);
    if (!db)
      return false;
    auto owner = pg_connect(db->owner_url);
    auto done = migrate(owner);
    REQUIRE_MESSAGE(done, render(done.error()));
    auto st = pg_store::open(db->app_url, clock);
    REQUIRE_MESSAGE(st, render(st.error()));
    int64_t seq = 0;
    for (int64_t ago : {10, 5, 2, 0}) {
      clock->set(now - ago * day_ms);
      ++seq;
      for (auto stream : {metrics_stream, logs_stream}) {
        auto r = st->write(day_batch(seq, stream));
        REQUIRE_MESSAGE(r, render(r.error()));
      }
    }
    return true;
  }
  int64_t count(const std::string& sql) {
    auto c = pg_connect(db->admin_url);
    return pg_must(c, sql).int64(0, 0);
  }
  // The YYYYMMDD of a partition name for the UTC day of `ms`.
  std::string yyyymmdd(int64_t ms) {
    auto c = pg_connect(db->admin_url);
    return std::string{
      pg_must(c, "SELECT to_char((to_timestamp($1::bigint / 1000) AT TIME "
                 "ZONE 'UTC')::date, 'YYYYMMDD')",
              {ms})
        .text(0, 0)};
  }
  bool has_table(const std::string& name) {
    return count("SELECT count(*) FROM pg_class WHERE relname = '" + name
                 + "'")
           == 1;
  }
};

} // namespace

TEST_CASE("postgresql: days past the retention are dropped whole, kept days intact") {
  fixture f;
  if (!f.ready())
    return test::skip(f.why);
  REQUIRE(f.count("SELECT count(*) FROM points") == 40);
  auto app = pg_connect(f.db->app_url);
  auto dropped = drop_expired_days(app, f.now, 3);
  REQUIRE_MESSAGE(dropped, render(dropped.error()));
  std::set<std::string> names(dropped->begin(), dropped->end());
  // The store made each day and the next: days 10, 9, 5 and 4 ago went.
  for (int64_t ago : {10, 9, 5, 4})
    for (auto t : {"points_", "logs_", "events_"}) {
      auto name = t + f.yyyymmdd(f.now - ago * day_ms);
      CHECK_MESSAGE(names.count(name) == 1, name);
      CHECK_FALSE(f.has_table(name));
    }
  CHECK(names.size() == 12);
  for (int64_t ago : {3, 2, 1, 0, -1})
    if (ago != 3) // no row arrived 3 days ago: no partition
      CHECK(f.has_table("points_" + f.yyyymmdd(f.now - ago * day_ms)));
  CHECK(f.count("SELECT count(*) FROM points") == 20);
  CHECK(f.count("SELECT count(*) FROM logs") == 2);
  CHECK(f.count("SELECT count(*) FROM points WHERE sequence IN (3, 4) AND "
                "ts % 1000 BETWEEN 0 AND 9") == 20);
  auto again = drop_expired_days(app, f.now, 3);
  REQUIRE(again);
  CHECK(again->empty());
}

TEST_CASE("postgresql: a cutoff past the server's today is refused, nothing dropped") {
  fixture f;
  if (!f.ready())
    return test::skip(f.why);
  auto app = pg_connect(f.db->app_url);
  // A node clock two days ahead asks to drop yesterday's days and today's.
  auto r = drop_expired_days(app, f.now + 2 * day_ms, 1);
  CHECK_FALSE(r);
  CHECK(f.count("SELECT count(*) FROM points") == 40);
}

TEST_CASE("postgresql: the retention actor drops expired days at start and counts them") {
  fixture f;
  if (!f.ready())
    return test::skip(f.why);
  caf::actor_system_config cfg;
  register_messages(cfg);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  retention_config rc;
  rc.days = 1;
  rc.postgresql_url = f.db->app_url;
  rc.clock = std::make_shared<manual_clock>(f.now);
  auto hdl = sys.spawn<caf::detached>(retention, rc);
  actor_stats st;
  CHECK(test::eventually(
    [&] {
      st = test::ask<actor_stats>(self, hdl, 5s, stats_atom::value);
      return st.counters["passes"] >= 1;
    },
    10s));
  // Days 10, 9, 5, 4 and 2 ago (points, logs, events each).
  CHECK(st.counters["partitions_dropped"] == 15);
  CHECK(st.counters["failures"] == 0);
  CHECK(st.state == "keeping 1 days");
  CHECK(f.count("SELECT count(*) FROM points") == 10);
  self->send_exit(hdl, caf::exit_reason::user_shutdown);
}

TEST_CASE("store.retention-days is refused on the embedded store") {
  retention_config r;
  store_config s;
  CHECK_FALSE(validate(r, s)); // 0, the default: keep forever
  r.days = 7;
  auto err = validate(r, s);
  REQUIRE(err);
  CHECK(render(err).find("store.retention-days") != std::string::npos);
  s.backend = "postgresql";
  CHECK_FALSE(validate(r, s));
}
