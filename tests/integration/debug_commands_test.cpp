// fleetd debug storage|queue|capabilities and maintenance clean work against
// a running node (through its console) and against a stopped node's files.
#include <doctest/doctest.h>

#include <csignal>

#include "support.hpp"

using namespace fleetd;
using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

std::pair<int, std::string> fleetd_cmd(const std::string& dir,
                                       std::vector<std::string> args) {
  args.push_back("--node.data-dir=" + dir);
  return run_to_end(program("fleetd"), args, 60s);
}

void check_all_commands(const std::string& dir, const char* when) {
  CAPTURE(when);
  auto [rc, out] = fleetd_cmd(dir, {"debug", "storage", "--json"});
  CHECK(rc == 0);
  CHECK(out.find("\"integrity\":\"ok\"") != std::string::npos);
  CHECK(out.find("\"metrics_rows\":") != std::string::npos);
  CHECK(out.find("\"drops\":{") != std::string::npos);
  std::tie(rc, out) = fleetd_cmd(dir, {"debug", "storage"});
  CHECK(rc == 0);
  CHECK(out.find("integrity  ok") != std::string::npos);
  std::tie(rc, out) = fleetd_cmd(dir, {"debug", "queue", "--json"});
  CHECK(rc == 0);
  CHECK(out.find("\"batches\":") != std::string::npos);
  std::tie(rc, out) = fleetd_cmd(dir, {"debug", "capabilities", "--json"});
  CHECK(rc == 0);
  CHECK(out.find("\"tier\"") != std::string::npos);
  std::tie(rc, out) = fleetd_cmd(dir, {"maintenance", "clean"});
  CHECK(rc == 0);
  CHECK(out.find("vacuumed") != std::string::npos);
}

} // namespace

TEST_CASE("debug and maintenance commands work on a running and a stopped node") {
  temp_dir tmp;
  auto dir = tmp.path() + "/device";
  process device{program("fleetd"),
                 {"--node.data-dir=" + dir, "--device.id=dbg-dev",
                  "--cloud.port=1", "--console.port=0",
                  "--collector.interval=50ms", "--sync.interval=50ms",
                  "--sync.batch-size=100"},
                 tmp.path() + "/device.log"};
  REQUIRE(eventually([&] { return exists(dir + "/console.port"); }, 10s));
  REQUIRE(eventually(
    [&] {
      return query_int(dir + "/fleetd.db", "SELECT count(*) FROM sync_queue")
             > 0;
    },
    20s));
  // The node holds the data directory: the commands go through its console.
  check_all_commands(dir, "running");
  auto [rc, out] = fleetd_cmd(dir, {"debug", "queue"});
  CHECK(out.find("batches waiting") != std::string::npos);
  device.signal(SIGTERM);
  REQUIRE(device.wait(10s) == 0);
  // Stopped: the commands open the files directly.
  check_all_commands(dir, "stopped");
  std::tie(rc, out) = fleetd_cmd(dir, {"debug", "storage", "--json"});
  auto rows = query_int(dir + "/fleetd.db", "SELECT count(*) FROM metrics");
  CHECK(out.find("\"metrics_rows\":" + std::to_string(rows) + ",")
        != std::string::npos);
}

TEST_CASE("debug commands name a missing data directory and bad commands") {
  auto [rc, err] = fleetd_cmd("/nonexistent/fleetd", {"debug", "storage"});
  CHECK(rc == 1);
  CHECK(err.find("no data directory") != std::string::npos);
  std::tie(rc, err) = fleetd_cmd("/nonexistent/fleetd", {"debug", "bogus"});
  CHECK(rc == 2);
  std::tie(rc, err) = fleetd_cmd("/nonexistent/fleetd",
                                 {"debug", "capabilities"});
  CHECK(rc == 0);
  CHECK(err.find("tier") != std::string::npos);
}
