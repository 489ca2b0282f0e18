// runtime/sqlite: the statement cache and rewinding a statement.
#include "runtime/sqlite.hpp"

#include <filesystem>

#include <doctest/doctest.h>
#include <sqlite3.h>

#include "scratch_dir.hpp"

using namespace fleetd;

namespace {

// Statements the connection holds prepared, and how many of them are busy
// (stepped, not reset: holding a read snapshot).
std::pair<int, int> statements_of(sqlite::database& db) {
  int all = 0;
  int busy = 0;
  for (auto* st = sqlite3_next_stmt(db.handle(), nullptr); st != nullptr;
       st = sqlite3_next_stmt(db.handle(), st)) {
    ++all;
    busy += sqlite3_stmt_busy(st) ? 1 : 0;
  }
  return {all, busy};
}

sqlite::database open_with_rows(const test::scratch_dir& dir) {
  auto db = sqlite::database::open(dir.file("t.db"));
  REQUIRE(db);
  REQUIRE(!db->exec("CREATE TABLE t (a INTEGER, b TEXT);"
                    "INSERT INTO t VALUES (1, 'x'), (2, 'y'), (3, 'z');"));
  return std::move(*db);
}

int64_t count_where(sqlite::database& db, int64_t a, const char* b) {
  auto st = db.prepare("SELECT count(*) FROM t WHERE a = ?1 AND b = ?2");
  REQUIRE(st);
  st->bind(1, a).bind(2, std::string_view{b});
  auto row = st->step();
  REQUIRE(row);
  return st->column_int(0);
}

} // namespace

TEST_CASE("a cached statement is prepared once and reset when dropped") {
  test::scratch_dir dir("fleetd-sqlite");
  auto db = open_with_rows(dir);
  const std::string sql = "SELECT a FROM t ORDER BY a";
  for (int round = 0; round < 3; ++round) {
    auto st = db.cached(sql);
    REQUIRE(st);
    auto row = st->step();
    REQUIRE(row);
    REQUIRE(*row);
    // Every round starts from the first row: the last one was reset.
    CHECK(st->column_int(0) == 1);
    CHECK(statements_of(db) == std::pair{1, 1});
  }
  // Dropped with rows left: reset, so no read snapshot stays open.
  CHECK(statements_of(db) == std::pair{1, 0});
}

TEST_CASE("a second use while the first is lent gets a statement of its own") {
  test::scratch_dir dir("fleetd-sqlite");
  auto db = open_with_rows(dir);
  const std::string sql = "SELECT b FROM t WHERE a = ?1";
  auto first = db.cached(sql);
  REQUIRE(first);
  first->bind(1, int64_t{1});
  REQUIRE(*first->step());
  {
    auto second = db.cached(sql);
    REQUIRE(second);
    second->bind(1, int64_t{3});
    REQUIRE(*second->step());
    CHECK(second->column_text(0) == "z");
    CHECK(statements_of(db).first == 2);
  }
  // The first is untouched by the second, which was finalized.
  CHECK(first->column_text(0) == "x");
  CHECK(statements_of(db).first == 1);
}

TEST_CASE("rewind keeps the bindings, reset clears them") {
  test::scratch_dir dir("fleetd-sqlite");
  auto db = open_with_rows(dir);
  auto ins = db.cached("INSERT INTO t (a, b) VALUES (?1, ?2)");
  REQUIRE(ins);
  ins->bind(1, int64_t{7}).bind(2, std::string_view{"kept"});
  REQUIRE(!ins->run());
  ins->rewind().bind(1, int64_t{8});
  REQUIRE(!ins->run());
  CHECK(count_where(db, 7, "kept") == 1);
  CHECK(count_where(db, 8, "kept") == 1);
  ins->reset().bind(1, int64_t{9});
  REQUIRE(!ins->run());
  CHECK(count_where(db, 9, "kept") == 0);
}

TEST_CASE("a statement that cannot be prepared is an error and not cached") {
  test::scratch_dir dir("fleetd-sqlite");
  auto db = open_with_rows(dir);
  CHECK(!db.cached("SELECT nope FROM nowhere"));
  CHECK(!db.cached("SELECT nope FROM nowhere"));
  CHECK(statements_of(db).first == 0);
}

TEST_CASE("a database moved or closed takes its cached statements along") {
  test::scratch_dir dir("fleetd-sqlite");
  auto db = open_with_rows(dir);
  { REQUIRE(db.cached("SELECT a FROM t")); }
  auto moved = std::move(db);
  {
    auto st = moved.cached("SELECT a FROM t");
    REQUIRE(st);
    CHECK(*st->step());
  }
  CHECK(statements_of(moved).first == 1);
  CHECK(std::filesystem::exists(dir.file("t.db-wal")));
  moved.close();
  CHECK(!moved.is_open());
  // Closed for real, not left a zombie by an unfinalized statement: the
  // last connection's close checkpointed and removed the WAL.
  CHECK(!std::filesystem::exists(dir.file("t.db-wal")));
}
