// SIGHUP on both nodes: the log file is reopened (logrotate renames it
// first), log.level from the edited config file takes effect, other changes
// are reported as needing a restart, and the node keeps running.
#include <doctest/doctest.h>

#include <csignal>
#include <cstdio>

#include "support.hpp"

using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

bool has(const std::string& file, const std::string& text) {
  return exists(file) && read_file(file).find(text) != std::string::npos;
}

} // namespace

TEST_CASE("fleetd: SIGHUP reopens the log and applies log.level live") {
  temp_dir tmp;
  auto log = tmp.path() + "/fleetd.log";
  auto ini = tmp.path() + "/edge.ini";
  auto config = [&](const char* level, const char* interval) {
    write_file(ini, std::string("[log]\nlevel = \"") + level + "\"\nfile = \""
                      + log + "\"\n[collector]\ninterval = " + interval
                      + "\n");
  };
  config("info", "200ms");
  auto data = tmp.path() + "/data";
  process node(program("fleetd"),
               {"--config=" + ini, "--node.data-dir=" + data,
                "--console.port=0", "--cloud.port=1", "--cloud.timeout=1s"},
               tmp.path() + "/stderr");
  REQUIRE_MESSAGE(eventually([&] { return has(log, " started; data in "); },
                             30s),
                  read_file(tmp.path() + "/stderr"));
  CHECK_FALSE(has(log, " DEBUG "));
  // logrotate: rename, edit the config, SIGHUP.
  REQUIRE(std::rename(log.c_str(), (log + ".1").c_str()) == 0);
  config("debug", "300ms");
  node.signal(SIGHUP);
  CHECK(eventually([&] { return has(log, "SIGHUP: log reopened, log.level "
                                         "debug"); },
                   30s));
  // The collector stores every 200ms; storage logs each commit at debug.
  CHECK(eventually([&] { return has(log, " DEBUG storage: committed "); },
                   30s));
  CHECK(has(log, "collector.interval = 300ms (running with 200ms): needs a "
                 "restart"));
  CHECK(has(log, "SIGHUP: log.level = \"debug\""));
  CHECK_FALSE(has(log + ".1", "SIGHUP"));
  CHECK(node.running());
  // A broken config on SIGHUP changes nothing and stops nothing.
  write_file(ini, "[log]\nlevel = \"loud\"\n");
  node.signal(SIGHUP);
  CHECK(eventually([&] { return has(log, "SIGHUP: settings not reloaded: "); },
                   30s));
  CHECK(has(log, "log.level"));
  CHECK(node.running());
  node.signal(SIGTERM);
  auto status = node.wait(30s);
  REQUIRE(status);
  CHECK(*status == 0);
  CHECK(has(log, "fleetd: stopped"));
}

TEST_CASE("fleetd-cloud: SIGHUP reopens the log and keeps running") {
  temp_dir tmp;
  auto log = tmp.path() + "/cloud.log";
  auto data = tmp.path() + "/data";
  process node(program("fleetd-cloud"),
               {"--log.file=" + log, "--node.data-dir=" + data,
                "--console.port=0", "--ingest.port=0"},
               tmp.path() + "/stderr");
  REQUIRE_MESSAGE(eventually([&] { return has(log, " started; ingest "); },
                             30s),
                  read_file(tmp.path() + "/stderr"));
  REQUIRE(std::rename(log.c_str(), (log + ".1").c_str()) == 0);
  node.signal(SIGHUP);
  CHECK(eventually([&] { return has(log, "SIGHUP: log reopened"); }, 30s));
  CHECK(node.running());
  // Twice: a second rotation works the same.
  REQUIRE(std::rename(log.c_str(), (log + ".2").c_str()) == 0);
  node.signal(SIGHUP);
  CHECK(eventually([&] { return has(log, "SIGHUP: log reopened"); }, 30s));
  node.signal(SIGTERM);
  auto status = node.wait(30s);
  REQUIRE(status);
  CHECK(*status == 0);
  CHECK(has(log, "fleetd-cloud: stopped"));
  CHECK_FALSE(has(log + ".1", "stopped"));
}
