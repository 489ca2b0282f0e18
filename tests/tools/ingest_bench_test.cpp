// fleetd-bench ingest's code path with tiny numbers: a real fleetd-cloud
// child over HTTPS, a few enrolled devices, the replay through the codec and
// the store alone (embedded, and PostgreSQL behind PgBouncer), the refusals.
#include "tools/bench/ingest_bench.hpp"

#include <string>

#include <doctest/doctest.h>

#include "scratch_dir.hpp"
#include "skip.hpp"
#include "tools/pg_server/pg_server.hpp"

using namespace fleetd;

namespace {

bench::ingest_options tiny(const test::scratch_dir& dir) {
  bench::ingest_options opt;
  opt.devices = 3;
  opt.seconds = 1;
  opt.senders = 2;
  opt.scrapes_per_batch = 2;
  opt.dir = dir.path();
  opt.cloud_program = std::string(FLEETD_BUILD_DIR) + "/fleetd-cloud";
  opt.progress = false;
  return opt;
}

} // namespace

TEST_CASE("a small run acks every batch, stores each point once and reports "
          "every figure") {
  test::scratch_dir dir("fleetd-ingest-bench");
  REQUIRE(dir.ok());
  auto opt = tiny(dir);
  auto res = bench::run_ingest(opt);
  INFO("error: " << res.error);
  REQUIRE(res.error.empty());
  // Warm-up and pilot rounds come before the measured phase.
  CHECK(res.points > 0);
  CHECK(res.points % 200 == 0);
  CHECK(res.acked_points >= res.points + 2 * 3 * 200);
  CHECK(res.stored_points == res.acked_points);
  CHECK(res.requests * 200 == res.points);
  CHECK(res.p50_ms > 0);
  CHECK(res.p99_ms >= res.p50_ms);
  CHECK(res.decode_points_per_s_per_core > 0);
  CHECK(res.raw_points_per_s > 0);
  CHECK(res.ratio == doctest::Approx(res.points_per_s / res.raw_points_per_s));
  CHECK(res.devices_supported
        == doctest::Approx(res.points_per_s * 30 / 100));
  CHECK(res.bytes_per_point > 0);
  auto line = bench::ingest_line(opt, res);
  CHECK(line.rfind("BENCH ingest store=embedded devices=3 points_per_s=", 0)
        == 0);
  CHECK(line.find('\n') == std::string::npos);
}

TEST_CASE("postgresql: a small run on the bench's own PostgreSQL and "
          "PgBouncer stores each acked point once, raw on two writers") {
  // The bench starts its own server; this one only asks whether it can.
  pg_server::failure why;
  if (!pg_server::start(why)) {
    REQUIRE_MESSAGE(why.skip, why.why);
    return test::skip(why.why);
  }
  test::scratch_dir dir("fleetd-ingest-bench");
  REQUIRE(dir.ok());
  auto opt = tiny(dir);
  opt.store = "postgresql";
  opt.writers = 2;
  auto res = bench::run_ingest(opt);
  INFO("error: " << res.error);
  REQUIRE(res.error.empty());
  CHECK(res.points > 0);
  CHECK(res.stored_points == res.acked_points);
  CHECK(res.raw_points_per_s > 0);
  CHECK(res.ratio == doctest::Approx(res.points_per_s / res.raw_points_per_s));
  auto line = bench::ingest_line(opt, res);
  CHECK(line.rfind("BENCH ingest store=postgresql devices=3 points_per_s=", 0)
        == 0);
  CHECK(line.find(" writers=2 ") != std::string::npos);
}

TEST_CASE("an existing PostgreSQL that cannot be reached, or half its URLs, "
          "fails the run with no figure") {
  test::scratch_dir dir("fleetd-ingest-bench");
  REQUIRE(dir.ok());
  auto opt = tiny(dir);
  opt.store = "postgresql";
  opt.postgresql_url = "postgresql://127.0.0.1:1/none";
  auto res = bench::run_ingest(opt);
  CHECK(res.error.find("go together") != std::string::npos);
  opt.postgresql_owner_url = "postgresql://127.0.0.1:1/none?connect_timeout=2";
  res = bench::run_ingest(opt);
  CHECK(res.error.find("schema owner") != std::string::npos);
  CHECK(res.points == 0);
  CHECK(res.points_per_s == 0);
}

TEST_CASE("a node that cannot start fails the run") {
  test::scratch_dir dir("fleetd-ingest-bench");
  REQUIRE(dir.ok());
  auto opt = tiny(dir);
  opt.cloud_program = dir.file("no-such-fleetd-cloud");
  auto res = bench::run_ingest(opt);
  CHECK(res.error.find("exited at start") != std::string::npos);
}
