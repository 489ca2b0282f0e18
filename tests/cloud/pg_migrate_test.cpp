// cloud/pg_migrate against a real PostgreSQL 15: nodes starting together
// apply each migration once, a rerun changes nothing, changed or newer
// schemas are refused, the node's role is checked, partitions come and go.
#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <thread>

#include "cloud/pg_migrate.hpp"
#include "helpers.hpp"
#include "messages/error.hpp"
#include "pg_fixture.hpp"
#include "skip.hpp"

using namespace fleetd;
using namespace std::chrono_literals;
using test::pg_connect;
using test::pg_must;

namespace {

// The lock migrate() takes, and the one fleetd_ensure_partitions takes.
constexpr int64_t migrate_lock = 0x666c656574640001;
constexpr int64_t partition_lock = 0x666c656574640002;

// 2020-01-01T00:00:00Z and one day, in ms.
constexpr int64_t jan1 = 1577836800000;
constexpr int64_t day_ms = 86400000;

caf::error not_run() {
  return make_error(ec::timeout, "did not run");
}

// Five steps that each log that they ran.
std::vector<pg_migration> counting_migrations() {
  std::vector<pg_migration> out{
    {1, "0001_log", "CREATE TABLE ran (version integer); "
                    "INSERT INTO ran VALUES (1);"}};
  for (int v = 2; v <= 5; ++v)
    out.push_back({v, "000" + std::to_string(v) + "_step",
                   "INSERT INTO ran VALUES (" + std::to_string(v) + ");"});
  return out;
}

// Sessions waiting for advisory lock `key` (minus the holder).
int64_t waiting_on(pg::connection& admin, int64_t key) {
  return pg_must(admin,
                 "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                 "AND NOT granted AND "
                 "((classid::bigint << 32) | objid::bigint) = $1",
                 {key})
    .int64(0, 0);
}

// Runs `fn(i)` for i in 0, 1 on threads of their own while `key` is held,
// releases it once both wait for it, joins.
template <class F>
void race_on_lock(const test::pg_database& db, int64_t key, F fn) {
  auto holder = pg_connect(db.owner_url);
  auto admin = pg_connect(db.admin_url);
  pg_must(holder, "SELECT pg_advisory_lock($1)", {key});
  std::thread a{fn, 0};
  std::thread b{fn, 1};
  // Both have started and contend: the race is real, not a sequence.
  CHECK(test::eventually([&] { return waiting_on(admin, key) == 2; }, 30s));
  pg_must(holder, "SELECT pg_advisory_unlock($1)", {key});
  a.join();
  b.join();
}

// A fresh database with the built-in schema.
std::optional<test::pg_database> migrated_database(const char* prefix,
                                                   std::string& why) {
  auto db = test::fresh_pg_database(prefix, why);
  if (db) {
    auto owner = pg_connect(db->owner_url);
    auto done = migrate(owner);
    if (!done)
      FAIL(render(done.error()));
  }
  return db;
}

} // namespace

TEST_CASE("two runners at once apply each migration once") {
  std::string why;
  auto db = test::fresh_pg_database("migrate_race", why);
  if (!db)
    return test::skip(why);
  auto ms = counting_migrations();
  caf::expected<migrate_report> reports[2] = {not_run(), not_run()};
  race_on_lock(*db, migrate_lock, [&](int i) {
    auto c = pg::connection::open(db->owner_url);
    reports[i] = c ? migrate(*c, ms) : c.error();
  });
  for (auto& r : reports) {
    if (!r)
      FAIL(render(r.error()));
    CHECK(r->to_version == 5);
  }
  CHECK(reports[0]->applied + reports[1]->applied == 5);
  auto owner = pg_connect(db->owner_url);
  auto ran = pg_must(owner, "SELECT version, count(*) FROM ran "
                            "GROUP BY version ORDER BY version");
  REQUIRE(ran.rows() == 5);
  for (int v = 1; v <= 5; ++v) {
    CHECK(ran.int64(v - 1, 0) == v);
    CHECK(ran.int64(v - 1, 1) == 1);
  }
  MESSAGE("runner 0 applied " << reports[0]->applied << ", runner 1 "
                              << reports[1]->applied);
}

TEST_CASE("the built-in migrations apply once and a rerun changes nothing") {
  std::string why;
  auto db = test::fresh_pg_database("migrate_builtin", why);
  if (!db)
    return test::skip(why);
  const int n = static_cast<int>(builtin_migrations().size());
  REQUIRE(n >= 1);
  CHECK(builtin_migrations().front().name == "0001_init");
  caf::expected<migrate_report> reports[2] = {not_run(), not_run()};
  auto t0 = std::chrono::steady_clock::now();
  race_on_lock(*db, migrate_lock, [&](int i) {
    auto c = pg::connection::open(db->owner_url);
    reports[i] = c ? migrate(*c) : c.error();
  });
  for (auto& r : reports)
    if (!r)
      FAIL(render(r.error()));
  CHECK(reports[0]->applied + reports[1]->applied == n);
  MESSAGE("schema of " << n << " migration(s) in "
                       << std::chrono::duration<double>(
                            std::chrono::steady_clock::now() - t0)
                            .count()
                       << " s");
  auto owner = pg_connect(db->owner_url);
  auto again = migrate(owner);
  if (!again)
    FAIL(render(again.error()));
  CHECK(again->applied == 0);
  CHECK(again->from_version == n);
  CHECK(again->to_version == n);
  auto app = pg_connect(db->app_url);
  auto v = schema_version(app);
  REQUIRE(v);
  CHECK(*v == n);
}

TEST_CASE("a changed migration and a newer database are refused") {
  std::string why;
  auto db = test::fresh_pg_database("migrate_refuse", why);
  if (!db)
    return test::skip(why);
  auto owner = pg_connect(db->owner_url);
  auto ms = counting_migrations();
  REQUIRE(migrate(owner, ms));
  auto changed = ms;
  changed[1].sql += " -- edited";
  auto refused = migrate(owner, changed);
  REQUIRE_FALSE(refused);
  CHECK(static_cast<ec>(refused.error().code()) == ec::bad_config);
  CHECK(error_text(refused.error()).find("0002_step changed")
        != std::string::npos);
  auto older = ms;
  older.resize(3);
  auto newer = migrate(owner, older);
  REQUIRE_FALSE(newer);
  CHECK(error_text(newer.error()).find("newer") != std::string::npos);
  auto gap = ms;
  gap.erase(gap.begin() + 2);
  CHECK_FALSE(migrate(owner, gap));
  CHECK(pg_must(owner, "SELECT count(*) FROM ran").int64(0, 0) == 5);
}

TEST_CASE("a failing migration leaves nothing and is not recorded") {
  std::string why;
  auto db = test::fresh_pg_database("migrate_fail", why);
  if (!db)
    return test::skip(why);
  auto owner = pg_connect(db->owner_url);
  auto ms = counting_migrations();
  ms.resize(2);
  ms[1].sql = "CREATE TABLE half (a integer); SELEC broken;";
  auto failed = migrate(owner, ms);
  REQUIRE_FALSE(failed);
  CHECK(error_text(failed.error()).find("0002_step") != std::string::npos);
  CHECK(*schema_version(owner) == 1);
  CHECK(pg_must(owner, "SELECT to_regclass('half') IS NULL").boolean(0, 0));
  ms[1].sql = "INSERT INTO ran VALUES (2);";
  auto fixed = migrate(owner, ms);
  REQUIRE(fixed);
  CHECK(fixed->from_version == 1);
  CHECK(fixed->to_version == 2);
}

TEST_CASE("only a role that cannot bypass row level security passes as the "
          "node's") {
  std::string why;
  auto db = migrated_database("migrate_roles", why);
  if (!db)
    return test::skip(why);
  auto app = pg_connect(db->app_url);
  auto ok = verify_app_role(app);
  CHECK_MESSAGE(!ok, render(ok));
  auto owner = pg_connect(db->owner_url);
  auto owns = verify_app_role(owner);
  CHECK(error_text(owns).find("owns") != std::string::npos);
  auto admin = pg_connect(db->admin_url);
  CHECK(error_text(verify_app_role(admin)).find("superuser")
        != std::string::npos);
}

TEST_CASE("partitions are made ahead by the node's role and whole past days "
          "dropped") {
  std::string why;
  auto db = migrated_database("migrate_parts", why);
  if (!db)
    return test::skip(why);
  auto app = pg_connect(db->app_url);
  auto made = ensure_partitions(app, jan1, 3);
  if (!made)
    FAIL(render(made.error()));
  CHECK(*made == 9);
  CHECK(*ensure_partitions(app, jan1, 3) == 0);
  REQUIRE_FALSE(pg::transaction(app, "acme", [&]() -> caf::error {
    for (int d = 0; d < 3; ++d)
      pg_must(app, "INSERT INTO points (org, day, device, epoch, sequence, "
                   "series_id, ts, value, bits) VALUES ('acme', $1::date, "
                   "'d', 'e', 1, 1, 0, 0, 0)",
              {"2020-01-0" + std::to_string(d + 1)});
    return caf::none;
  }));
  // The node's role reaches the rows only through the parent's policies.
  CHECK_FALSE(app.exec("SELECT * FROM points_20200101"));
  CHECK(app.last_sqlstate() == pg::insufficient_privilege);
  auto dropped = drop_partitions_before(app, jan1 + 2 * day_ms);
  if (!dropped)
    FAIL(render(dropped.error()));
  CHECK(*dropped
        == std::vector<std::string>{"events_20200101", "events_20200102",
                                    "logs_20200101", "logs_20200102",
                                    "points_20200101", "points_20200102"});
  REQUIRE_FALSE(pg::transaction(app, "acme", [&]() -> caf::error {
    CHECK(pg_must(app, "SELECT count(*) FROM points").int64(0, 0) == 1);
    return caf::none;
  }));
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  CHECK_FALSE(drop_partitions_before(app, now_ms + day_ms));
  CHECK_FALSE(ensure_partitions(app, now_ms + 30 * day_ms, 1));
  CHECK_FALSE(ensure_partitions(app, jan1, 63));
  CHECK_FALSE(app.exec("DROP TABLE points_20200103"));
}

TEST_CASE("two nodes making the same day's partitions make them once") {
  std::string why;
  auto db = migrated_database("migrate_parts_race", why);
  if (!db)
    return test::skip(why);
  caf::expected<int64_t> made[2] = {not_run(), not_run()};
  race_on_lock(*db, partition_lock, [&](int i) {
    auto c = pg::connection::open(db->app_url);
    made[i] = c ? ensure_partitions(*c, jan1, 2) : c.error();
  });
  for (auto& m : made)
    if (!m)
      FAIL(render(m.error()));
  CHECK(*made[0] + *made[1] == 6);
}

TEST_CASE("two nodes cannot both accept the same batch") {
  std::string why;
  auto db = migrated_database("migrate_batch_key", why);
  if (!db)
    return test::skip(why);
  const std::string insert =
    "INSERT INTO batches (org, device, stream, epoch, sequence, checksum, "
    "points, received_at) VALUES ('acme', 'd', 'metrics', 'e', 7, '\\x01', "
    "1, 0)";
  auto first = pg_connect(db->app_url);
  auto admin = pg_connect(db->admin_url);
  REQUIRE_FALSE(first.begin("acme"));
  pg_must(first, insert);
  // The second node's insert waits for the first's transaction, then fails.
  caf::error second_err;
  std::string second_state;
  std::thread second{[&] {
    auto c = pg::connection::open(db->app_url);
    if (!c) {
      second_err = c.error();
      return;
    }
    second_err = pg::transaction(*c, "acme", [&]() -> caf::error {
      auto r = c->exec(insert);
      return r ? caf::none : r.error();
    });
    second_state = c->last_sqlstate();
  }};
  CHECK(test::eventually(
    [&] {
      return pg_must(admin, "SELECT count(*) FROM pg_locks WHERE locktype = "
                            "'transactionid' AND NOT granted")
               .int64(0, 0)
             == 1;
    },
    30s));
  REQUIRE_FALSE(first.commit());
  second.join();
  CHECK(static_cast<ec>(second_err.code()) == ec::invalid_record);
  CHECK(second_state == pg::unique_violation);
}
