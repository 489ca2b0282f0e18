// The ingest journal on PostgreSQL: written in the ack's transaction, read
// in commit order even when writers commit out of id order, bounded, and
// drained by one node at a time (the lease), taken over after expiry.
#include "cloud/pg_journal.hpp"

#include <chrono>
#include <memory>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "cloud/pg_migrate.hpp"
#include "cloud/pg_store.hpp"
#include "cloud/sink_runner.hpp"
#include "messages/error.hpp"
#include "messages/journal_codec.hpp"
#include "messages/register.hpp"
#include "ask.hpp"
#include "helpers.hpp"
#include "journal_sinks.hpp"
#include "pg_fixture.hpp"
#include "skip.hpp"
#include "store_batches.hpp"

using namespace fleetd;
using namespace std::chrono_literals;

namespace {

constexpr int64_t start_ms = test::store_clock_start_ms;

struct pg_journal_fixture {
  std::optional<pg_database> db;
  std::shared_ptr<manual_clock> clock = std::make_shared<manual_clock>(start_ms);
  journal_config jcfg;
  pg::connect_options opts;

  bool start(const std::string& name) {
    std::string why;
    db = test::fresh_pg_database(name, why);
    if (!db) {
      test::skip(why);
      return false;
    }
    auto owner = test::pg_connect(db->owner_url);
    auto migrated = migrate(owner);
    REQUIRE_MESSAGE(migrated, render(migrated.error()));
    jcfg.enabled = true;
    opts.statement_timeout_ms = 30000; // as fleetd-cloud does
    return true;
  }

  pg_store store() {
    auto st = pg_store::open(db->app_url, clock, opts, 1, jcfg);
    REQUIRE_MESSAGE(st, render(st.error()));
    return std::move(*st);
  }

  pg_journal reader(clock_ptr clk = nullptr) {
    auto j = pg_journal::open(db->app_url, clk ? clk : clock, jcfg, opts);
    REQUIRE_MESSAGE(j, render(j.error()));
    return std::move(*j);
  }

  // Counted as the owner within `org` (the tables force row security).
  int64_t count(const std::string& org, const std::string& table) {
    auto c = test::pg_connect(db->owner_url);
    test::pg_must(c, "BEGIN");
    test::pg_must(c, "SELECT set_config('app.org_id', $1, true)", {org});
    return test::pg_must(c, "SELECT count(*) FROM " + table).int64(0, 0);
  }
};

ingest_batch batch(const std::string& device, int64_t seq) {
  return test::journal_batch(device, seq, 2);
}

// Opens a transaction on `c` that journals one entry of `seq` for `org`,
// received at `at`.
void journal_open(pg::connection& c, const std::string& org, int64_t seq,
                  int64_t at = start_ms) {
  journal_entry x;
  x.org = org;
  x.device = "d";
  x.sequence = seq;
  x.received_ms = at;
  test::pg_must(c, "BEGIN");
  test::pg_must(c, "SELECT set_config('app.org_id', $1, true)", {org});
  test::pg_must(c, "INSERT INTO journal (received_ms, org, device, entry) "
                   "VALUES ($1, $2, 'd', $3)",
                {at, org, pg::param::bytea(encode_journal_entry(x))});
}

constexpr int64_t hour_ms = 3'600'000;

// The hours of the journal's partitions, in order.
std::vector<int64_t> partition_hours(pg_journal_fixture& f) {
  auto owner = test::pg_connect(f.db->owner_url);
  auto r = test::pg_must(owner, "SELECT substr(c.relname, 9)::bigint AS h "
                                "FROM pg_inherits i JOIN pg_class c ON "
                                "c.oid = i.inhrelid WHERE i.inhparent = "
                                "'journal'::regclass ORDER BY h");
  std::vector<int64_t> out;
  for (int i = 0; i < r.rows(); ++i)
    out.push_back(r.int64(i, 0));
  return out;
}


void write_ok(pg_store& st, const ingest_batch& b) {
  auto r = st.write(b);
  REQUIRE_MESSAGE(r, render(r.error()));
}

std::vector<int64_t> sequences(const journal_chunk& c) {
  std::vector<int64_t> out;
  for (auto& x : c.entries)
    out.push_back(x.sequence);
  return out;
}

// Reads up to `max` entries after `sink`'s cursor, advances it past them.
std::vector<int64_t> drain(pg_journal& j, const std::string& sink,
                           int64_t max) {
  auto c = j.cursor(sink);
  REQUIRE(c);
  auto chunk = j.read(*c, {max});
  REQUIRE_MESSAGE(chunk, render(chunk.error()));
  REQUIRE_FALSE(j.advance(sink, chunk->end));
  return sequences(*chunk);
}

} // namespace

TEST_CASE("postgresql: the journal row commits with the ack, and a failing "
          "journal write takes the ack with it") {
  pg_journal_fixture f;
  if (!f.start("journal_ack"))
    return;
  auto st = f.store();
  write_ok(st, batch("acme/dev-1", 1));
  auto j = f.reader();
  auto chunk = j.read({}, {10});
  REQUIRE_MESSAGE(chunk, render(chunk.error()));
  REQUIRE(chunk->entries.size() == 1);
  CHECK(chunk->entries[0].org == "acme");
  CHECK(chunk->entries[0].device == "dev-1");
  CHECK(chunk->entries[0].samples.size() == 2);
  auto owner = test::pg_connect(f.db->owner_url);
  test::pg_must(owner, "CREATE FUNCTION no_rows() RETURNS trigger LANGUAGE "
                       "plpgsql AS $$ BEGIN RAISE EXCEPTION 'no'; END $$");
  test::pg_must(owner, "CREATE TRIGGER fail_journal BEFORE INSERT ON journal "
                       "FOR EACH ROW EXECUTE FUNCTION no_rows()");
  CHECK_FALSE(st.write(batch("acme/dev-1", 2)));
  CHECK(f.count("acme", "batches") == 1);
  CHECK(f.count("acme", "journal") == 1);
  CHECK(f.count("acme", "points") == 2);
}

TEST_CASE("postgresql: a row committed later with a lower id is not skipped "
          "by a reader that already passed a higher one") {
  pg_journal_fixture f;
  if (!f.start("journal_order"))
    return;
  auto hour = start_ms / 3'600'000;
  auto owner = test::pg_connect(f.db->owner_url);
  test::pg_must(owner, "SELECT fleetd_ensure_journal_partitions($1, 1)",
                {hour});
  auto a = test::pg_connect(f.db->app_url);
  auto b = test::pg_connect(f.db->app_url);
  journal_open(a, "acme", 1);  // takes the lower id, commits last
  journal_open(b, "beta", 2);
  test::pg_must(b, "COMMIT");
  auto j = f.reader();
  auto first = j.read({}, {10});
  REQUIRE(first);
  // b committed, but a (an older transaction) still runs: nothing yet.
  CHECK(first->rows == 0);
  test::pg_must(a, "COMMIT");
  auto both = j.read(first->end, {10});
  REQUIRE(both);
  CHECK(sequences(*both) == std::vector<int64_t>{1, 2});
  auto none = j.read(both->end, {10});
  REQUIRE(none);
  CHECK(none->rows == 0);
}

TEST_CASE("postgresql: a read stops at its points; the rest comes next") {
  pg_journal_fixture f;
  if (!f.start("journal_points"))
    return;
  auto st = f.store();
  for (int64_t i = 1; i <= 3; ++i)
    write_ok(st, batch("acme/dev-1", i)); // 2 samples each
  auto j = f.reader();
  auto first = j.read({}, {10, 3});
  REQUIRE_MESSAGE(first, render(first.error()));
  CHECK(sequences(*first) == std::vector<int64_t>{1, 2});
  CHECK(first->points == 4);
  auto rest = j.read(first->end, {10, 3});
  REQUIRE(rest);
  CHECK(sequences(*rest) == std::vector<int64_t>{3});
}

TEST_CASE("postgresql: past journal.max-bytes the store refuses journal_full "
          "and acks nothing") {
  pg_journal_fixture f;
  if (!f.start("journal_full"))
    return;
  f.jcfg.max_bytes = 1;
  auto st = f.store();
  write_ok(st, batch("acme/dev-1", 1));
  auto owner = test::pg_connect(f.db->owner_url);
  auto held = test::pg_must(owner, "SELECT bytes FROM fleetd_journal_bound()");
  CHECK(held.int64(0, 0) > 0);
  f.clock->advance(1000);
  auto r = st.write(batch("acme/dev-1", 2));
  REQUIRE_FALSE(r);
  CHECK(is_error(r.error(), ec::journal_full));
  CHECK(f.count("acme", "batches") == 1);
  auto j = f.reader();
  auto c = j.read({}, {10});
  REQUIRE(c);
  REQUIRE_FALSE(j.advance("a", c->end));
  CHECK(*j.prune({"a"}) == 1);
  f.clock->advance(1000);
  write_ok(st, batch("acme/dev-1", 2));
}

TEST_CASE("postgresql: past journal.retention the store refuses "
          "journal_full, and accepts again once the old rows are pruned") {
  pg_journal_fixture f;
  if (!f.start("journal_retention"))
    return;
  f.jcfg.retention = std::chrono::minutes(1);
  auto st = f.store();
  write_ok(st, batch("acme/dev-1", 1));
  f.clock->advance(30'000);
  write_ok(st, batch("acme/dev-1", 2));
  f.clock->advance(31'000);
  auto r = st.write(batch("acme/dev-1", 3));
  REQUIRE_FALSE(r);
  CHECK(is_error(r.error(), ec::journal_full));
  auto j = f.reader();
  auto first = j.read({}, {1});
  REQUIRE(first);
  REQUIRE_FALSE(j.advance("a", first->end));
  CHECK(*j.prune({"a"}) == 1);
  f.clock->advance(1000);
  write_ok(st, batch("acme/dev-1", 3));
}

TEST_CASE("postgresql: one runner drains a sink at a time; another takes "
          "over once the lease expired, from the persisted cursor") {
  pg_journal_fixture f;
  if (!f.start("journal_lease"))
    return;
  auto st = f.store();
  for (int64_t i = 1; i <= 3; ++i)
    write_ok(st, batch(i % 2 ? "acme/dev-1" : "beta/dev-2", i));
  caf::actor_system_config cfg;
  register_messages(cfg);
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto sink = std::make_shared<test::recorder_sink>("rec");
  auto make = [&](const std::string& holder) {
    sink_runner_config c;
    c.poll = 5ms;
    c.lease_ttl = 10s;
    c.clock = f.clock;
    c.holder = holder;
    c.backend = sink;
    c.enabled = {"rec"};
    c.open_reader = [&f]() -> caf::expected<std::shared_ptr<journal_reader>> {
      return std::shared_ptr<journal_reader>{
        std::make_shared<pg_journal>(f.reader())};
    };
    return sys.spawn<caf::detached>(sink_runner, c);
  };
  auto a = make("node-a");
  REQUIRE(test::eventually([&] { return sink->sequences().size() == 3; }, 10s));
  auto b = make("node-b");
  self->send_exit(a, caf::exit_reason::user_shutdown);
  self->wait_for(a);
  write_ok(st, batch("acme/dev-1", 4));
  // node-a's lease has not expired: node-b waits.
  auto standby = [&] {
    auto s = test::ask<actor_stats>(self, b, 5s, stats_atom::value);
    return s.counters["lease_refused"];
  };
  CHECK(test::eventually([&] { return standby() >= 2; }, 10s));
  CHECK(sink->sequences().size() == 3);
  f.clock->advance(10'001);
  CHECK(test::eventually([&] { return sink->sequences().size() == 4; }, 10s));
  CHECK(sink->sequences() == std::vector<int64_t>{1, 2, 3, 4});
  CHECK(test::eventually([&] { return f.count("acme", "journal") == 0; }, 10s));
  self->send_exit(b, caf::exit_reason::user_shutdown);
  self->wait_for(b);
}

TEST_CASE("postgresql: a sink's lag is the rows after its cursor, exactly 0 "
          "once it read everything, even past a rolled-back id") {
  pg_journal_fixture f;
  if (!f.start("journal_lag"))
    return;
  auto st = f.store();
  for (int64_t i = 1; i <= 4; ++i) {
    write_ok(st, batch("acme/dev-1", i));
    f.clock->advance(1000);
  }
  auto j = f.reader();
  auto from_start = j.lag({});
  REQUIRE_MESSAGE(from_start, render(from_start.error()));
  CHECK(from_start->entries == 4);
  CHECK(from_start->oldest_ms == start_ms);
  auto all = j.read({}, {10});
  REQUIRE(all);
  REQUIRE(all->positions.size() == 4);
  CHECK(j.lag(all->positions[0])->entries == 3);
  CHECK(j.lag(all->positions[0])->oldest_ms == start_ms + 1000);
  REQUIRE_FALSE(j.advance("a", all->positions[1]));
  CHECK(*j.prune({"a"}) == 2);
  CHECK(j.lag({})->entries == 2);
  auto done = j.lag(all->end);
  REQUIRE(done);
  CHECK(done->entries == 0);
  CHECK(done->oldest_ms == 0);
  // An id handed out and rolled back: nothing after the cursor still.
  auto c = test::pg_connect(f.db->app_url);
  journal_open(c, "acme", 99);
  test::pg_must(c, "ROLLBACK");
  CHECK(j.lag(all->end)->entries == 0);
  write_ok(st, batch("acme/dev-1", 5));
  CHECK(j.lag(all->end)->entries == 1);
}

TEST_CASE("postgresql: old journal partitions are dropped once every sink "
          "passed them; a lagging sink keeps its own and reads them all") {
  pg_journal_fixture f;
  if (!f.start("journal_drop"))
    return;
  auto h0 = start_ms / hour_ms;
  auto st = f.store();
  for (int64_t i = 1; i <= 5; ++i) {
    write_ok(st, batch("acme/dev-1", i));  // hour h0 + i - 1
    f.clock->advance(hour_ms);
  }
  // Partitions: the hours written and the one after the last.
  std::vector<int64_t> made;
  for (int64_t h = h0; h <= h0 + 5; ++h)
    made.push_back(h);
  REQUIRE(partition_hours(f) == made);
  auto j = f.reader();
  CHECK(drain(j, "a", 10) == std::vector<int64_t>{1, 2, 3, 4, 5});
  CHECK(drain(j, "b", 2) == std::vector<int64_t>{1, 2});
  // At h0 + 5: hours before h0 + 3 may go, and only the empty ones.
  CHECK(*j.prune({"a", "b"}) == 2);
  CHECK(j.dropped_partitions() == 2);
  CHECK(partition_hours(f)
        == std::vector<int64_t>{h0 + 2, h0 + 3, h0 + 4, h0 + 5});
  // Hours later, b still lags: its partitions stay, the empty one goes.
  f.clock->advance(4 * hour_ms);
  CHECK(*j.prune({"a", "b"}) == 0);
  CHECK(partition_hours(f) == std::vector<int64_t>{h0 + 2, h0 + 3, h0 + 4});
  CHECK(drain(j, "b", 10) == std::vector<int64_t>{3, 4, 5});
  CHECK(*j.prune({"a", "b"}) == 3);
  // Tried once an hour: the now empty partitions go when the hour turns.
  CHECK(partition_hours(f).size() == 3);
  f.clock->advance(hour_ms);
  CHECK(*j.prune({"a", "b"}) == 0);
  CHECK(partition_hours(f).empty());
  CHECK(j.dropped_partitions() == 6);
  // The store makes its hour's partitions again and ingest goes on.
  write_ok(st, batch("acme/dev-1", 6));
  CHECK(drain(j, "a", 10) == std::vector<int64_t>{6});
}

TEST_CASE("postgresql: dropping partitions gives up quickly on a lock a "
          "writer holds, and drops them once it can") {
  pg_journal_fixture f;
  if (!f.start("journal_drop_lock"))
    return;
  auto h0 = start_ms / hour_ms;
  auto st = f.store();
  write_ok(st, batch("acme/dev-1", 1));
  f.clock->advance(4 * hour_ms);
  write_ok(st, batch("acme/dev-1", 2));
  auto j = f.reader();
  CHECK(drain(j, "a", 10) == std::vector<int64_t>{1, 2});
  // A writer mid-transaction holds the journal: the DROP must not wait on it.
  auto w = test::pg_connect(f.db->app_url);
  journal_open(w, "acme", 3, f.clock->now_ms());
  CHECK(*j.prune({"a"}) == 2);
  CHECK(j.dropped_partitions() == 0);
  CHECK(partition_hours(f).front() == h0);
  test::pg_must(w, "COMMIT");
  CHECK(*j.prune({"a"}) == 0);
  CHECK(partition_hours(f).front() == h0);  // tried again a minute later
  f.clock->advance(61'000);
  CHECK(*j.prune({"a"}) == 0);
  CHECK(j.dropped_partitions() == 2);
  CHECK(partition_hours(f) == std::vector<int64_t>{h0 + 4, h0 + 5});
  CHECK(drain(j, "a", 10) == std::vector<int64_t>{3});
}

TEST_CASE("postgresql: a caller's far-future hour drops no partition the "
          "server's clock calls recent") {
  pg_journal_fixture f;
  if (!f.start("journal_drop_future"))
    return;
  auto owner = test::pg_connect(f.db->owner_url);
  auto now_hour = test::pg_must(owner, "SELECT floor(extract(epoch FROM "
                                       "now()) / 3600)::bigint")
                    .int64(0, 0);
  test::pg_must(owner, "SELECT fleetd_ensure_journal_partitions($1, 3)",
                {now_hour - 2});
  auto app = test::pg_connect(f.db->app_url);
  auto r = test::pg_must(app, "SELECT dropped FROM "
                              "fleetd_journal_drop_partitions($1)",
                         {int64_t{1} << 40});
  CHECK(r.int64(0, 0) == 0);
  CHECK(partition_hours(f)
        == std::vector<int64_t>{now_hour - 2, now_hour - 1, now_hour});
}
