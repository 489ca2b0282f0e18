// fleetd-bench actor-stats's code path with tiny numbers: the three kinds
// run and the measured actors count every message sent.
#include "tools/bench/actor_stats_bench.hpp"

#include <doctest/doctest.h>

using namespace fleetd;

TEST_CASE("a small actor-stats run reports each kind and counts every "
          "message") {
  bench::actor_stats_options opt;
  SUBCASE("work stealing (CAF's default, the cloud's)") {
    opt.policy = "stealing";
  }
  SUBCASE("work sharing (the device's)") {
    opt.policy = "sharing";
  }
  opt.rounds = 2;
  opt.messages = 20000;
  opt.pairs = 2;
  opt.in_flight = 4;
  opt.progress = false;
  auto r = bench::run_actor_stats(opt);
  CHECK(r.plain > 0);
  CHECK(r.on > 0);
  CHECK(r.off > 0);
  CHECK(r.ratio > 0);
  CHECK(r.off_ratio > 0);
  CHECK(r.cpu_ratio > 0);
  // Two measured rounds of (2500 hops + 1) x 8 messages.
  CHECK(r.sent == 2 * 2501 * 8);
  CHECK(r.actors == 2 * 4);
  // Every message, and at most each actor's exit message besides.
  CHECK(r.counted >= r.sent);
  CHECK(r.counted <= r.sent + r.actors);
  auto line = bench::actor_stats_line(opt, r);
  CHECK(line.rfind("BENCH actor_stats rounds=2 messages=20000 ", 0) == 0);
  CHECK(line.find(" ratio=") != std::string::npos);
  CHECK(line.find(" policy=" + opt.policy + " ") != std::string::npos);
  CHECK(line.find(" cpu_overhead_pct=") != std::string::npos);
}
