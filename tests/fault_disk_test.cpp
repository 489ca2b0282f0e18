// The fault disk itself: a full disk, I/O errors and a power cut, as SQLite
// sees them through its VFS.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "fault_disk.hpp"
#include "messages/error.hpp"
#include "runtime/page_file.hpp"
#include "runtime/sqlite.hpp"
#include "scratch_dir.hpp"

using namespace fleetd;
using fleetd::test::fault_disk;

namespace {

int64_t count(sqlite::database& db) {
  auto st = db.prepare("SELECT count(*) FROM t");
  REQUIRE(st);
  auto row = st->step();
  REQUIRE(row);
  REQUIRE(*row);
  return st->column_int(0);
}

caf::error insert(sqlite::database& db, int n, size_t bytes = 100) {
  if (auto err = db.exec("BEGIN"))
    return err;
  for (int i = 0; i < n; ++i) {
    auto st = db.prepare("INSERT INTO t (v) VALUES (?1)");
    if (!st)
      return st.error();
    st->bind(1, std::string(bytes, 'x'));
    if (auto err = st->run()) {
      db.exec("ROLLBACK");
      return err;
    }
  }
  return db.exec("COMMIT");
}

// The test table `t` in a database on `disk`; created when `create`.
sqlite::database open_on(const std::shared_ptr<fault_disk>& disk,
                         const test::scratch_dir& dir, bool create = true) {
  auto db = sqlite::database::open(dir.file("t.db"), "FULL", 1000,
                                   disk->vfs());
  REQUIRE_MESSAGE(db, render(db.error()));
  if (create)
    REQUIRE(!db->exec("CREATE TABLE t (v BLOB)"));
  return std::move(*db);
}

bool has_code(const caf::error& err, ec code) {
  return err && err.category() == caf::atom("fleetd")
         && err.code() == static_cast<uint8_t>(code);
}

} // namespace

TEST_CASE("a full fault disk refuses writes with disk_full and takes them "
          "again when room is made") {
  test::scratch_dir dir;
  auto disk = fault_disk::make(256 * 1024);
  auto db = open_on(disk, dir);
  int64_t stored = 0;
  caf::error err;
  for (int i = 0; i < 100 && !err; ++i) {
    err = insert(db, 10, 1000);
    if (!err)
      stored += 10;
  }
  REQUIRE(err);
  CHECK(has_code(err, ec::disk_full));
  CHECK(disk->used() <= 256 * 1024);
  CHECK(disk->free_bytes(dir.path()) < 8 * 1024);
  CHECK(count(db) == stored);
  // An allocation outside SQLite counts too, and gives its room back.
  CHECK_FALSE(disk->allocate(dir.file("ballast"), 64 * 1024));
  disk->set_capacity(1024 * 1024);
  CHECK(disk->allocate(dir.file("ballast"), 64 * 1024));
  CHECK(!insert(db, 10, 1000));
  disk->remove(dir.file("ballast"));
  CHECK(count(db) == stored + 10);
}

TEST_CASE("I/O errors on demand reach the caller as storage errors") {
  test::scratch_dir dir;
  auto disk = fault_disk::make();
  auto db = open_on(disk, dir);
  REQUIRE(!insert(db, 5));
  disk->fail_syncs(true);
  auto err = insert(db, 5);
  CHECK(err);
  disk->fail_syncs(false);
  disk->fail_writes(true);
  CHECK(insert(db, 5));
  disk->fail_writes(false);
  CHECK(!insert(db, 5));
  CHECK(count(db) == 10);
}

TEST_CASE("a power cut keeps every committed transaction and none of the "
          "one in flight, at any write") {
  // Cut at every write of a run in turn: synchronous=FULL commits must all
  // survive, the interrupted one must vanish whole.
  for (int64_t at = 1; at <= 60; ++at) {
    CAPTURE(at);
    test::scratch_dir dir;
    auto disk = fault_disk::make();
    int64_t committed = 0;
    {
      auto db = open_on(disk, dir);
      REQUIRE(!db.exec("PRAGMA wal_autocheckpoint=8"));
      disk->cut_power_after_writes(at);
      for (int i = 0; i < 40 && !disk->power_cut(); ++i)
        if (!insert(db, 3, 700))
          committed += 3;
      CHECK(disk->power_cut());
    }
    disk->revive();
    auto db = open_on(disk, dir, false);
    CHECK(db.quick_check() == "ok");
    auto n = count(db);
    // Committed rows are all there; the batch cut in flight is whole or gone.
    CHECK(n >= committed);
    CHECK(n <= committed + 3);
    CHECK(n % 3 == 0);
  }
}

TEST_CASE("a power cut undoes every write that was not synced") {
  // Under synchronous=OFF commits are never synced: a cut takes them back,
  // while what was committed under FULL stays.
  test::scratch_dir dir;
  auto disk = fault_disk::make();
  {
    auto db = open_on(disk, dir);
    REQUIRE(!insert(db, 7));
    REQUIRE(!db.exec("PRAGMA synchronous=OFF"));
    auto syncs = disk->syncs();
    REQUIRE(!insert(db, 50));
    CHECK(disk->syncs() == syncs);
    CHECK(count(db) == 57);
    disk->cut_power();
  }
  disk->revive();
  auto db = open_on(disk, dir, false);
  CHECK(db.quick_check() == "ok");
  CHECK(count(db) == 7);
}

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

} // namespace

TEST_CASE("a power cut follows renamed files: each keeps its own synced "
          "bytes, whatever name it has now") {
  // As the rounds file's fold does: the old file renamed away, a new one
  // made under another name and renamed into the old one's place.
  test::scratch_dir dir;
  auto disk = fault_disk::make();
  auto a = dir.path() + "/rounds";
  auto next = a + ".new";
  auto kept = a + ".kept";
  std::string page_a(4096, 'a');
  std::string page_b(4096, 'b');
  {
    auto old = open_page_file(a, disk->vfs());
    REQUIRE(old);
    REQUIRE(!(*old)->write(0, page_a));
    REQUIRE(!(*old)->sync());
    auto fresh = open_page_file(next, disk->vfs());
    REQUIRE(fresh);
    REQUIRE(std::rename(a.c_str(), kept.c_str()) == 0);
    REQUIRE(std::rename(next.c_str(), a.c_str()) == 0);
    REQUIRE(!(*fresh)->write(0, page_b + page_b));
    REQUIRE(!(*fresh)->sync());
    // Written, never synced: the cut takes it back.
    REQUIRE(!(*fresh)->write(8192, page_a));
    disk->cut_power();
  }
  disk->revive();
  CHECK(slurp(kept) == page_a);
  CHECK(slurp(a) == page_b + page_b);
}
