// The embedded store's ingest journal: written in the ack's transaction or
// not at all, bounded (journal_full, back-pressure), read in order from a
// persisted cursor, pruned once every enabled sink passed.
#include "cloud/embedded_journal.hpp"
#include "cloud/embedded_store.hpp"

#include <memory>
#include <string>

#include <doctest/doctest.h>

#include "messages/error.hpp"
#include "runtime/sqlite.hpp"
#include "scratch_dir.hpp"
#include "store_batches.hpp"

using namespace fleetd;

namespace {

struct journal_fixture {
  test::scratch_dir dir{"fleetd-journal"};
  std::shared_ptr<manual_clock> clock
    = std::make_shared<manual_clock>(test::store_clock_start_ms);
  std::string path = dir.file("cloud.db");
  journal_config cfg;

  journal_fixture() {
    REQUIRE(dir.ok());
    cfg.enabled = true;
  }

  embedded_store store() {
    auto st = embedded_store::open(path, clock, cfg);
    REQUIRE_MESSAGE(st, render(st.error()));
    return std::move(*st);
  }

  embedded_journal reader() {
    auto j = embedded_journal::open(path, clock, cfg);
    REQUIRE_MESSAGE(j, render(j.error()));
    return std::move(*j);
  }

  int64_t count(const std::string& sql) {
    auto db = sqlite::database::open(path);
    REQUIRE(db);
    auto st = db->prepare(sql);
    REQUIRE(st);
    auto row = st->step();
    REQUIRE((row && *row));
    return st->column_int(0);
  }
};

ingest_batch batch(const std::string& device, int64_t seq) {
  return test::journal_batch(device, seq, 4);
}

} // namespace

TEST_CASE("an accepted batch is journaled with its org and device; a "
          "duplicate adds no row") {
  journal_fixture f;
  auto st = f.store();
  REQUIRE(st.write(batch("acme/dev-1", 1)));
  auto dup = st.write(batch("acme/dev-1", 1));
  REQUIRE(dup);
  CHECK(dup->duplicate);
  auto j = f.reader();
  auto chunk = j.read({}, {10});
  REQUIRE_MESSAGE(chunk, render(chunk.error()));
  REQUIRE(chunk->entries.size() == 1);
  auto& x = chunk->entries[0];
  CHECK(x.org == "acme");
  CHECK(x.device == "dev-1");
  CHECK(x.sequence == 1);
  CHECK(x.received_ms == test::store_clock_start_ms);
  CHECK(x.samples.size() == 4);
  CHECK(x.id == chunk->end.id);
}

TEST_CASE("a journal write that fails takes the ack with it: neither lands") {
  journal_fixture f;
  auto st = f.store();
  {
    // Fails the journal insert the way a full disk or a constraint would.
    auto db = sqlite::database::open(f.path);
    REQUIRE(db);
    REQUIRE_FALSE(db->exec("CREATE TRIGGER fail_journal BEFORE INSERT ON "
                           "journal BEGIN SELECT RAISE(ABORT, 'no'); END"));
  }
  CHECK_FALSE(st.write(batch("acme/dev-1", 1)));
  CHECK(f.count("SELECT count(*) FROM journal") == 0);
  CHECK(f.count("SELECT count(*) FROM batches") == 0);
  CHECK(f.count("SELECT count(*) FROM streams") == 0);
  CHECK(f.count("SELECT count(*) FROM points") == 0);
}

TEST_CASE("past journal.max-bytes a batch is refused journal_full, unacked, "
          "and accepted again once the sinks passed the rows") {
  journal_fixture f;
  f.cfg.max_bytes = 1;
  auto st = f.store();
  REQUIRE(st.write(batch("acme/dev-1", 1)));
  auto r = st.write(batch("acme/dev-1", 2));
  REQUIRE_FALSE(r);
  CHECK(is_error(r.error(), ec::journal_full));
  CHECK(f.count("SELECT last_sequence FROM streams") == 1);
  auto j = f.reader();
  auto chunk = j.read({}, {10});
  REQUIRE(chunk);
  REQUIRE_FALSE(j.advance("a", chunk->end));
  auto pruned = j.prune({"a"});
  REQUIRE(pruned);
  CHECK(*pruned == 1);
  CHECK(f.count("SELECT bytes FROM journal_size") == 0);
  CHECK(st.write(batch("acme/dev-1", 2)));
}

TEST_CASE("past journal.retention a batch is refused journal_full") {
  journal_fixture f;
  f.cfg.retention = std::chrono::minutes(1);
  auto st = f.store();
  REQUIRE(st.write(batch("acme/dev-1", 1)));
  f.clock->advance(30'000);
  CHECK(st.write(batch("acme/dev-1", 2)));
  f.clock->advance(31'000);
  auto r = st.write(batch("acme/dev-1", 3));
  REQUIRE_FALSE(r);
  CHECK(is_error(r.error(), ec::journal_full));
}

TEST_CASE("rows are deleted only once every enabled sink passed them") {
  journal_fixture f;
  auto st = f.store();
  for (int64_t i = 1; i <= 4; ++i)
    REQUIRE(st.write(batch("acme/dev-1", i)));
  auto j = f.reader();
  auto all = j.read({}, {10});
  REQUIRE(all);
  REQUIRE(all->positions.size() == 4);
  REQUIRE_FALSE(j.advance("a", all->end));
  REQUIRE_FALSE(j.advance("b", all->positions[1]));
  CHECK(*j.prune({"a", "b"}) == 2);
  CHECK(f.count("SELECT count(*) FROM journal") == 2);
  // A cursor never moves back.
  REQUIRE_FALSE(j.advance("a", all->positions[0]));
  CHECK(j.cursor("a")->id == all->end.id);
  REQUIRE_FALSE(j.advance("b", all->end));
  CHECK(*j.prune({"a", "b"}) == 2);
  CHECK(f.count("SELECT count(*) FROM journal") == 0);
  // Ids are never reused: a new row comes after every cursor.
  REQUIRE(st.write(batch("acme/dev-1", 5)));
  auto next = j.read(*j.cursor("a"), {10});
  REQUIRE(next);
  REQUIRE(next->entries.size() == 1);
  CHECK(next->entries[0].sequence == 5);
}

TEST_CASE("a read stops at its points as well as its rows: the rest comes "
          "next, and an entry larger than the points goes alone") {
  journal_fixture f;
  auto st = f.store();
  for (int64_t i = 1; i <= 5; ++i)
    REQUIRE(st.write(batch("acme/dev-1", i))); // 4 samples each
  auto j = f.reader();
  std::vector<size_t> sizes;
  journal_cursor at;
  for (;;) {
    auto c = j.read(at, {10, 6});
    REQUIRE_MESSAGE(c, render(c.error()));
    if (c->rows == 0)
      break;
    CHECK(c->points == static_cast<int64_t>(4 * c->entries.size()));
    CHECK(c->end.id == c->positions.back().id);
    sizes.push_back(c->entries.size());
    at = c->end;
  }
  // 4 + 4 passes 6: a chunk stops after the entry that reaches its points.
  CHECK(sizes == std::vector<size_t>{2, 2, 1});
  auto one = j.read({}, {10, 1});
  REQUIRE(one);
  CHECK(one->entries.size() == 1);
  CHECK(one->entries[0].sequence == 1);
}

TEST_CASE("journaling without sinks is off: no row is written") {
  journal_fixture f;
  f.cfg.enabled = false;
  auto st = f.store();
  REQUIRE(st.write(batch("acme/dev-1", 1)));
  CHECK(f.count("SELECT count(*) FROM journal") == 0);
}

TEST_CASE("a sink's lag counts the rows after its cursor, is 0 once it read "
          "everything, and its age is the first unread row's") {
  journal_fixture f;
  auto st = f.store();
  for (int64_t i = 1; i <= 5; ++i) {
    REQUIRE(st.write(batch("acme/dev-1", i)));
    f.clock->advance(1000);
  }
  auto j = f.reader();
  auto none = j.lag({});
  REQUIRE_MESSAGE(none, render(none.error()));
  CHECK(none->entries == 5);
  CHECK(none->oldest_ms == test::store_clock_start_ms);
  auto all = j.read({}, {10});
  REQUIRE(all);
  REQUIRE(all->positions.size() == 5);
  REQUIRE_FALSE(j.advance("a", all->positions[1]));
  CHECK(j.lag(all->positions[1])->entries == 3);
  CHECK(j.lag(all->positions[1])->oldest_ms
        == test::store_clock_start_ms + 2000);
  // Rows pruned from the front: a sink without a cursor sees what is left.
  CHECK(*j.prune({"a"}) == 2);
  CHECK(j.lag({})->entries == 3);
  auto done = j.lag(all->end);
  REQUIRE(done);
  CHECK(done->entries == 0);
  CHECK(done->oldest_ms == 0);
  REQUIRE_FALSE(j.advance("a", all->end));
  CHECK(*j.prune({"a"}) == 3);
  CHECK(j.lag({})->entries == 0);
  CHECK(j.lag(all->end)->entries == 0);
  REQUIRE(st.write(batch("acme/dev-1", 6)));
  CHECK(j.lag(all->end)->entries == 1);
}
