// The data stack through faults, on real processes: each backend stopped
// mid-stream and restarted, fleetd-cloud SIGKILLed while a sink lags, and
// the journal's bound reached with a backend down. Afterwards every
// backend holds each of the device's records exactly once and every lag is
// 0. Random choices come from a seed printed by each case; set
// FLEETD_FAULT_SEED to replay one.
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <memory>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "data_stack_support.hpp"
#include "helpers.hpp"
#include "messages/error.hpp"
#include "messages/wire.hpp"
#include "runtime/http_client.hpp"
#include "skip.hpp"
#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr int64_t lines_per_round = 3;
const char* const sinks[] = {"sink_victoria", "sink_clickhouse", "sink_loki"};

// The case's randomness, its seed printed (FLEETD_FAULT_SEED replays it).
std::mt19937 seeded_rng() {
  auto* env = std::getenv("FLEETD_FAULT_SEED");
  auto seed = env ? static_cast<uint32_t>(std::stoul(env))
                  : std::random_device{}();
  MESSAGE("seed ", seed, " (FLEETD_FAULT_SEED replays it)");
  return std::mt19937{seed};
}

int64_t pick(std::mt19937& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

// The backends and one fleetd-cloud over them, on a data dir that outlives
// the node (SIGKILL and restart), with sinks that retry quickly.
struct data_stack {
  temp_dir tmp;
  std::unique_ptr<vm_server> vm;
  ch_server* ch = nullptr;
  loki_standin loki;
  uint16_t loki_port = 0;
  std::vector<std::string> node_flags;
  std::unique_ptr<process> cloud;
  uint16_t ingest = 0;
  uint16_t console = 0;
  std::string enroll;

  // False with `why` when a server cannot run here (the case skips).
  bool start(std::string& why, std::vector<std::string> flags = {}) {
    vm = start_vm(why);
    if (!vm || !(ch = shared_ch_server(why)))
      return false;
    auto port = loki.start();
    REQUIRE(port);
    loki_port = *port;
    node_flags = std::move(flags);
    start_node();
    REQUIRE(fleetctl(tmp.path(), console, {"org", "create", "acme"}).first
            == 0);
    enroll = fleetctl_secret(tmp.path(), console,
                             {"enroll", "create", "--org", "acme"});
    return true;
  }

  std::string cloud_dir() const {
    return tmp.path() + "/cloud";
  }

  // Starts the node; again on the same ingest port after a kill.
  void start_node() {
    ::unlink((cloud_dir() + "/console.port").c_str());
    std::vector<std::string> args{
      "--node.data-dir=" + cloud_dir(),
      "--ingest.port=" + std::to_string(ingest), "--console.port=0",
      "--sinks.victoria.url=" + vm->url(), "--sinks.clickhouse.url=" + ch->url(),
      "--sinks.loki.url=http://127.0.0.1:" + std::to_string(loki_port),
      "--sinks.poll-interval=20ms", "--sinks.backoff-base=20ms",
      "--sinks.backoff-cap=200ms", "--sinks.breaker-threshold=4",
      "--sinks.breaker-open=300ms", "--journal.retry-after=200ms"};
    args.insert(args.end(), node_flags.begin(), node_flags.end());
    cloud = std::make_unique<process>(program("fleetd-cloud"), args,
                                      tmp.path() + "/cloud.log");
    if (ingest == 0)
      ingest = port_from(cloud_dir() + "/ingest.port");
    console = port_from(cloud_dir() + "/console.port");
    REQUIRE_MESSAGE(ingest != 0, read_file(tmp.path() + "/cloud.log"));
    REQUIRE_MESSAGE(console != 0, read_file(tmp.path() + "/cloud.log"));
  }

  // A counter of the node's actor; -1 when the node does not answer.
  int64_t stat(const char* actor, const char* name) const {
    auto st = console_status(console);
    return st ? counter(*st, actor, name) : -1;
  }
};

// A device streaming `rounds` rounds of load into the stack.
struct streaming_device {
  std::string dir;
  std::string db;
  std::unique_ptr<process> proc;
  uint16_t console = 0;
  int64_t rounds = 0;

  streaming_device(data_stack& s, const std::string& id, int64_t n,
                   int series = 3)
    : dir(s.tmp.path() + "/" + id), db(dir + "/fleetd.db"), rounds(n) {
    proc = std::make_unique<process>(
      program("fleetd"),
      std::vector<std::string>{
        "--node.data-dir=" + dir, "--device.id=" + id,
        "--cloud.port=" + std::to_string(s.ingest),
        "--cloud.enroll-token=" + s.enroll, "--console.port=0",
        "--collector.rounds=1",
        "--load.series=" + std::to_string(series), "--load.interval=150ms",
        "--load.rounds=" + std::to_string(n),
        "--load.log-lines=" + std::to_string(lines_per_round),
        "--load.event-every=2", "--sync.interval=50ms",
        "--sync.backoff-base=20ms", "--sync.backoff-cap=300ms"},
      s.tmp.path() + "/" + id + ".log");
    console = port_from(dir + "/console.port");
    REQUIRE(console != 0);
  }

  // Still generating: an outage now is mid-stream.
  bool streaming() const {
    auto st = console_status(console);
    return st && state_of(*st, "load_generator") != "done";
  }
};

int64_t ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::steady_clock::now() - t0)
    .count();
}

// Waits for the device to have everything acked and the sinks to drain,
// then checks each backend record by record; returns the samples checked.
size_t check_everything_once(data_stack& s, streaming_device& dev,
                             const std::string& id) {
  REQUIRE_MESSAGE(device_synced_all(dev.console, dev.db, dev.rounds, 40s),
                  read_file(s.tmp.path() + "/" + id + ".log"));
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE_MESSAGE(eventually([&] { return sinks_drained(s.console); }, 30s),
                  read_file(s.tmp.path() + "/cloud.log"));
  MESSAGE("lags drained ", ms_since(t0), " ms after the device's last ack");
  stack_device who{"acme", id};
  auto want = device_samples(dev.db);
  REQUIRE(total(want) > 0);
  check_vm(*s.vm, who, want);
  // ReplacingMergeTree folds a replayed insert only at a merge: FINAL.
  auto hours = check_ch(*s.ch, who, want, true);
  auto lines = check_loki(s.loki, who, dev.db);
  CHECK(lines == static_cast<size_t>(dev.rounds * lines_per_round));
  auto events = device_events(dev.db, INT64_MAX).size();
  MESSAGE("checked ", total(want), " samples in ", want.size(), " series, ",
          hours, " hourly rollups, ", lines, " log lines; the device kept ",
          events, " events");
  return total(want);
}

// Keeps the highest lag of `sink` seen while waiting for `done`.
bool eventually_watching_lag(data_stack& s, const char* sink, int64_t& peak,
                             const std::function<bool()>& done,
                             std::chrono::milliseconds deadline) {
  return eventually(
    [&] {
      auto ok = done();
      peak = std::max(peak, s.stat(sink, "lag_entries"));
      return ok;
    },
    deadline);
}

// Stops VictoriaMetrics by SIGTERM or SIGKILL (a crash loses the rows it
// answered 204 for and held in memory: the sink writes them again).
std::string stop_vm(data_stack& s, std::mt19937& rng) {
  auto sig = pick(rng, 0, 1) ? SIGKILL : SIGTERM;
  ::kill(s.vm->pid(), sig);
  s.vm->stop();
  return std::string{"VictoriaMetrics stopped by "}
         + (sig == SIGKILL ? "SIGKILL" : "SIGTERM");
}

// Takes backend `which` down; says how.
std::string take_down(data_stack& s, int which, int64_t failures,
                      std::mt19937& rng) {
  if (which == 0)
    return stop_vm(s, rng);
  if (which == 1) {
    s.ch->stop();
    return "ClickHouse killed (SIGKILL)";
  }
  unsigned status = pick(rng, 0, 1) ? 429 : 503;
  auto before = s.loki.answered(status);
  s.loki.fail_next(status, static_cast<int>(failures));
  CHECK(eventually(
    [&] { return s.loki.answered(status) >= before + failures; }, 10s));
  s.loki.stop();
  return "Loki stand-in answered " + std::to_string(status) + " "
         + std::to_string(failures) + " times, then closed";
}

// Brings backend `which` back on its port and data.
void bring_up(data_stack& s, int which) {
  if (which == 0) {
    vm_server::failure failed;
    REQUIRE_MESSAGE(s.vm->restart(failed), failed.why);
  } else if (which == 1) {
    ch_server::failure failed;
    REQUIRE_MESSAGE(s.ch->restart(failed), failed.why);
  } else {
    // The port frees once the sink has dropped its kept-alive connection.
    REQUIRE(eventually([&] { return !!s.loki.start(s.loki_port); }, 10s));
  }
}

// One backend's outage mid-stream: down until its sink failed `failures`
// more writes (at least one after the backend went away) and lags `lag`
// entries, then back.
void outage(data_stack& s, streaming_device& dev, int which,
            std::mt19937& rng, int64_t& peak) {
  std::string sink = sinks[which];
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(eventually([&] { return s.stat(sinks[which], "written") > 0; }, 10s));
  auto failures = pick(rng, 1, 4);
  auto lag = pick(rng, 5, 20);
  auto errors = s.stat(sinks[which], "errors");
  auto how = take_down(s, which, failures, rng);
  auto down = s.stat(sinks[which], "errors");
  CHECK_MESSAGE(eventually_watching_lag(
                  s, sinks[which], peak,
                  [&] {
                    auto e = s.stat(sinks[which], "errors");
                    return e >= errors + failures && e > down
                           && s.stat(sinks[which], "lag_entries") >= lag;
                  },
                  15s),
                how);
  CHECK_MESSAGE(dev.streaming(), how, ": the device's stream ended first");
  auto now_lag = s.stat(sinks[which], "lag_entries");
  peak = std::max(peak, now_lag);
  MESSAGE(how, " until ", sink, " failed ",
          s.stat(sinks[which], "errors") - errors, " writes, lag ", now_lag,
          " entries (wanted ", lag, "), after ", ms_since(t0), " ms");
  bring_up(s, which);
}

} // namespace

TEST_CASE("each backend stopped mid-stream and restarted: every record "
          "reaches each exactly once and every lag drains") {
  auto rng = seeded_rng();
  data_stack s;
  std::string why;
  if (!s.start(why))
    return skip(why);
  streaming_device dev{s, "outage-dev", 60};
  std::vector<int> order{0, 1, 2};
  std::shuffle(order.begin(), order.end(), rng);
  MESSAGE("outages in the order ", std::string{sinks[order[0]]}, ", ",
          std::string{sinks[order[1]]}, ", ", std::string{sinks[order[2]]});
  auto t0 = std::chrono::steady_clock::now();
  int64_t peak = 0;
  for (auto which : order)
    outage(s, dev, which, rng, peak);
  MESSAGE("three outages in ", ms_since(t0), " ms, highest lag ", peak,
          " entries");
  check_everything_once(s, dev, "outage-dev");
  for (auto sink : sinks)
    CHECK(s.stat(sink, "invalid") == 0);
  MESSAGE("sink_victoria rewound ", s.stat("sink_victoria", "rewinds"),
          " time(s) to its saved cursor");
}

// Series of the device in the kill case: 5000 samples a round, so the lag
// at the kill (tens of entries, ~100k samples decoded) is many chunks of
// sinks.batch-entries=5 or sinks.batch-points=5000, whichever comes first
// (the device's batches hold 1000 to 5000 points by tier).
constexpr int kill_series = 5000;

TEST_CASE("fleetd-cloud SIGKILLed while a sink lags: nothing lost or "
          "doubled anywhere, the node's memory bounded") {
  auto rng = seeded_rng();
  data_stack s;
  std::string why;
  if (!s.start(why, {"--sinks.batch-entries=5", "--sinks.batch-points=5000"}))
    return skip(why);
  auto rss0 = proc_kb(s.cloud->pid(), "VmRSS");
  streaming_device dev{s, "kill-dev", 40, kill_series};
  REQUIRE(eventually([&] { return s.stat("sink_victoria", "written") > 0; },
                     10s));
  MESSAGE(stop_vm(s, rng));
  // Past one chunk: the kill lands with several chunks unwritten.
  auto lag = pick(rng, 30, 60);
  int64_t peak = 0;
  REQUIRE(eventually_watching_lag(
    s, "sink_victoria", peak,
    [&] { return s.stat("sink_victoria", "lag_entries") >= lag; }, 20s));
  auto hwm1 = proc_kb(s.cloud->pid(), "VmHWM");
  auto journal = query_int(s.cloud_dir() + "/cloud.db",
                           "SELECT bytes FROM journal_size");
  s.cloud->signal(SIGKILL);
  REQUIRE(s.cloud->wait(5s));
  CHECK(dev.streaming());
  s.start_node();
  vm_server::failure failed;
  REQUIRE_MESSAGE(s.vm->restart(failed), failed.why);
  check_everything_once(s, dev, "kill-dev");
  auto hwm2 = proc_kb(s.cloud->pid(), "VmHWM");
  MESSAGE("killed at lag ", peak, " entries (wanted ", lag, "), journal ",
          journal, " bytes; VmRSS at start ", rss0,
          " kB, VmHWM before the kill ", hwm1,
          " kB, after the restart and drain ", hwm2, " kB");
  // Bound: the start-up footprint plus, per sink, one chunk of 5000 decoded
  // points and its request body, the 5055 series' session, SQLite's page
  // caches: measured +11..15 MB; the lag itself is never held in memory.
  CHECK(hwm1 > 0);
  CHECK(hwm1 < rss0 + 32 * 1024);
  CHECK(hwm2 < rss0 + 32 * 1024);
}

namespace {

// "... journal holds N bytes (journal.max-bytes M)" of each 503 the device
// logged (it logs each distinct answer); N of each.
std::vector<int64_t> refused_at_bytes(const std::string& log, int64_t& max) {
  std::vector<int64_t> out;
  std::regex re{"503 journal_full: ingest journal holds ([0-9]+) bytes "
                "\\(journal.max-bytes ([0-9]+)\\)"};
  for (std::sregex_iterator it{log.begin(), log.end(), re}, end; it != end;
       ++it) {
    out.push_back(std::stoll((*it)[1]));
    max = std::stoll((*it)[2]);
  }
  return out;
}

// A sync of another device while the journal is full: 503 journal_full
// with journal.retry-after (200 ms) as retry_after_ms; nothing stored.
void check_refusal_answer(const data_stack& s) {
  http_client client{"127.0.0.1", s.ingest, 10s, 1 << 20};
  auto res = client.post("/v1/sync", one_point_sync("probe", 1),
                         {{"Content-Type", "application/x-protobuf"},
                          {"Content-Encoding", "zstd"}});
  REQUIRE_MESSAGE(res, render(res.error()));
  CHECK(res->status == 503);
  auto ack = decode_response(res->body);
  REQUIRE_MESSAGE(ack, render(ack.error()));
  CHECK(ack->error_code == "journal_full");
  CHECK(ack->retry_after_ms == 200);
}

} // namespace

TEST_CASE("devices see 503 with retry_after_ms only past journal.max-bytes, "
          "keep their data, and everything arrives once after the drain") {
  constexpr int64_t bound = 16 * 1024;
  data_stack s;
  std::string why;
  if (!s.start(why, {"--journal.max-bytes=" + std::to_string(bound)}))
    return skip(why);
  s.vm->stop();
  streaming_device dev{s, "bound-dev", 40, 200};
  auto cloud_db = s.cloud_dir() + "/cloud.db";
  auto journal_bytes = [&] {
    return query_int(cloud_db, "SELECT bytes FROM journal_size");
  };
  // Sampled in this order, a 503 seen with the journal under its bound
  // was answered under it: nothing leaves the journal while a sink is down.
  int64_t refused = 0;
  int64_t under_bound_refusals = 0;
  int64_t accepted_before = 0;
  REQUIRE_MESSAGE(eventually(
    [&] {
      auto st = console_status(s.console);
      if (!st)
        return false;
      refused = counter(*st, "ingest", "rejected_journal_full");
      if (refused <= 0)
        accepted_before = counter(*st, "ingest", "accepted");
      if (refused > 0 && journal_bytes() < bound)
        ++under_bound_refusals;
      return refused >= 3;
    },
    30s), "journal at ", journal_bytes(), " bytes, ", accepted_before,
    " batches accepted, ", refused, " refused");
  CHECK(under_bound_refusals == 0);
  CHECK(accepted_before > 0);
  CHECK(journal_bytes() >= bound);
  check_refusal_answer(s);
  // The device holds what was refused, and keeps collecting.
  CHECK(eventually(
    [&] {
      auto st = console_status(dev.console);
      return st && counter(*st, "storage", "queued_batches") > 0;
    },
    10s));
  int64_t max_named = 0;
  auto at = refused_at_bytes(read_file(s.tmp.path() + "/bound-dev.log"),
                             max_named);
  CHECK(!at.empty());
  CHECK(max_named == bound);
  for (auto n : at)
    CHECK(n >= bound);
  MESSAGE("journal at ", journal_bytes(), " bytes (bound ", bound, "); ",
          accepted_before, " batches accepted before the first 503, ",
          refused, " refused so far");
  vm_server::failure failed;
  REQUIRE_MESSAGE(s.vm->restart(failed), failed.why);
  check_everything_once(s, dev, "bound-dev");
  // Rows are deleted once VictoriaMetrics holds them durably
  // (sinks.victoria.durable-after, 15 s).
  CHECK(eventually([&] { return journal_bytes() < bound; }, 30s));
  MESSAGE(s.stat("ingest", "rejected_journal_full"),
          " batches refused journal_full in all, ",
          s.stat("sink_victoria", "pruned"), " journal rows pruned");
}
