// fleetd killed with SIGKILL during heavy writes, 50 times in a row: the
// database stays intact and everything reported committed is still there.
#include <doctest/doctest.h>

#include <csignal>
#include <memory>
#include <random>
#include <regex>

#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

constexpr int kills = 50;
constexpr int64_t series = 200;

// Sum of the samples the storage reported as committed in a log.
int64_t committed_in(const std::string& log) {
  static const std::regex line{"storage: committed ([0-9]+) samples"};
  int64_t total = 0;
  for (auto i = std::sregex_iterator(log.begin(), log.end(), line);
       i != std::sregex_iterator(); ++i)
    total += std::stoll((*i)[1].str());
  return total;
}

// Samples the store holds after a kill: table rows, plus (rounds file on)
// the records of <db>-rounds, as fleetd itself reads them back.
int64_t held(const std::string& dir, const std::string& db, bool rounds_file) {
  if (!rounds_file)
    return query_int(db, "SELECT count(*) FROM metrics");
  return json_int(fleetd_out(dir, {"debug", "storage", "--json",
                                   "--storage.rounds-file=true"}),
                  "metrics_rows");
}

void kill_during_writes(bool rounds_file) {
  temp_dir tmp;
  auto seed = std::random_device{}();
  MESSAGE("seed ", seed, ", temp dir ", tmp.path(), ", rounds file ",
          rounds_file);
  std::mt19937 rng(seed);
  auto dir = tmp.path() + "/device";
  auto db = dir + "/fleetd.db";
  int64_t committed = 0;
  for (int i = 0; i < kills; ++i) {
    CAPTURE(i);
    auto log_file = tmp.path() + "/run-" + std::to_string(i) + ".log";
    process device{program("fleetd"),
                   {"--node.data-dir=" + dir, "--device.id=crash-dev",
                    "--cloud.port=1", "--console.port=0", "--log.level=debug",
                    "--collector.interval=1h", "--collector.rounds=1",
                    "--load.series=" + std::to_string(series),
                    "--load.interval=0ms",
                    "--storage.rounds-file="
                      + std::string(rounds_file ? "true" : "false")},
                   log_file};
    // Kill at a random moment once writes are under way.
    auto wanted = std::uniform_int_distribution<int64_t>(1, 40)(rng);
    REQUIRE(eventually(
      [&] {
        return committed_in(read_file(log_file)) >= wanted * series
               || !device.running();
      },
      20s));
    device.signal(SIGKILL);
    REQUIRE(device.wait(5s));
    committed += committed_in(read_file(log_file));
    CHECK(query(db, "PRAGMA integrity_check") == std::vector<std::string>{"ok"});
    auto rows = held(dir, db, rounds_file);
    // Rows may exceed what was logged: a commit can land just before the kill.
    CHECK(rows >= committed);
    if (rows < committed)
      break;
  }
  MESSAGE(kills, " kills; ", committed, " samples reported committed; ",
          held(dir, db, rounds_file), " present");
  CHECK(committed > kills * series);
}

} // namespace

TEST_CASE("SIGKILL during heavy writes never corrupts or loses committed data") {
  kill_during_writes(false);
}

TEST_CASE("with the rounds file, SIGKILL during heavy writes loses nothing "
          "committed") {
  kill_during_writes(true);
}
