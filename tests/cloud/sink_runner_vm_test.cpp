// The sink runner against a real VictoriaMetrics (vm_fixture): a server
// SIGKILLed and restarted between two writes, with no failed write between,
// loses the rows it held in memory; the runner sees the restart before it
// saves its cursor past them and writes them again.
#include "cloud/sink_runner.hpp"

#include <chrono>
#include <memory>
#include <set>
#include <string>

#include <doctest/doctest.h>

#include "cloud/vm_sink.hpp"
#include "helpers.hpp"
#include "runner_fixture.hpp"
#include "skip.hpp"
#include "vm_fixture.hpp"

using namespace fleetd;
using namespace std::chrono_literals;
using test::runner_fixture;

namespace {

// Inside the server's 1-day retention: its clock is the host's.
int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

constexpr size_t series = 4;

// Batch `seq`: one sample of each of `series` series of `metric`.
ingest_batch batch_at(const std::string& metric, int64_t seq,
                      int64_t base_ms) {
  auto b = test::journal_batch("acme/dev-1", seq, series);
  for (size_t i = 0; i < b.samples.size(); ++i) {
    b.samples[i].name = metric;
    b.samples[i].labels = {{"i", std::to_string(i)}};
    b.samples[i].timestamp_ms = base_ms + seq * 10;
  }
  return b;
}

// Writes 3 batches of `metric` through a runner, SIGKILLs and restarts the
// server (no write fails meanwhile), writes 3 more, then lets time pass on
// the node's clock: every sample must be there once.
void kill_between_writes(vm_server& vm, const std::string& metric) {
  runner_fixture f;
  vm_sink_config vc;
  vc.url = vm.url();
  vc.timeout = 5s;
  vc.durable_after = 1000ms;
  auto made = make_vm_sink(vc);
  REQUIRE_MESSAGE(made, render(made.error()));
  std::shared_ptr<vm_sink> sink = std::move(*made);
  auto base = wall_ms();
  for (int64_t seq = 1; seq <= 3; ++seq)
    f.write(batch_at(metric, seq, base));
  auto r = f.start(f.runner_cfg(sink));
  REQUIRE(test::eventually([&] { return f.counters(r)["written"] == 3; },
                           10s));
  CHECK(f.counters(r)["saved_cursor"] == 0);
  // Killed long before it writes the rows to disk (~10 s): they are gone.
  vm.kill();
  vm_server::failure failed;
  REQUIRE_MESSAGE(vm.restart(failed), failed.why);
  CHECK(test::vm_export(vm, metric, 0).empty());
  for (int64_t seq = 4; seq <= 6; ++seq)
    f.write(batch_at(metric, seq, base));
  REQUIRE(test::eventually([&] { return f.counters(r)["written"] == 6; },
                           10s));
  // No failed write told the runner: the keep-alive client reconnected.
  CHECK(f.counters(r)["errors"] == 0);
  // Time passes on the node's clock only: each save checks the server.
  CHECK(test::eventually(
    [&] {
      f.clock->advance(1000);
      auto n = f.counters(r);
      return n["saved_cursor"] == n["cursor"] && n["lag_entries"] == 0
             && f.journal_rows() == 0;
    },
    20s));
  auto n = f.counters(r);
  CHECK(n["restarts"] == 1);
  CHECK(n["rewinds"] == 1);
  CHECK(sink->stats().restarts == 1);
  auto got = test::vm_export(vm, metric, series * 6);
  CHECK(got.size() == series);
  for (auto& s : got) {
    std::set<int64_t> ts(s.timestamps.begin(), s.timestamps.end());
    CHECK_MESSAGE(s.timestamps.size() == 6, s.labels_json);
    CHECK(ts.size() == 6);
  }
  CHECK(test::vm_dropped_rows(vm) == 0);
}

} // namespace

TEST_CASE("victoria: SIGKILLed and restarted between two writes, the "
          "runner sees the restart before saving, writes again, every "
          "sample once") {
  std::string why;
  auto vm = test::start_vm(why);
  if (!vm)
    return test::skip(why);
  // Just started: a restart may show the same start second, so the new
  // connection tells.
  kill_between_writes(*vm, "restart_young");
  // Up 2 s or more: the start second tells.
  REQUIRE(test::eventually(
    [&] {
      auto up = vm->metric("vm_app_uptime_seconds");
      return up && *up >= 2;
    },
    10s));
  kill_between_writes(*vm, "restart_aged");
}
