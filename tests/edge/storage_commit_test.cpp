// storage.commit-interval in the SQLite store: what is held stays out of the
// file until the interval passes or a batch to send or a flush needs it; the
// default commits every store; new files use small pages.
#include "edge/sqlite_store.hpp"

#include <memory>
#include <string>

#include <doctest/doctest.h>

#include "runtime/sqlite.hpp"
#include "commit_fixture.hpp"
#include "scratch_dir.hpp"

using namespace fleetd;

namespace {

constexpr int64_t start_ms = test::commit_start_ms;
using test::round_of;

struct fixture : test::limit_fixture<&storage_limits::commit_interval_ms> {
  fixture() : limit_fixture("fleetd-storage-commit") {}
};

} // namespace

TEST_CASE("by default every store is in the file when it replies") {
  fixture f;
  auto st = sqlite_store::open(f.config(0));
  REQUIRE(st);
  REQUIRE(st->store(round_of(10, start_ms)));
  CHECK(f.rows_on_disk("metrics") == 10);
  CHECK(st->held_points() == 0);
}

TEST_CASE("a commit interval holds stores until it has passed") {
  fixture f;
  auto st = sqlite_store::open(f.config(30000));
  REQUIRE(st);
  for (int r = 0; r < 3; ++r) {
    REQUIRE(st->store(round_of(10, f.clk->now_ms())));
    f.clk->advance(10000);
  }
  CHECK(f.rows_on_disk("metrics") == 0);
  CHECK(st->held_points() == 30);
  // 30 s after the first store: this store commits all four rounds.
  REQUIRE(st->store(round_of(10, f.clk->now_ms())));
  CHECK(f.rows_on_disk("metrics") == 40);
  CHECK(st->held_points() == 0);
  CHECK(st->stats().counters["commits"] == 1);
  // debug storage states the setting, its loss window and what is held.
  REQUIRE(st->store(round_of(10, f.clk->now_ms())));
  auto report = st->debug("storage");
  REQUIRE(report);
  CHECK(report->text.find("every 30000 ms (storage.commit-interval): a power "
                          "cut or SIGKILL loses what was stored within it; "
                          "now held: 10 samples")
        != std::string::npos);
  CHECK(report->json.find("\"commit_interval_ms\":30000") != std::string::npos);
  CHECK(report->json.find("\"uncommitted_points\":10") != std::string::npos);
}

TEST_CASE("a batch persisted for sending commits what is held with it") {
  fixture f;
  auto st = sqlite_store::open(f.config(3600 * 1000));
  REQUIRE(st);
  REQUIRE(st->store(round_of(5, start_ms)));
  auto seq = test::enqueue_all(*st, 5);
  CHECK(f.rows_on_disk("metrics") == 5);
  CHECK(f.rows_on_disk("sync_queue") == 1);
  // An ack is held too (lost, the batch is sent again); the next batch
  // commits it with the rows.
  REQUIRE(st->store(round_of(5, start_ms + 1)));
  REQUIRE(st->ack("metrics", seq, 0, {}, std::string{}));
  CHECK(f.rows_on_disk("metrics") == 5);
  CHECK(f.rows_on_disk("sync_queue") == 1);
  test::enqueue_all(*st, 5);
  CHECK(f.rows_on_disk("metrics") == 10);
  CHECK(f.rows_on_disk("sync_queue") == 1);
}

TEST_CASE("log lines are held too, and a flush or a close commits them") {
  fixture f;
  {
    auto st = sqlite_store::open(f.config(3600 * 1000));
    REQUIRE(st);
    REQUIRE(st->store_logs({log_line{{}, start_ms * 1000000, "a"}}));
    REQUIRE(st->store(round_of(3, start_ms)));
    CHECK(f.rows_on_disk("logs") == 0);
    REQUIRE_FALSE(st->checkpoint());
    CHECK(f.rows_on_disk("logs") == 1);
    REQUIRE(st->store_logs({log_line{{}, start_ms * 1000000, "b"}}));
    CHECK(f.rows_on_disk("logs") == 1);
  }
  CHECK(f.rows_on_disk("logs") == 2);
  CHECK(f.rows_on_disk("metrics") == 3);
}

TEST_CASE("a new file has 4 KiB pages, as the former layout") {
  fixture f;
  auto page = [&](bool legacy) {
    auto cfg = f.config(0);
    cfg.path = f.dir.path() + (legacy ? "/legacy.db" : "/small.db");
    auto st = sqlite_store::open(cfg);
    REQUIRE(st);
    auto db = sqlite::database::open_readonly(cfg.path);
    REQUIRE(db);
    auto q = db->prepare("PRAGMA page_size");
    REQUIRE(q);
    REQUIRE(q->step());
    return q->column_int(0);
  };
  CHECK(page(false) == 4096);
  CHECK(page(true) == 4096);
}
