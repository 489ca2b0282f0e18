// fleetd-bench outage's code path with tiny numbers: a short outage of a few
// series, the reconnect, the drain, the record-by-record comparison and the
// naive baseline, all of it; over HTTPS with the device's key, over plain
// HTTP (--plain), and under an org quota that refuses part of the drain.
#include "tools/bench/outage_bench.hpp"

#include <chrono>

#include <doctest/doctest.h>

#include "runtime/logger.hpp"
#include "scratch_dir.hpp"

using namespace fleetd;

namespace {

bench::outage_options tiny_options(const test::scratch_dir& dir) {
  bench::outage_options opt;
  opt.hours = 0.1; // 36 rounds of 10 s
  opt.series = 5;
  opt.log_lines_per_round = 10;
  // Small batches: several per stream, so the queue and the series session
  // carry across batches after the reconnect.
  opt.batch_size = 50;
  opt.dir = dir.file("");
  opt.drain_timeout_s = 30;
  opt.progress = false;
  return opt;
}

bench::outage_result run_round(const bench::outage_options& opt) {
  // The outage's expected warnings (connection refused) stay out of the log.
  logger::init(log_level::error, "");
  auto t0 = std::chrono::steady_clock::now();
  auto res = bench::run_outage_round(opt);
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now()
                                            - t0)
                .count();
  // Wall time is reported, not bounded: a loaded machine may stretch it.
  MESSAGE("outage round ran in " << secs << " s");
  return res;
}

// Every record the device held reached the cloud exactly once.
void check_delivered(const bench::outage_result& res) {
  CHECK(res.rounds_of_data == 36);
  CHECK(res.points == 36 * 5);
  CHECK(res.log_lines == 36 * 10);
  // The sync actors really failed while the cloud was away, and the breaker
  // opened: the device recorded it, and that event reached the cloud too.
  CHECK(res.outage_send_failures > 0);
  CHECK(res.went_offline == 1);
  CHECK(res.backlog_events >= 1);
  CHECK(res.events >= res.backlog_events);
  CHECK(res.device_drops == 0);
  CHECK(res.records_lost == 0);
  CHECK(res.records_duplicated == 0);
  CHECK(res.records_unexpected == 0);
  // 180 points in batches of 50 (the first cut during the outage holds only
  // round 0's 5 points), 360 lines likewise.
  CHECK(res.metrics_batches >= 4);
  CHECK(res.batches > res.metrics_batches);
  CHECK(res.metrics_bytes_sent > 0);
  CHECK(res.metrics_bytes_sent < res.bytes_sent);
  CHECK(res.drain_s > 0);
}

void check_baseline(const bench::outage_result& res) {
  // The baseline sent the same records and lost none either.
  CHECK(res.naive_bytes_sent > 0);
  CHECK(res.naive_requests > 0);
  CHECK(res.naive_records_lost == 0);
  CHECK(res.naive_records_duplicated == 0);
}

} // namespace

TEST_CASE("a device drains a short outage over HTTPS with its key, nothing "
          "lost or duplicated") {
  test::scratch_dir dir("fleetd-outage-bench");
  REQUIRE(dir.ok());
  auto res = run_round(tiny_options(dir));
  INFO("error: " << res.error);
  REQUIRE(res.error.empty());
  check_delivered(res);
  check_baseline(res);
  // The cloud knew the device by its key and stored it under its org.
  CHECK(res.stored_as == "bench/outage-dev");
  CHECK(res.authenticated >= res.batches);
  CHECK(res.over_quota == 0);
}

TEST_CASE("with --plain the device drains over plain HTTP without a key") {
  test::scratch_dir dir("fleetd-outage-bench");
  REQUIRE(dir.ok());
  auto opt = tiny_options(dir);
  opt.plain = true;
  auto res = run_round(opt);
  INFO("error: " << res.error);
  REQUIRE(res.error.empty());
  check_delivered(res);
  check_baseline(res);
  CHECK(res.stored_as == "outage-dev");
  CHECK(res.authenticated == 0);
}

TEST_CASE("a drain refused in part for the org's quota waits the 429s out "
          "and delivers everything") {
  test::scratch_dir dir("fleetd-outage-bench");
  REQUIRE(dir.ok());
  auto opt = tiny_options(dir);
  // A burst of 400 records (10 s of quota) of the 540 held: the rest is
  // refused until the bucket refills, at 40 a second of clock time. The
  // manual clock must move during the drain, or the waits never end.
  opt.quota_pps = 40;
  opt.baseline = false;
  auto res = run_round(opt);
  INFO("error: " << res.error);
  REQUIRE(res.error.empty());
  check_delivered(res);
  CHECK(res.stored_as == "bench/outage-dev");
  CHECK(res.over_quota > 0);
}
