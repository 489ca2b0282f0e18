// fleetd-bench footprint's code path, short: real fleetd, fleetd-cloud,
// vmagent, node_exporter and VictoriaMetrics; every figure measured, every
// sample of both agents arrived after the outage, none twice.
#include "tools/bench/footprint_bench.hpp"

#include <doctest/doctest.h>

#include "skip.hpp"

using namespace fleetd;

TEST_CASE("footprint: a short run measures both agents and loses nothing") {
  bench::footprint_options opt;
  opt.window_s = 10;
  opt.outage_s = 20;
  opt.resume_limit_s = 60;
  opt.settings = {"sync10s"};
  opt.bin_dir = FLEETD_BUILD_DIR;
  opt.progress = false;
  auto r = bench::run_footprint(opt, "sync10s");
  if (r.skipped)
    return test::skip(r.error);
  INFO("error: " << r.error);
  REQUIRE(r.error.empty());
  auto line = bench::footprint_line(opt, r, "1");
  INFO(line);
  CHECK(line.rfind("BENCH footprint setting=sync10s run=1 ", 0) == 0);
  for (auto* key : {" fleetd_cpu_s=", " cpu_ratio=", " fleetd_hwm_kib=",
                    " fleetd_disk_bytes_per_sample=",
                    " fleetd_wire_bytes_per_sample=",
                    " vmagent_wire_bytes_per_sample=", " fleetd_mb_per_day=", " fleetd_window_mb_per_day=",
                    " fleetd_install_bytes=", " fleetd_resume_s=",
                    " vmagent_resume_s=", " samples_arrived_pct=100.00 "})
    CHECK(line.find(key) != std::string::npos);
  // An idle fleetd may use less than one clock tick (10 ms) in a 10 s
  // window: 0 is a reading. The reader itself shows on the other two.
  CHECK(r.fleetd_cpu_s >= 0);
  CHECK(r.vmagent_cpu_s + r.node_exporter_cpu_s > 0);
  CHECK(r.fleetd_hwm_kib > 1000);
  CHECK(r.vmagent_hwm_kib > 1000);
  CHECK(r.fleetd_disk_bytes > 0);
  CHECK(r.fleetd_disk_samples > 0);
  // Two rounds of 100 series at least, all of them in the cloud, once.
  CHECK(r.fleetd_samples >= 200);
  CHECK(r.fleetd_arrived == r.fleetd_samples);
  CHECK(r.fleetd_doubled == 0);
  CHECK(r.fleetd_log_lines >= 20);
  CHECK(r.fleetd_log_lines_arrived == r.fleetd_log_lines);
  CHECK(r.vmagent_samples >= 100);
  CHECK(r.vmagent_samples % 100 == 0);
  CHECK(r.vmagent_arrived == r.vmagent_samples);
  CHECK(r.fleetd_metrics_wire_bytes > 0);
  CHECK(r.fleetd_log_wire_bytes > 0);
  CHECK(r.vmagent_wire_bytes > 0);
  // The window is part of the run: the drain after the outage is not in it
  // (a 10 s window may see no exchange at a 10 s sync).
  CHECK(r.fleetd_window_wire_bytes >= 0);
  CHECK(r.fleetd_window_wire_bytes
        < r.fleetd_metrics_wire_bytes + r.fleetd_log_wire_bytes
            + r.fleetd_other_wire_bytes);
  CHECK(r.window_s >= opt.window_s);
  CHECK(r.fleetd_install_bytes > 0);
  CHECK(r.fleetd_resume_s >= 0);
  CHECK(r.vmagent_resume_s >= 0);
  CHECK(bench::samples_arrived_pct(r) == doctest::Approx(100.0));
}

TEST_CASE("the medians line takes a timeout as the slowest resume") {
  bench::footprint_result a, b, c;
  a.fleetd_resume_s = 3;
  b.fleetd_resume_s = -1;
  c.fleetd_resume_s = 5;
  a.fleetd_cpu_s = 1, b.fleetd_cpu_s = 2, c.fleetd_cpu_s = 3;
  auto m = bench::median_result({a, b, c});
  CHECK(m.fleetd_resume_s == 5);
  CHECK(m.fleetd_cpu_s == 2);
  auto t = bench::median_result({a, b, b});
  bench::footprint_options opt;
  CHECK(bench::footprint_line(opt, t, "median").find(" fleetd_resume_s=timeout ")
        != std::string::npos);
}
