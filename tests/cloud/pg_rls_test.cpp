// Row Level Security of the cloud's schema (issue 12, acceptance 3): two
// orgs, clients of the node's role interleaved through PgBouncer in
// transaction pooling; for every tenant table no query returns or changes
// another org's rows, and a transaction without an org sees nothing. Also
// why the org is set with set_config(..., true): a plain SET leaks.
#include <doctest/doctest.h>

#include <atomic>
#include <ctime>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "cloud/pg_migrate.hpp"
#include "messages/error.hpp"
#include "pg_fixture.hpp"
#include "skip.hpp"

using namespace fleetd;
using test::pg_connect;
using test::pg_must;

namespace {

const std::string acme = "acme";
const std::string zenith = "zenith";

// Rows each org gets in each tenant table (quotas: one per org).
constexpr int64_t rows_per_org = 2;

// A valid row of each tenant table: $1 the org, $2 a device name. In the
// order foreign keys need (devices before their keys).
const std::vector<std::pair<std::string, std::string>> seeds = {
  {"quotas", "INSERT INTO quotas (org, points_per_second) "
             "SELECT $1, length($2)"},
  {"devices", "INSERT INTO devices (org, device, created_ms) "
              "VALUES ($1, $2, 0)"},
  {"device_keys", "INSERT INTO device_keys (hash, org, device, created_ms) "
                  "VALUES (decode(md5($1 || $2), 'hex'), $1, $2, 0)"},
  {"enroll_tokens", "INSERT INTO enroll_tokens (hash, org, uses_left, "
                    "expires_ms, created_ms) VALUES (decode(md5('t' || $1 || "
                    "$2), 'hex'), $1, 1, 0, 0)"},
  {"api_tokens", "INSERT INTO api_tokens (hash, id, org, created_ms) VALUES "
                 "(decode(md5('q' || $1 || $2), 'hex'), $2, $1, 0)"},
  {"streams", "INSERT INTO streams (org, device, stream, epoch, last_sequence, "
              "epochs, points, batches, duplicates, last_seen) VALUES ($1, $2, "
              "'metrics', 'e', 1, 1, 1, 1, 0, 0)"},
  {"batches", "INSERT INTO batches (org, device, stream, epoch, sequence, "
              "checksum, points, received_at) VALUES ($1, $2, 'metrics', 'e', "
              "1, '\\x00', 1, 0)"},
  {"series", "INSERT INTO series (org, name, labels) VALUES ($1, $2, '\\x')"},
  {"points", "INSERT INTO points (org, day, device, epoch, sequence, "
             "series_id, ts, value, bits) VALUES ($1, current_date, $2, 'e', "
             "1, 1, 0, 0, 0)"},
  {"logs", "INSERT INTO logs (org, day, device, epoch, sequence, labels, ts, "
           "line) VALUES ($1, current_date, $2, 'e', 1, '\\x', 0, 'a line')"},
  {"events", "INSERT INTO events (org, day, device, epoch, sequence, ts, kind, "
             "message, attributes) VALUES ($1, current_date, $2, 'e', 1, 0, "
             "'k', 'm', '\\x')"},
  {"wire_series", "INSERT INTO wire_series (org, device, epoch, idx, "
                  "series_id) VALUES ($1, $2, 'e', 0, 1)"},
  {"wire_history", "INSERT INTO wire_history (org, device, epoch, history) "
                   "VALUES ($1, $2, 'e', '\\x00')"},
  {"device_capability",
   "INSERT INTO device_capability (org, device, tier, total_ram, "
   "available_ram, total_disk, available_disk, cpu_cores, has_sqlite, "
   "has_network, updated_ms) VALUES ($1, $2, 1, 0, 0, 0, 0, 1, true, true, 0)"},
  {"device_config", "INSERT INTO device_config (org, device, version, "
                    "batch_size, sync_interval_ms, retention_ms, zstd_level) "
                    "VALUES ($1, $2, 1, 1, 1, 1, 1)"},
  {"fleet_applied", "INSERT INTO fleet_applied (org, device, stream, epoch, "
                    "sequence, applied_ms) VALUES ($1, $2, 'metrics', 'e', 1, "
                    "0)"},
  {"fleet_latest", "INSERT INTO fleet_latest (org, device, metric, labels, "
                   "ts, value, bits) VALUES ($1, $2, 'cpu', '', 0, 1, 0)"},
  {"fleet_hourly", "INSERT INTO fleet_hourly (org, device, metric, labels, "
                   "hour_s, sum, count, min, max) VALUES ($1, $2, 'cpu', '', "
                   "0, 1, 1, 1, 1)"},
  {"delivery", "INSERT INTO delivery (org, device, stream, hour_ms, received, "
               "duplicates, missing, declared_drops, collected, stored) "
               "VALUES ($1, $2, 'metrics', 0, 1, 0, 0, 0, 1, 1)"},
  {"declared_drops", "INSERT INTO declared_drops (org, device, stream, "
                     "origin, records, batches, collected, stored) VALUES "
                     "($1, $2, 'metrics', 'o', 1, 0, 1, 1)"},
};

// Tenant tables the node's role may only insert into, under its org: the
// journal (sinks read it through the schema owner's functions).
const std::vector<std::string> insert_only = {"journal"};

int64_t rows_of(const std::string& table) {
  return table == "quotas" ? 1 : rows_per_org;
}

const std::string& other(const std::string& org) {
  return org == acme ? zenith : acme;
}

// Runs `fn` in a transaction scoped to `org`, always rolled back.
template <class F>
void scoped(pg::connection& c, const std::string& org, F fn) {
  REQUIRE_FALSE(c.begin(org));
  fn();
  c.rollback();
}

// `sql` fails in a transaction of `org` with SQLSTATE `state`.
void refused(pg::connection& c, const std::string& org, const std::string& sql,
             const pg::params& ps, const char* state) {
  scoped(c, org, [&] {
    auto r = c.exec(sql, ps);
    INFO(org << ": " << sql);
    CHECK_FALSE(r);
    CHECK(c.last_sqlstate() == state);
  });
}

// The schema migrated, both orgs seeded through PgBouncer; the database.
std::optional<test::pg_database> seeded(const char* prefix, std::string& why) {
  auto db = test::fresh_pg_database(prefix, why, true);
  if (!db)
    return db;
  auto owner = pg_connect(db->owner_url);
  auto migrated = migrate(owner);
  if (!migrated)
    FAIL(render(migrated.error()));
  auto app = pg_connect(db->pooled_url, {false});
  REQUIRE(ensure_partitions(app, std::time(nullptr) * int64_t{1000}, 1));
  for (auto& org : {acme, zenith}) {
    pg_must(app, "INSERT INTO orgs VALUES ($1, 0)", {org});
    REQUIRE_FALSE(pg::transaction(app, org, [&]() -> caf::error {
      for (auto& [table, sql] : seeds)
        for (int64_t i = 0; i < rows_of(table); ++i)
          pg_must(app, sql, {org, org + "-dev" + std::to_string(i)});
      return caf::none;
    }));
  }
  return db;
}

// What `org` sees of `table`: all its rows, none of the other's.
void sees_only_its_own(pg::connection& c, const std::string& org,
                       const std::string& table) {
  auto r = pg_must(c,
                   "SELECT count(*), count(*) FILTER (WHERE org <> $1) FROM "
                     + table,
                   {org});
  INFO(org << " reads " << table);
  CHECK(r.int64(0, 0) == rows_of(table));
  CHECK(r.int64(0, 1) == 0);
}

} // namespace

TEST_CASE("every table with an org column has row level security, forced, "
          "and each is covered here") {
  std::string why;
  auto db = seeded("rls_schema", why);
  if (!db)
    return test::skip(why);
  auto owner = pg_connect(db->owner_url);
  auto r = pg_must(owner,
                   "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
                   "EXISTS (SELECT 1 FROM pg_policies p WHERE p.tablename = "
                   "c.relname AND p.policyname = 'org_rows') FROM pg_class c "
                   "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = "
                   "'org' WHERE c.relnamespace = "
                   "current_schema()::regnamespace "
                   "AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
                   "ORDER BY 1");
  std::set<std::string> tenant_tables;
  for (int i = 0; i < r.rows(); ++i) {
    std::string table{r.text(i, 0)};
    INFO(table);
    CHECK(r.boolean(i, 1));
    CHECK(r.boolean(i, 2));
    CHECK(r.boolean(i, 3));
    tenant_tables.insert(table);
  }
  std::set<std::string> covered;
  for (auto& seed : seeds)
    covered.insert(seed.first);
  covered.insert(insert_only.begin(), insert_only.end());
  CHECK(tenant_tables == covered);
}

TEST_CASE("the journal takes rows of the transaction's org only, and the "
          "node's role reads none of it, its own org's included") {
  std::string why;
  auto db = seeded("rls_journal", why);
  if (!db)
    return test::skip(why);
  const int64_t at = 1'700'000'000'000;
  auto owner = pg_connect(db->owner_url);
  pg_must(owner, "SELECT fleetd_ensure_journal_partitions($1, 1)",
          {at / 3'600'000});
  auto c = pg_connect(db->pooled_url, {false});
  const std::string insert = "INSERT INTO journal (received_ms, org, device, "
                             "entry) VALUES ($1, $2, 'd', '\\x00')";
  scoped(c, acme, [&] {
    CHECK(pg_must(c, insert, {at, acme}).affected() == 1);
  });
  refused(c, acme, insert, {at, zenith}, pg::insufficient_privilege);
  refused(c, acme, "SELECT count(*) FROM journal", {},
          pg::insufficient_privilege);
  refused(c, acme, "DELETE FROM journal", {}, pg::insufficient_privilege);
}

TEST_CASE("interleaved through PgBouncer, no org reads, changes or writes "
          "another org's rows in any tenant table") {
  std::string why;
  auto db = seeded("rls_tables", why);
  if (!db)
    return test::skip(why);
  // More clients than PgBouncer has server connections (4).
  std::vector<pg::connection> clients;
  for (int i = 0; i < 6; ++i)
    clients.push_back(pg_connect(db->pooled_url, {false}));
  std::map<int64_t, std::set<std::string>> orgs_per_server;
  int turn = 0;
  for (auto& [table, sql] : seeds) {
    for (auto& org : {acme, zenith}) {
      auto& c = clients[static_cast<size_t>(turn++) % clients.size()];
      scoped(c, org, [&] {
        orgs_per_server[pg_must(c, "SELECT pg_backend_pid()").int64(0, 0)]
          .insert(org);
        sees_only_its_own(c, org, table);
        INFO(org << " changes " << table);
        CHECK(pg_must(c, "UPDATE " + table + " SET org = org").affected()
              == rows_of(table));
        CHECK(pg_must(c, "UPDATE " + table + " SET org = org WHERE org = $1",
                      {other(org)})
                .affected()
              == 0);
        CHECK(pg_must(c, "DELETE FROM " + table + " WHERE org = $1",
                      {other(org)})
                .affected()
              == 0);
      });
      auto& d = clients[static_cast<size_t>(turn++) % clients.size()];
      // Writing the other org's id: refused by WITH CHECK.
      refused(d, org, sql, {other(org), "intruder"},
              pg::insufficient_privilege);
      refused(d, org, "UPDATE " + table + " SET org = $1", {other(org)},
              pg::insufficient_privilege);
    }
  }
  // Deleting everything one org sees takes its rows only (then rolled back).
  for (auto& org : {acme, zenith}) {
    scoped(clients[0], org, [&] {
      for (auto i = seeds.rbegin(); i != seeds.rend(); ++i) {
        INFO(org << " deletes " << i->first);
        CHECK(pg_must(clients[0], "DELETE FROM " + i->first).affected()
              == rows_of(i->first));
      }
    });
  }
  for (auto& org : {acme, zenith})
    scoped(clients[1], org, [&] {
      for (auto& seed : seeds)
        sees_only_its_own(clients[1], org, seed.first);
    });
  // The same server connections served both orgs: the pooling was real.
  int shared_servers = 0;
  for (auto& [pid, orgs] : orgs_per_server)
    shared_servers += orgs.size() == 2 ? 1 : 0;
  CHECK(shared_servers > 0);
  MESSAGE(orgs_per_server.size() << " server connections served 6 clients; "
                                 << shared_servers << " served both orgs");
}

TEST_CASE("concurrent clients of both orgs through PgBouncer each see only "
          "their own rows") {
  std::string why;
  auto db = seeded("rls_concurrent", why);
  if (!db)
    return test::skip(why);
  constexpr int threads = 6;
  constexpr int rounds = 40;
  std::atomic<int> wrong{0};
  std::atomic<int> failed{0};
  std::mutex mtx;
  std::map<int64_t, std::set<std::string>> orgs_per_server;
  auto client = [&](int t) {
    auto c = pg::connection::open(db->pooled_url, {false});
    if (!c) {
      ++failed;
      return;
    }
    for (int i = 0; i < rounds; ++i) {
      auto& org = (t + i) % 2 ? acme : zenith;
      auto& table = seeds[static_cast<size_t>(t + i) % seeds.size()].first;
      auto err = pg::transaction(*c, org, [&]() -> caf::error {
        auto r = c->exec("SELECT pg_backend_pid(), (SELECT count(*) FROM "
                         + table + "), (SELECT count(*) FROM " + table
                         + " WHERE org <> $1)",
                         {org});
        if (!r)
          return r.error();
        if (r->int64(0, 1) != rows_of(table) || r->int64(0, 2) != 0)
          ++wrong;
        std::lock_guard<std::mutex> guard{mtx};
        orgs_per_server[r->int64(0, 0)].insert(org);
        return caf::none;
      });
      if (err)
        ++failed;
    }
  };
  std::vector<std::thread> running;
  for (int t = 0; t < threads; ++t)
    running.emplace_back(client, t);
  for (auto& th : running)
    th.join();
  CHECK(failed == 0);
  CHECK(wrong == 0);
  int shared_servers = 0;
  for (auto& [pid, orgs] : orgs_per_server)
    shared_servers += orgs.size() == 2 ? 1 : 0;
  CHECK(shared_servers > 0);
  CHECK(orgs_per_server.size() <= 4);  // PgBouncer's pool
  MESSAGE(threads << " clients, " << threads * rounds << " transactions on "
                  << orgs_per_server.size() << " server connections, "
                  << shared_servers << " of them serving both orgs");
}

TEST_CASE("a transaction that sets no org sees and changes nothing") {
  std::string why;
  auto db = seeded("rls_no_org", why);
  if (!db)
    return test::skip(why);
  auto c = pg_connect(db->pooled_url, {false});
  for (auto& [table, sql] : seeds) {
    scoped(c, "", [&] {
      INFO(table);
      CHECK(pg_must(c, "SELECT count(*) FROM " + table).int64(0, 0) == 0);
      CHECK(pg_must(c, "UPDATE " + table + " SET org = org").affected() == 0);
      CHECK(pg_must(c, "DELETE FROM " + table).affected() == 0);
    });
    refused(c, "", sql, {acme, "nobody"}, pg::insufficient_privilege);
  }
  // Outside any transaction (autocommit) it is the same.
  CHECK(pg_must(c, "SELECT count(*) FROM devices").int64(0, 0) == 0);
}

TEST_CASE("a key or token hash shows its one row and changes nothing") {
  std::string why;
  auto db = seeded("rls_hash", why);
  if (!db)
    return test::skip(why);
  auto c = pg_connect(db->pooled_url, {false});
  // The seeds' hashes: md5 of org and device (of "t", org, device).
  auto hash = [&](const std::string& text) {
    return std::string{pg_must(c, "SELECT md5($1)", {text}).text(0, 0)};
  };
  auto key = hash(zenith + zenith + "-dev1");
  scoped(c, "", [&] {
    REQUIRE_FALSE(c.set_local(key_hash_setting, key));
    auto r = pg_must(c, "SELECT org, device FROM device_keys");
    REQUIRE(r.rows() == 1);
    CHECK(r.text(0, 0) == zenith);
    CHECK(r.text(0, 1) == "zenith-dev1");
    CHECK(pg_must(c, "UPDATE device_keys SET expires_ms = 1").affected() == 0);
    CHECK(pg_must(c, "DELETE FROM device_keys").affected() == 0);
    CHECK(pg_must(c, "SELECT count(*) FROM enroll_tokens").int64(0, 0) == 0);
  });
  scoped(c, acme, [&] {
    REQUIRE_FALSE(c.set_local(key_hash_setting, key));
    auto r = pg_must(c, "SELECT count(*) FILTER (WHERE org = $1), count(*) "
                        "FROM device_keys",
                     {zenith});
    CHECK(r.int64(0, 0) == 1);
    CHECK(r.int64(0, 1) == rows_per_org + 1);
    CHECK(pg_must(c, "UPDATE device_keys SET expires_ms = 1").affected()
          == rows_per_org);
  });
  auto token = hash("t" + acme + acme + "-dev0");
  scoped(c, "", [&] {
    REQUIRE_FALSE(c.set_local(token_hash_setting, token));
    CHECK(pg_must(c, "SELECT org FROM enroll_tokens").text(0, 0) == acme);
    CHECK(pg_must(c, "UPDATE enroll_tokens SET uses_left = 0").affected() == 0);
  });
}

TEST_CASE("the node's role cannot step around the policies") {
  std::string why;
  auto db = seeded("rls_bypass", why);
  if (!db)
    return test::skip(why);
  auto c = pg_connect(db->pooled_url, {false});
  auto orgs = pg_must(c, "SELECT count(*) FROM orgs");
  CHECK(orgs.int64(0, 0) == 2);  // the registry of names: readable
  refused(c, acme, "UPDATE orgs SET created_ms = 1", {},
          pg::insufficient_privilege);
  refused(c, acme, "DELETE FROM orgs", {}, pg::insufficient_privilege);
  refused(c, acme, "ALTER TABLE devices DISABLE ROW LEVEL SECURITY", {},
          pg::insufficient_privilege);
  refused(c, acme, "ALTER TABLE devices NO FORCE ROW LEVEL SECURITY", {},
          pg::insufficient_privilege);
  refused(c, acme, "DROP POLICY org_rows ON devices", {},
          pg::insufficient_privilege);
  refused(c, acme, "TRUNCATE devices", {}, pg::insufficient_privilege);
  refused(c, acme, "CREATE TABLE mine (a integer)", {},
          pg::insufficient_privilege);
  // With row_security off a query that policies would filter fails.
  scoped(c, acme, [&] {
    pg_must(c, "SET LOCAL row_security = off");
    CHECK_FALSE(c.exec("SELECT 1 FROM devices"));
    CHECK(c.last_sqlstate() == pg::insufficient_privilege);
  });
}

TEST_CASE("behind PgBouncer a plain SET leaks to the next client, "
          "set_config(..., true) does not") {
  std::string why;
  auto db = seeded("rls_leak", why);
  if (!db)
    return test::skip(why);
  // One client after the other: PgBouncer hands them the same server
  // connection (it has made only one for this database).
  auto a = pg_connect(db->pooled_url, {false});
  auto b = pg_connect(db->pooled_url, {false});
  auto probe = [&](pg::connection& c) {
    auto r = pg_must(c, "SELECT pg_backend_pid(), coalesce(current_setting("
                        "'app.org_id', true), ''), "
                        "(SELECT count(*) FROM devices)");
    return std::make_tuple(r.int64(0, 0), std::string{r.text(0, 1)},
                           r.int64(0, 2));
  };
  scoped(a, acme, [&] { CHECK(std::get<2>(probe(a)) == rows_per_org); });
  auto [pid_clean, org_clean, seen_clean] = probe(b);
  CHECK(org_clean.empty());
  CHECK(seen_clean == 0);
  // A plain SET outlives the client's transaction on the server connection.
  REQUIRE(a.exec_script("SET app.org_id = 'acme'"));
  auto [pid_leak, org_leak, seen_leak] = probe(b);
  CHECK(pid_leak == pid_clean);
  CHECK(org_leak == acme);
  CHECK(seen_leak == rows_per_org);
  // Every transaction of the wrapper sets its own org, even none.
  scoped(b, "", [&] {
    CHECK(std::get<1>(probe(b)).empty());
    CHECK(std::get<2>(probe(b)) == 0);
  });
  scoped(b, zenith, [&] {
    auto r = pg_must(b, "SELECT count(*) FROM devices WHERE org = $1", {acme});
    CHECK(r.int64(0, 0) == 0);
  });
  REQUIRE(a.exec_script("RESET app.org_id"));
}
