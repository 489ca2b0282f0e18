// A bad config exits non-zero with one clear line naming the option, and
// starts nothing.
#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <set>
#include <sstream>

#include "runtime/options.hpp"
#include "support.hpp"
#include "test_pki.hpp"

using namespace fleetd::test;
using namespace std::chrono_literals;

namespace {

struct outcome {
  int status;
  std::string err;
  bool data_dir_created;
};

outcome run_with(const std::string& prog, std::vector<std::string> args) {
  temp_dir tmp;
  auto data = tmp.path() + "/data";
  args.push_back("--node.data-dir=" + data);
  args.push_back("--console.port=0");
  auto [status, err] = run_to_end(program(prog), args, 10s);
  return {status, err, exists(data)};
}

void check_rejected(const outcome& o, const std::string& option) {
  // Before the checks: INFO shows only with the assertions after it.
  INFO("stderr: ", o.err);
  CHECK(o.status == 2);
  CHECK(std::count(o.err.begin(), o.err.end(), '\n') == 1);
  CHECK(o.err.find(option) != std::string::npos);
  CHECK(o.err.find("bad config") != std::string::npos);
  CHECK_FALSE(o.data_dir_created);
}

} // namespace

TEST_CASE("an unknown option is named and nothing starts") {
  for (auto prog : {"fleetd", "fleetd-cloud"}) {
    CAPTURE(prog);
    check_rejected(run_with(prog, {"--sync.bogus=1"}), "sync.bogus");
    temp_dir tmp;
    write_file(tmp.path() + "/c.ini", "[log]\nlevel = \"info\"\n[nonsense]\nknob = 3\n");
    check_rejected(run_with(prog, {"--config=" + tmp.path() + "/c.ini"}),
                   "nonsense.knob");
  }
}

TEST_CASE("a value of the wrong type is named") {
  check_rejected(run_with("fleetd", {"--cloud.port=abc"}), "cloud.port");
  check_rejected(run_with("fleetd", {"--sync.interval=12"}), "sync.interval");
  check_rejected(run_with("fleetd-cloud", {"--ingest.port=99999"}),
                 "ingest.port");
  temp_dir tmp;
  write_file(tmp.path() + "/c.ini", "[collector]\ninterval = \"often\"\n");
  check_rejected(run_with("fleetd", {"--config=" + tmp.path() + "/c.ini"}),
                 "collector.interval");
  check_rejected(run_with("fleetd", {"--log.level=loud"}), "log.level");
  check_rejected(run_with("fleetd", {"--storage.reserve-bytes=lots"}),
                 "storage.reserve-bytes");
  check_rejected(run_with("fleetd-cloud", {"--ingest.max-body-bytes=1.5MB"}),
                 "ingest.max-body-bytes");
}

TEST_CASE("a missing value is named") {
  check_rejected(run_with("fleetd", {"--device.id="}), "device.id");
  check_rejected(run_with("fleetd", {"--cloud.host"}), "cloud.host");
  check_rejected(run_with("fleetd-cloud", {"--config"}), "config");
}

TEST_CASE("a check across options names the real option keys") {
  // Each actor validates its own config; messages carry the keys users type.
  check_rejected(run_with("fleetd", {"--sync.backoff-base=10s",
                                     "--sync.backoff-cap=1s"}),
                 "sync.backoff-cap: must be at least sync.backoff-base");
  check_rejected(run_with("fleetd", {"--storage.backend=disk"}),
                 "storage.backend: 'disk'");
  check_rejected(run_with("fleetd", {"--host.proc=/nonexistent"}),
                 "host.proc: '/nonexistent' is not a directory");
  check_rejected(run_with("fleetd-cloud", {"--ingest.max-body-bytes=8MiB",
                                           "--ingest.max-decoded-bytes=1MiB"}),
                 "ingest.max-decoded-bytes: must be at least "
                 "ingest.max-body-bytes");
  check_rejected(run_with("fleetd-cloud", {"--store.backend=oracle"}),
                 "store.backend: 'oracle' is neither embedded nor postgresql");
  check_rejected(run_with("fleetd-cloud", {"--store.backend=postgresql"}),
                 "store.postgresql-url: required");
  check_rejected(run_with("fleetd-cloud", {"--store.postgresql-url=x"}),
                 "store.postgresql-url: only with store.backend = postgresql");
  // Nodes of one database must hash keys alike: no secret made up per node.
  check_rejected(run_with("fleetd-cloud", {"--store.backend=postgresql",
                                           "--ingest.anonymous=false",
                                           "--store.postgresql-url=x"}),
                 "tenancy.secret-file: required with store.backend = "
                 "postgresql");
  // The list of cloud nodes stands instead of the one node, never beside it.
  temp_dir tmp;
  write_file(tmp.path() + "/c.ini", "[cloud]\nport = 7480\n");
  check_rejected(run_with("fleetd", {"--config=" + tmp.path() + "/c.ini",
                                     "--cloud.endpoints=127.0.0.1:1,127.0.0.1:2"}),
                 "cloud.endpoints: stands instead of cloud.port");
  check_rejected(run_with("fleetd", {"--cloud.endpoints=127.0.0.1:1,127.0.0.1"}),
                 "cloud.endpoints: '127.0.0.1': expected host:port");
  // A stealing knob under the sharing policy would do nothing: refused.
  check_rejected(run_with("fleetd", {"--scheduler.relaxed-sleep=1s"}),
                 "scheduler.relaxed-sleep: applies to scheduler.policy "
                 "\"stealing\" only");
  check_rejected(run_with("fleetd-cloud", {"--scheduler.policy=fifo"}),
                 "scheduler.policy: 'fifo' is neither sharing nor stealing");
}

TEST_CASE("tier defaults in --help come from the tier table") {
  auto [status, out] = run_to_end(program("fleetd"), {"--help"}, 10s);
  CHECK(status == 0);
  for (auto text : {"(0: the tier's: 5m, 1m, 10s)", "(0: the tier's: 5000, 100, 10)",
                    "-1: the tier's: 3, 1, 0)", "(0: the tier's: 100MB, 5MB)",
                    "(0: the tier's: 7d, 1d)"})
    CHECK_MESSAGE(out.find(text) != std::string::npos, text);
}

TEST_CASE("an unreadable or malformed config file is named") {
  temp_dir tmp;
  for (auto prog : {"fleetd", "fleetd-cloud"}) {
    CAPTURE(prog);
    check_rejected(run_with(prog, {"--config=/nonexistent/fleetd.ini"}),
                   "/nonexistent/fleetd.ini");
    check_rejected(run_with(prog, {"--config=" + tmp.path()}), tmp.path());
    write_file(tmp.path() + "/broken.ini", "[log]\nlevel = info\n");
    auto o = run_with(prog, {"--config=" + tmp.path() + "/broken.ini"});
    check_rejected(o, "broken.ini");
    CHECK(o.err.find("line 2") != std::string::npos);
  }
}

TEST_CASE("--help lists every option and exits 0") {
  auto [status, out] = run_to_end(program("fleetd"), {"--help"}, 10s);
  CHECK(status == 0);
  for (auto opt : {"--cloud.port", "--sync.interval", "--collector.interval",
                   "--node.data-dir", "--console.port", "--log.level",
                   "--storage.reserve-bytes (size, default 512KiB)",
                   "--sync.backoff-cap (duration, default 5m)", "durations: ",
                   "sizes: "})
    CHECK_MESSAGE(out.find(opt) != std::string::npos, opt);
}

TEST_CASE("the example configs, with units unquoted, start both nodes") {
  // config/*.ini write durations as 10s, 5m, 1m and sizes as 512KiB, 8MiB.
  struct {
    const char* prog;
    const char* ini;
    std::vector<std::string> extra;
  } cases[] = {
    {"fleetd", "edge.ini", {"--cloud.port=1", "--storage.max-bytes=100MB",
                            "--sync.interval=1h30m"}},
    {"fleetd-cloud", "cloud.ini", {"--ingest.port=0",
                                   "--ingest.max-body-bytes=5MiB"}},
  };
  temp_dir certs;
  auto pki = make_test_pki(certs.path());
  // The configs name certificates under /etc: the test's stand in for them.
  cases[0].extra.push_back("--cloud.ca-file=" + pki.file("ca.pem"));
  cases[1].extra.push_back("--ingest.tls-cert=" + pki.file("server.pem"));
  cases[1].extra.push_back("--ingest.tls-key=" + pki.file("server.key"));
  for (auto& c : cases) {
    CAPTURE(c.prog);
    temp_dir tmp;
    auto data = tmp.path() + "/data";
    auto args = c.extra;
    args.push_back(std::string("--config=") + FLEETD_SOURCE_DIR + "/config/"
                   + c.ini);
    args.push_back("--node.data-dir=" + data);
    args.push_back("--console.port=0");
    args.push_back("--log.file=");
    process node(program(c.prog), args, tmp.path() + "/stderr");
    CHECK_MESSAGE(port_from(data + "/console.port") != 0,
                  read_file(tmp.path() + "/stderr"));
    node.signal(SIGTERM);
    auto status = node.wait(30s);
    REQUIRE(status);
    CHECK(*status == 0);
  }
}

TEST_CASE("--version on every program prints the project version") {
  for (auto prog : {"fleetd", "fleetd-cloud", "fleetctl", "fleetd-bench"}) {
    CAPTURE(prog);
    auto [status, out] = run_to_end(program(prog), {"--version"}, 10s);
    CHECK(status == 0);
    CHECK(out == std::string(prog) + " " + fleetd::fleetd_version() + "\n");
  }
  CHECK(std::string(fleetd::fleetd_version()) == FLEETD_PROJECT_VERSION);
}

TEST_CASE("fleetd --help lists its commands") {
  auto [status, out] = run_to_end(program("fleetd"), {"--help"}, 10s);
  CHECK(status == 0);
  for (auto cmd : {"commands:", "debug storage", "debug queue",
                   "debug capabilities", "maintenance clean", "--version"})
    CHECK_MESSAGE(out.find(cmd) != std::string::npos, cmd);
}

namespace {

// Every `--group.option` line of a program's --help.
std::vector<std::string> options_in_help(const std::string& help) {
  std::vector<std::string> out;
  std::istringstream in{help};
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("  --", 0) != 0)
      continue;
    auto name = line.substr(4, line.find(' ', 4) - 4);
    if (name.find('.') != std::string::npos)
      out.push_back(name);
  }
  return out;
}

// Every `[group]` `option = ...` of an INI file (commented out or not) as
// "group.option".
std::set<std::string> options_in_ini(const std::string& text) {
  std::set<std::string> out;
  std::istringstream in{text};
  std::string group;
  for (std::string line; std::getline(in, line);) {
    auto b = line.find_first_not_of(" ;");
    if (b == std::string::npos)
      continue;
    if (line[b] == '[' && line[0] == '[') {
      group = line.substr(1, line.find(']') - 1);
      continue;
    }
    auto eq = line.find(" = ", b);
    auto key = eq == std::string::npos ? "" : line.substr(b, eq - b);
    if (!key.empty() && key.find_first_of(" ;") == std::string::npos)
      out.insert(group + "." + key);
  }
  return out;
}

} // namespace

TEST_CASE("the example configs list every option --help names") {
  // config/*.ini are the reference a user copies: an option missing there
  // is one nobody finds.
  for (auto [prog, ini] : {std::pair{"fleetd", "edge.ini"},
                           std::pair{"fleetd-cloud", "cloud.ini"}}) {
    CAPTURE(prog);
    auto [status, out] = run_to_end(program(prog), {"--help"}, 10s);
    REQUIRE(status == 0);
    auto help = options_in_help(out);
    CHECK(help.size() > 40);
    auto listed = options_in_ini(
      read_file(std::string{FLEETD_SOURCE_DIR} + "/config/" + ini));
    for (auto& opt : help)
      CHECK_MESSAGE(listed.count(opt) == 1, opt,
                    " missing from config/" + std::string{ini});
  }
}
