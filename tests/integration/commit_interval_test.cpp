// storage.commit-interval: a SIGKILL loses what the open transaction held,
// no more than what was stored within one interval; at the default (0)
// nothing stored is lost.
#include <doctest/doctest.h>

#include <csignal>

#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr int64_t series = 50;
constexpr int64_t rounds = 40;
constexpr int64_t round_ms = 50;

struct killed_run {
  int64_t stored = 0;      // samples the store replied to, held ones too
  int64_t held = 0;        // of those, in the open transaction at the kill
  int64_t commits = 0;     // commits of held transactions before the kill
  int64_t rows = 0;        // metric rows in the file after the kill
};

// A device storing `rounds` load rounds with `commit_interval_ms`, killed
// once the load has stopped; nothing else writes (no cloud, no later sync
// cut, no further collector round).
killed_run run_and_kill(const temp_dir& tmp, int64_t commit_interval_ms,
                        bool wait_for_commit = false) {
  auto dir = tmp.path() + "/device";
  process device{program("fleetd"),
                 {"--node.data-dir=" + dir, "--device.id=commit-dev",
                  "--cloud.port=1", "--console.port=0", "--tier.pin=1",
                  "--sync.interval=1h", "--sync.batch-size=100000",
                  "--collector.interval=1h", "--collector.rounds=1",
                  "--load.series=" + std::to_string(series),
                  "--load.rounds=" + std::to_string(rounds),
                  "--load.interval=" + std::to_string(round_ms) + "ms",
                  "--storage.commit-interval="
                    + std::to_string(commit_interval_ms)},
                 tmp.path() + "/device.log"};
  auto console = port_from(dir + "/console.port");
  REQUIRE(console != 0);
  killed_run out;
  // Done: the last load round stored and the count steady across two reads.
  REQUIRE(eventually(
    [&] {
      auto st = console_status(console);
      if (!st || counter(*st, "load_generator", "points_stored")
                   < series * rounds)
        return false;
      auto stored = counter(*st, "storage", "points_stored");
      bool steady = stored == out.stored;
      out.stored = stored;
      out.held = counter(*st, "storage", "uncommitted_points");
      out.commits = counter(*st, "storage", "commits");
      return steady;
    },
    30s));
  // No store comes after the last round: only the storage actor's own
  // commit timer can commit what is held.
  if (wait_for_commit)
    REQUIRE(eventually(
      [&] {
        auto st = console_status(console);
        if (!st)
          return false;
        out.held = counter(*st, "storage", "uncommitted_points");
        out.commits = counter(*st, "storage", "commits");
        return out.held == 0;
      },
      30s));
  device.signal(SIGKILL);
  REQUIRE(device.wait(5s));
  auto db = dir + "/fleetd.db";
  CHECK(query(db, "PRAGMA integrity_check") == std::vector<std::string>{"ok"});
  out.rows = query_int(db, "SELECT count(*) FROM metrics");
  MESSAGE("commit-interval ", commit_interval_ms, " ms: stored ", out.stored,
          ", held at the kill ", out.held, ", commits ", out.commits,
          ", rows after ", out.rows);
  return out;
}

} // namespace

TEST_CASE("with the default commit interval a SIGKILL loses nothing stored") {
  temp_dir tmp;
  auto r = run_and_kill(tmp, 0);
  CHECK(r.held == 0);
  CHECK(r.rows == r.stored);
}

TEST_CASE("a SIGKILL loses exactly the samples the commit interval held") {
  temp_dir tmp;
  // Longer than the whole run: every round after the first sync cut waits.
  auto r = run_and_kill(tmp, 3600 * 1000);
  CHECK(r.held > 0);
  CHECK(r.rows == r.stored - r.held);
}

TEST_CASE("the loss on SIGKILL is bounded by the commit interval") {
  temp_dir tmp;
  constexpr int64_t interval_ms = 300;
  auto r = run_and_kill(tmp, interval_ms);
  // The run lasts ~2 s: the interval's commits happened along the way.
  CHECK(r.commits >= 2);
  // Held: the rounds stored within one interval, the one that opened it too;
  // the commit timer may have committed them between the read and the kill.
  CHECK(r.held <= series * (interval_ms / round_ms + 1));
  CHECK(r.rows <= r.stored);
  CHECK(r.rows >= r.stored - r.held);
}

TEST_CASE("held samples commit one interval later with no store after them") {
  temp_dir tmp;
  auto r = run_and_kill(tmp, 300, true);
  CHECK(r.held == 0);
  CHECK(r.rows == r.stored);
}
