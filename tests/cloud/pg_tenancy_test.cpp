// pg_tenancy against a real PostgreSQL behind PgBouncer in transaction
// pooling, where several nodes share it: the last use of an enrollment
// token goes to exactly one node, tenancy rows stay within their org, no
// setting outlives its transaction on a pooled server connection, and a
// lost connection is made again. The contract it shares with the embedded
// store is in tenancy_test.
#include "cloud/pg_tenancy.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "helpers.hpp"
#include "messages/error.hpp"
#include "pg_fixture.hpp"
#include "pg_schema.hpp"
#include "skip.hpp"
#include "tenancy_ops.hpp"

using namespace fleetd;
using namespace std::chrono_literals;
using test::pg_connect;
using test::op;
using test::pg_must;

namespace {

constexpr int64_t clock_start_ms = 1'700'000'000'000;
const std::string secret(64, 'e');

// One migrated database; node() is one more cloud node on it (its own
// connection through PgBouncer).
struct cluster {
  std::string why;
  std::optional<test::pg_database> db
    = test::migrated_pg_database("pg_tenancy", why);
  std::shared_ptr<manual_clock> clock
    = std::make_shared<manual_clock>(clock_start_ms);

  std::unique_ptr<pg_tenancy> node(const std::string& url = {}) {
    auto t = pg_tenancy::open(url.empty() ? db->pooled_url : url, secret,
                              clock, test::pooled_options());
    REQUIRE_MESSAGE(t, render(t.error()));
    return std::make_unique<pg_tenancy>(std::move(*t));
  }

  std::string token(tenancy_backend& t, const std::string& org, int64_t uses) {
    auto cmd = op("enroll-create", org);
    cmd.uses = uses;
    cmd.duration_ms = 600'000;
    auto out = t.run(cmd);
    REQUIRE_MESSAGE(out, render(out.error()));
    return "Bearer " + out->secret;
  }

  int64_t count(pg::connection& c, const std::string& sql,
                const pg::params& ps = {}) {
    return pg_must(c, sql, ps).int64(0, 0);
  }
};

// Runs `fn` on a fresh database; skips when no server can run here.
void on_cluster(void (*fn)(cluster&)) {
  cluster c;
  if (!c.db)
    return test::skip(c.why);
  fn(c);
}

void last_use_goes_to_one_node(cluster& c) {
  auto a = c.node();
  auto b = c.node();
  REQUIRE(a->run(op("org-create", "acme")));
  auto token = c.token(*a, "acme", 1);
  // A third party holds the token's row, so both nodes reach the UPDATE
  // and wait on it together.
  auto admin = pg_connect(c.db->admin_url);
  REQUIRE_FALSE(admin.begin());
  pg_must(admin, "SELECT 1 FROM enroll_tokens FOR UPDATE");
  caf::expected<std::pair<device_identity, std::string>> got_a{caf::error{}};
  caf::expected<std::pair<device_identity, std::string>> got_b{caf::error{}};
  std::thread ta{[&] { got_a = a->enroll(token, "dev-a"); }};
  std::thread tb{[&] { got_b = b->enroll(token, "dev-b"); }};
  auto probe = pg_connect(c.db->admin_url);
  bool both_wait = test::eventually(
    [&] {
      return c.count(probe, "SELECT count(*) FROM pg_stat_activity WHERE "
                            "wait_event_type = 'Lock' AND query LIKE "
                            "'UPDATE enroll_tokens%'")
             == 2;
    },
    20s);
  CHECK(both_wait);
  admin.rollback();
  ta.join();
  tb.join();
  REQUIRE(static_cast<bool>(got_a) != static_cast<bool>(got_b));
  auto& lost = got_a ? got_b : got_a;
  CHECK(is_error(lost.error(), ec::bad_enroll_token));
  CHECK(render(lost.error()).find("used up") != std::string::npos);
  auto winner = got_a ? got_a->second : got_b->second;
  CHECK(b->authenticate("Bearer " + winner));
  CHECK(c.count(probe, "SELECT count(*) FROM devices") == 1);
  CHECK(c.count(probe, "SELECT uses_left FROM enroll_tokens") == 0);
}


void seven_uses_for_four_nodes(cluster& c) {
  std::vector<std::unique_ptr<pg_tenancy>> nodes;
  for (int i = 0; i < 4; ++i)
    nodes.push_back(c.node());
  REQUIRE(nodes[0]->run(op("org-create", "acme")));
  auto token = c.token(*nodes[0], "acme", 7);
  std::atomic<int> enrolled{0};
  std::atomic<int> used_up{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      for (int j = 0; j < 5; ++j) {
        auto name = "n" + std::to_string(i) + "-" + std::to_string(j);
        auto r = nodes[i]->enroll(token, name);
        if (r)
          ++enrolled;
        else if (is_error(r.error(), ec::bad_enroll_token))
          ++used_up;
      }
    });
  for (auto& t : threads)
    t.join();
  CHECK(enrolled == 7);
  CHECK(used_up == 13);
  auto admin = pg_connect(c.db->admin_url);
  CHECK(c.count(admin, "SELECT count(*) FROM devices") == 7);
  CHECK(c.count(admin, "SELECT uses_left FROM enroll_tokens") == 0);
}


void rows_stay_in_their_org(cluster& c) {
  auto t = c.node();
  for (auto org : {"acme", "globex"}) {
    REQUIRE(t->run(op("org-create", org)));
    REQUIRE(t->run(op("device-add", org, "edge")));
    c.token(*t, org, 1);
    auto quota = op("quota-set", org);
    quota.points_per_second = 5;
    REQUIRE(t->run(quota));
  }
  auto app = pg_connect(c.db->pooled_url, {false});
  for (auto table : {"quotas", "devices", "device_keys", "enroll_tokens"}) {
    CAPTURE(table);
    std::string t_name = table;
    REQUIRE_FALSE(app.begin("acme"));
    CHECK(c.count(app, "SELECT count(*) FROM " + t_name) == 1);
    CHECK(c.count(app, "SELECT count(*) FROM " + t_name + " WHERE org = $1",
                  {"globex"})
          == 0);
    auto changed = app.exec("UPDATE " + t_name + " SET org = org WHERE org = "
                            "'globex'");
    REQUIRE(changed);
    CHECK(changed->affected() == 0);
    app.rollback();
    REQUIRE_FALSE(app.begin());
    CHECK(c.count(app, "SELECT count(*) FROM " + t_name) == 0);
    app.rollback();
  }
  // A command for one org leaves the other's device as it was.
  REQUIRE(t->run(op("revoke", "acme", "edge")));
  auto listed = t->run(op("device-list", ""));
  REQUIRE(listed);
  REQUIRE(listed->rows.size() == 2);
  CHECK(listed->rows[0][3] != "-");
  CHECK(listed->rows[1][3] == "-");
}


void no_setting_outlives_a_transaction(cluster& c) {
  auto t = c.node();
  REQUIRE(t->run(op("org-create", "acme")));
  auto token = c.token(*t, "acme", 1);
  auto enrolled = t->enroll(token, "edge");
  REQUIRE_MESSAGE(enrolled, render(enrolled.error()));
  REQUIRE(t->authenticate("Bearer " + enrolled->second));
  REQUIRE(t->quota("acme"));
  // One client after the other: PgBouncer hands the next one the server
  // connection the node used (the only one made for this database).
  auto admin = pg_connect(c.db->admin_url);
  CHECK(c.count(admin, "SELECT count(*) FROM pg_stat_activity WHERE "
                       "usename = 'fleetd_node' AND datname = $1",
                {c.db->name})
        == 1);
  auto next = pg_connect(c.db->pooled_url, {false});
  auto r = pg_must(next, "SELECT coalesce(current_setting('app.org_id', "
                         "true), ''), coalesce(current_setting("
                         "'app.key_hash', true), ''), coalesce("
                         "current_setting('app.token_hash', true), ''), "
                         "(SELECT count(*) FROM device_keys), (SELECT "
                         "count(*) FROM enroll_tokens)");
  CHECK(r.text(0, 0) == "");
  CHECK(r.text(0, 1) == "");
  CHECK(r.text(0, 2) == "");
  CHECK(r.int64(0, 3) == 0);
  CHECK(r.int64(0, 4) == 0);
}


void lost_connection_made_again(cluster& c) {
  auto t = c.node(c.db->app_url);
  REQUIRE(t->run(op("org-create", "acme")));
  auto added = t->run(op("device-add", "acme", "edge"));
  REQUIRE(added);
  auto admin = pg_connect(c.db->admin_url);
  auto killed = pg_must(admin, "SELECT pg_terminate_backend(pid) FROM "
                               "pg_stat_activity WHERE usename = "
                               "'fleetd_node' AND datname = $1",
                        {c.db->name});
  REQUIRE(killed.rows() == 1);
  auto who = t->authenticate("Bearer " + added->secret);
  REQUIRE_MESSAGE(who, render(who.error()));
  CHECK(who->device == "edge");
  CHECK(t->run(op("device-add", "acme", "edge2")));
}


void bypassing_role_refused(cluster& c) {
  auto t = pg_tenancy::open(c.db->owner_url, secret, c.clock);
  REQUIRE_FALSE(t);
  CHECK(is_error(t.error(), ec::bad_config));
}

} // namespace

TEST_CASE("two nodes enrolling with a token's last use at once: exactly one "
          "enrolls, the other is told it is used up") {
  on_cluster(last_use_goes_to_one_node);
}

TEST_CASE("four nodes racing for seven uses of one token enroll seven "
          "devices") {
  on_cluster(seven_uses_for_four_nodes);
}

TEST_CASE("tenancy rows pg_tenancy makes are seen and changed only in their "
          "own org's transactions") {
  on_cluster(rows_stay_in_their_org);
}

TEST_CASE("no org, key or token setting outlives pg_tenancy's transaction "
          "on PgBouncer's pooled server connection") {
  on_cluster(no_setting_outlives_a_transaction);
}

TEST_CASE("a server connection lost between requests is made again; a "
          "key is still authenticated") {
  on_cluster(lost_connection_made_again);
}

TEST_CASE("a node whose role could bypass row level security is refused") {
  on_cluster(bypassing_role_refused);
}
