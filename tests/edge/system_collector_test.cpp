#include "edge/system_collector.hpp"

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/after.hpp>
#include <caf/send.hpp>
#include <caf/exit_reason.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <doctest/doctest.h>

#include "scratch_dir.hpp"

#include "ask.hpp"

#include "edge/fake_storage.hpp"

#include "messages/error.hpp"
#include "messages/register.hpp"

using namespace fleetd;
using namespace std::chrono_literals;

namespace fs = std::filesystem;

namespace {

const std::string fixture_root = FLEETD_SOURCE_DIR "/tests/edge/fixtures/proc";

constexpr int64_t clock_start_ms = 1'700'000'000'000;

// Samples from the fixtures without a disk path (statvfs varies by host).
constexpr size_t fixture_samples = 2 * 8 + 7 + 2 * 6 + 4 + 1;

constexpr size_t filesystem_samples = 3;

// `name{k="v",...}`: one sample's series, as Prometheus would print it.
std::string series(const metric_sample& x) {
  std::string out = x.name + "{";
  for (auto& [key, value] : x.labels) {
    if (out.back() != '{')
      out += ",";
    out += key + "=\"" + value + "\"";
  }
  return out + "}";
}

std::map<std::string, double> by_series(const metric_samples& xs) {
  std::map<std::string, double> out;
  for (auto& x : xs)
    out.emplace(series(x), x.value);
  return out;
}

bool has_problem_naming(const std::vector<std::string>& problems,
                        const std::string& what) {
  for (auto& x : problems)
    if (x.find(what) != std::string::npos)
      return true;
  return false;
}

/// A copy of the fixture /proc in a fresh directory, removed at scope exit;
/// lets a test delete or break one file without touching the fixtures.
class proc_copy {
public:
  proc_copy() {
    std::error_code err;
    fs::copy(fixture_root, dir_, fs::copy_options::recursive, err);
    ok_ = scratch_.ok() && !err;
  }

  proc_copy(const proc_copy&) = delete;
  proc_copy& operator=(const proc_copy&) = delete;

  bool ok() const {
    return ok_;
  }

  std::string root() const {
    return dir_.string();
  }

  bool remove(const std::string& name) {
    std::error_code err;
    return fs::remove(dir_ / name, err);
  }

  bool write(const std::string& name, const std::string& text) {
    std::ofstream out{dir_ / name, std::ios::trunc};
    out << text;
    return static_cast<bool>(out);
  }

private:
  test::scratch_dir scratch_{"fleetd-collector"};
  fs::path dir_ = scratch_.path();
  bool ok_ = false;
};

// -- a storage that only stores ----------------------------------------------

enum class store_mode {
  /// Replies with the number of samples.
  answer,
  /// Replies with disk_full.
  fail,
  /// Never replies, like a storage stuck in a long transaction.
  hold,
};

struct fake_storage_state {
  caf::actor observer;
  store_mode mode = store_mode::answer;
  std::vector<caf::typed_response_promise<int64_t>> held;
  static inline const char* name = "fake_storage";
};

/// Tells `observer` about every stored batch as (store_atom, samples).
storage_actor::behavior_type
fake_storage(storage_actor::stateful_pointer<fake_storage_state> self,
             caf::actor observer, store_mode mode) {
  self->state.observer = std::move(observer);
  self->state.mode = mode;
  return test::fake_storage_behavior(
    [self](store_atom, metric_samples& xs) -> caf::result<int64_t> {
      auto& st = self->state;
      auto rp = self->make_response_promise<int64_t>();
      // Reply before telling the test: the collector then holds the reply
      // in its mailbox before any request the test sends afterwards.
      switch (st.mode) {
        case store_mode::answer:
          rp.deliver(static_cast<int64_t>(xs.size()));
          break;
        case store_mode::fail:
          rp.deliver(make_error(ec::disk_full, "fake storage"));
          break;
        case store_mode::hold:
          st.held.push_back(rp);
          break;
      }
      // Typed actors may only send() to typed ones; the observer is not.
      caf::anon_send(st.observer, store_atom::value, std::move(xs));
      return rp;
    },
    [](event_atom, const std::string&, const std::string&) {
      // Events are not what this test is about.
    },
    [](debug_atom, const std::string&) { return debug_report{}; },
    [](stats_atom) {
      actor_stats out;
      out.name = fake_storage_state::name;
      out.state = "ok";
      return out;
    });
}

// -- actor test helpers --------------------------------------------------------

struct actor_fixture {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  std::unique_ptr<caf::scoped_actor> self;
  std::shared_ptr<manual_clock> clock;

  actor_fixture() : clock(std::make_shared<manual_clock>(clock_start_ms)) {
    register_messages(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    self = std::make_unique<caf::scoped_actor>(*sys);
  }

  ~actor_fixture() {
    // Kill what the test spawned: a pending timer would keep the system up.
    for (auto& x : spawned)
      (*self)->send_exit(x, caf::exit_reason::user_shutdown);
  }

  storage_actor spawn_storage(store_mode mode) {
    auto hdl = sys->spawn(fake_storage, caf::actor_cast<caf::actor>(*self),
                          mode);
    spawned.push_back(caf::actor_cast<caf::actor>(hdl));
    return hdl;
  }

  collector_actor spawn_collector(system_collector_config cc) {
    auto hdl = sys->spawn(system_collector, std::move(cc));
    spawned.push_back(caf::actor_cast<caf::actor>(hdl));
    return hdl;
  }

  system_collector_config collector_config(storage_actor storage) {
    system_collector_config cc;
    cc.proc_root = fixture_root;
    cc.disk_path = FLEETD_SOURCE_DIR;
    cc.interval = 1ms;
    cc.clock = clock;
    cc.storage = std::move(storage);
    return cc;
  }

  /// The next `n` batches the fake storage got; fewer if none came in time.
  std::vector<metric_samples> await_batches(size_t n) {
    std::vector<metric_samples> out;
    bool timed_out = false;
    while (out.size() < n && !timed_out) {
      (*self)->receive(
        [&](store_atom, metric_samples& xs) { out.push_back(std::move(xs)); },
        caf::after(std::chrono::seconds(10)) >> [&] { timed_out = true; });
    }
    return out;
  }

  /// True when no batch arrives within `wait`.
  bool no_batch_within(std::chrono::milliseconds wait) {
    bool quiet = false;
    (*self)->receive([&](store_atom, metric_samples&) { quiet = false; },
                     caf::after(wait) >> [&] { quiet = true; });
    return quiet;
  }

  actor_stats stats_of(const collector_actor& collector) {
    actor_stats out;
    (*self)
      ->request(collector, std::chrono::seconds(5), stats_atom::value)
      .receive([&](actor_stats& x) { out = std::move(x); },
               [&](caf::error& err) { out.state = "error: " + render(err); });
    return out;
  }

  std::vector<caf::actor> spawned;
};

} // namespace

TEST_CASE("the fixture /proc files give exactly the expected series") {
  std::vector<std::string> problems;
  auto samples = read_system_metrics(fixture_root, "", clock_start_ms,
                                     &problems);
  CHECK(problems.empty());
  auto got = by_series(samples);
  // No series twice in one round.
  CHECK(got.size() == samples.size());
  for (auto& x : samples)
    CHECK(x.timestamp_ms == clock_start_ms);
  auto cpu = [](const char* id, const char* mode) {
    return std::string{"node_cpu_seconds_total{cpu=\""} + id + "\",mode=\""
           + mode + "\"}";
  };
  auto eth0 = [](const char* name) {
    return std::string{"node_network_"} + name + "{device=\"eth0\"}";
  };
  auto lo = [](const char* name) {
    return std::string{"node_network_"} + name + "{device=\"lo\"}";
  };
  // Jiffies / USER_HZ (100) and kB * 1024, written out so a unit slip shows.
  std::map<std::string, double> expected{
    {cpu("0", "user"), 22150 / 100.0},
    {cpu("0", "nice"), 5 / 100.0},
    {cpu("0", "system"), 7731 / 100.0},
    {cpu("0", "idle"), 927843 / 100.0},
    {cpu("0", "iowait"), 1288 / 100.0},
    {cpu("0", "irq"), 0},
    {cpu("0", "softirq"), 1021 / 100.0},
    {cpu("0", "steal"), 301 / 100.0},
    {cpu("1", "user"), 21767 / 100.0},
    {cpu("1", "nice"), 7 / 100.0},
    {cpu("1", "system"), 7495 / 100.0},
    {cpu("1", "idle"), 929508 / 100.0},
    {cpu("1", "iowait"), 1113 / 100.0},
    {cpu("1", "irq"), 0},
    {cpu("1", "softirq"), 286 / 100.0},
    {cpu("1", "steal"), 215 / 100.0},
    {"node_memory_MemTotal_bytes{}", 8046288.0 * 1024},
    {"node_memory_MemAvailable_bytes{}", 5210876.0 * 1024},
    {"node_memory_MemFree_bytes{}", 912344.0 * 1024},
    {"node_memory_Buffers_bytes{}", 204800.0 * 1024},
    {"node_memory_Cached_bytes{}", 3932160.0 * 1024},
    {"node_memory_SwapTotal_bytes{}", 2097148.0 * 1024},
    {"node_memory_SwapFree_bytes{}", 2097148.0 * 1024},
    {eth0("receive_bytes_total"), 1234567890},
    {eth0("receive_packets_total"), 9876543},
    {eth0("receive_errs_total"), 3},
    {eth0("transmit_bytes_total"), 987654321},
    {eth0("transmit_packets_total"), 6543210},
    {eth0("transmit_errs_total"), 1},
    {lo("receive_bytes_total"), 918273},
    {lo("receive_packets_total"), 8123},
    {lo("receive_errs_total"), 0},
    {lo("transmit_bytes_total"), 918273},
    {lo("transmit_packets_total"), 8123},
    {lo("transmit_errs_total"), 0},
    {"node_load1{}", 0.52},
    {"node_load5{}", 0.58},
    {"node_load15{}", 0.61},
    {"node_procs_running{}", 2},
    {"node_uptime_seconds{}", 93717.42},
  };
  REQUIRE(expected.size() == fixture_samples);
  CHECK(got.size() == expected.size());
  for (auto& [key, value] : expected) {
    INFO("series: ", key);
    auto i = got.find(key);
    REQUIRE(i != got.end());
    CHECK(i->second == value);
  }
}

TEST_CASE("the disk path gives size, avail and free bytes of its filesystem") {
  std::vector<std::string> problems;
  auto samples = read_system_metrics(fixture_root, FLEETD_SOURCE_DIR,
                                     clock_start_ms, &problems);
  CHECK(problems.empty());
  CHECK(samples.size() == fixture_samples + filesystem_samples);
  auto got = by_series(samples);
  auto key = [](const char* name) {
    return std::string{"node_filesystem_"} + name + "{mountpoint=\""
           + FLEETD_SOURCE_DIR + "\"}";
  };
  REQUIRE(got.count(key("size_bytes")) == 1);
  REQUIRE(got.count(key("avail_bytes")) == 1);
  REQUIRE(got.count(key("free_bytes")) == 1);
  CHECK(got[key("size_bytes")] > 0);
  // Reserved blocks are free but not available to us.
  CHECK(got[key("avail_bytes")] <= got[key("free_bytes")]);
  CHECK(got[key("free_bytes")] <= got[key("size_bytes")]);
}

TEST_CASE("a missing file is named in problems and the other files still read") {
  proc_copy proc;
  REQUIRE(proc.ok());
  REQUIRE(proc.remove("net/dev"));
  std::vector<std::string> problems;
  auto samples = read_system_metrics(proc.root(), "", clock_start_ms,
                                     &problems);
  REQUIRE(problems.size() == 1);
  CHECK(has_problem_naming(problems, proc.root() + "/net/dev"));
  CHECK(samples.size() == fixture_samples - 2 * 6);
  auto got = by_series(samples);
  CHECK(got.count("node_memory_MemTotal_bytes{}") == 1);
  CHECK(got.count("node_cpu_seconds_total{cpu=\"1\",mode=\"steal\"}") == 1);
  CHECK(got.count("node_uptime_seconds{}") == 1);
  CHECK(got.count("node_network_receive_bytes_total{device=\"eth0\"}") == 0);
}

TEST_CASE("a missing proc root names every file and still reads the disk") {
  std::vector<std::string> problems;
  auto samples = read_system_metrics("/nonexistent/proc", FLEETD_SOURCE_DIR,
                                     clock_start_ms, &problems);
  CHECK(problems.size() == 5);
  CHECK(samples.size() == filesystem_samples);
}

TEST_CASE("a malformed line is reported and the rest of its file still read") {
  proc_copy proc;
  REQUIRE(proc.ok());
  REQUIRE(proc.write("stat", "cpu  3 0 3 6 0 0 0 0 0 0\n"
                             "cpu0 1 0 1 two 0 0 0 0 0 0\n"
                             "cpu1 2 0 2 4 0 0 0 0 0 0\n"));
  // A kernel without MemAvailable (before 3.14) still gives the others.
  REQUIRE(proc.write("meminfo", "MemTotal: 1000 kB\nMemFree: 500 kB\n"
                                "Buffers: 10 kB\nCached: 20 kB\n"
                                "SwapTotal: 0 kB\nSwapFree: 0 kB\n"));
  std::vector<std::string> problems;
  auto samples = read_system_metrics(proc.root(), "", clock_start_ms,
                                     &problems);
  CHECK(problems.size() == 2);
  CHECK(has_problem_naming(problems, "stat: skipped 1 malformed line"));
  CHECK(has_problem_naming(problems, "meminfo: no MemAvailable"));
  auto got = by_series(samples);
  CHECK(got.count("node_cpu_seconds_total{cpu=\"0\",mode=\"user\"}") == 0);
  CHECK(got["node_cpu_seconds_total{cpu=\"1\",mode=\"idle\"}"] == 4 / 100.0);
  CHECK(got["node_memory_MemTotal_bytes{}"] == 1000.0 * 1024);
  CHECK(got.count("node_memory_MemAvailable_bytes{}") == 0);
}

TEST_CASE("the running kernel's /proc reads without problems") {
  std::vector<std::string> problems;
  auto samples = read_system_metrics("/proc", "/", clock_start_ms, &problems);
  INFO("problems: ", problems.size() > 0 ? problems.front() : "");
  CHECK(problems.empty());
  auto got = by_series(samples);
  CHECK(got["node_memory_MemTotal_bytes{}"] > 0);
  CHECK(got.count("node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"}") == 1);
}

TEST_CASE("the collector stores max_rounds batches stamped by its clock") {
  actor_fixture f;
  auto cc = f.collector_config(f.spawn_storage(store_mode::answer));
  cc.max_rounds = 3;
  auto collector = f.spawn_collector(std::move(cc));
  auto batches = f.await_batches(3);
  REQUIRE(batches.size() == 3);
  for (auto& batch : batches) {
    CHECK(batch.size() == fixture_samples + filesystem_samples);
    for (auto& x : batch)
      CHECK(x.timestamp_ms == clock_start_ms);
  }
  auto stats = f.stats_of(collector);
  CHECK(stats.name == "system_collector");
  CHECK(stats.state == "done");
  auto points = static_cast<int64_t>(3 * (fixture_samples + filesystem_samples));
  CHECK(stats.counters["rounds"] == 3);
  CHECK(stats.counters["points_collected"] == points);
  CHECK(stats.counters["points_stored"] == points);
  CHECK(stats.counters["store_failures"] == 0);
  CHECK(stats.counters["read_problems"] == 0);
  CHECK(stats.counters.count("rounds_skipped") == 1);
  // Done means done: the timer is not re-armed after the last round.
  CHECK(f.no_batch_within(50ms));
}

TEST_CASE("a failed store is counted and collecting goes on") {
  actor_fixture f;
  auto cc = f.collector_config(f.spawn_storage(store_mode::fail));
  cc.max_rounds = 2;
  auto collector = f.spawn_collector(std::move(cc));
  REQUIRE(f.await_batches(2).size() == 2);
  auto stats = f.stats_of(collector);
  CHECK(stats.state == "done");
  CHECK(stats.counters["rounds"] == 2);
  CHECK(stats.counters["store_failures"] == 2);
  CHECK(stats.counters["points_stored"] == 0);
}

TEST_CASE("ticks while a store is unanswered are skipped, not queued") {
  actor_fixture f;
  auto cc = f.collector_config(f.spawn_storage(store_mode::hold));
  // Only the first round comes from the timer; the test sends the others.
  cc.interval = std::chrono::hours(1);
  auto collector = f.spawn_collector(std::move(cc));
  REQUIRE(f.await_batches(1).size() == 1);
  for (int i = 0; i < 3; ++i)
    (*f.self)->send(collector, tick_atom::value);
  // Same sender, same mailbox: the stats request comes after the ticks.
  auto stats = f.stats_of(collector);
  CHECK(stats.state == "collecting");
  CHECK(stats.counters["rounds"] == 1);
  CHECK(stats.counters["rounds_skipped"] == 3);
  CHECK(stats.counters["points_stored"] == 0);
  CHECK(f.no_batch_within(50ms));
}

TEST_CASE("a collector spawned with a bad config stops instead of collecting") {
  system_collector_config c;
  CHECK(!validate(c));
  c.max_rounds = -1;
  auto reason = fleetd::test::exit_reason_of(system_collector, c);
  CHECK(reason == ec::bad_config);
  CHECK(render(reason).find("collector.rounds") != std::string::npos);
}

TEST_CASE("rounds start on multiples of the interval, one per interval") {
  using std::chrono::milliseconds;
  constexpr int64_t grid = 1'700'000'000'000; // a multiple of 10 s
  auto in = [](int64_t now) {
    return next_round_in(now, milliseconds(10000)).count();
  };
  // On time, a little late, a little early: the next multiple one interval on.
  CHECK(in(grid) == 10000);
  CHECK(in(grid + 3) == 9997);
  CHECK(in(grid - 2) == 10002);
  // A round that started half an interval late keeps the grid.
  CHECK(in(grid + 4999) == 5001);
  CHECK(in(grid + 5000) == 15000);
  // The first round of a node started between multiples waits for the next.
  CHECK(in(grid + 7300) == 12700);
  // Two collectors whose timers fired apart land on the same instant.
  CHECK(grid + 3 + in(grid + 3) == grid - 2 + in(grid - 2));
  CHECK(next_round_in(grid, milliseconds(0)).count() == 0);
}
