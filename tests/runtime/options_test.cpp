// option_set: defaults, INI file, command line, and every error naming what
// went wrong.
#include <doctest/doctest.h>

#include "scratch_dir.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "messages/error.hpp"
#include "runtime/options.hpp"

using namespace fleetd;
using namespace std::chrono_literals;

namespace {

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

bool is_bad_config(const caf::error& err) {
  return err.category() == caf::atom("fleetd")
         && err.code() == static_cast<uint8_t>(ec::bad_config);
}

// A private directory for config files, removed at the end.
struct temp_dir {
  test::scratch_dir dir{"fleetd-options-test"};
  std::string path = dir.path();

  temp_dir() {
    REQUIRE(dir.ok());
  }

  std::string write(const std::string& name, const std::string& text) {
    auto file = path + "/" + name;
    std::ofstream out(file, std::ios::trunc);
    out << text;
    REQUIRE(out.good());
    return file;
  }

  std::string mkdir(const std::string& name) {
    auto dir = path + "/" + name;
    REQUIRE(::mkdir(dir.c_str(), 0700) == 0);
    return dir;
  }
};

// The options of a made-up program: one of each kind.
struct fixture {
  bool verbose = true;
  int64_t port = -1;
  int64_t workers = -1;
  std::string name;
  std::string token;
  std::string region;
  option_set::duration interval{};
  option_set::duration timeout{};
  int64_t cap = -1;
  int64_t body = -1;
  option_set opts{"fleetd-test", "A program that exists only in tests."};
  temp_dir tmp;

  fixture() {
    opts.add("log.verbose", verbose, false, "Log more");
    opts.add("http.port", port, 8080, "port", "Port to listen on", 0, 65535);
    opts.add("sync.workers", workers, 4, "threads", "Parallel uploads", 1, 64);
    opts.add("node.name", name, "edge", "Name of the node");
    opts.add("cloud.token", token, "", "Bearer token", false, true);
    opts.add("cloud.region", region, "", "Region to upload to", true);
    opts.add("sync.interval", interval, 10s, "Time between syncs", 100ms);
    opts.add("http.timeout", timeout, 2min, "Request timeout");
    opts.add_size("storage.cap", cap, 512 * 1024, "Store cap");
    opts.add_size("http.max-body", body, 8000000, "Largest body", 1024,
                  int64_t{1} << 30);
  }

  caf::error parse(std::vector<std::string> args) {
    return opts.parse(args);
  }

  // Parses with the required option supplied so other problems show.
  caf::error parse_ok(std::vector<std::string> args) {
    args.push_back("--cloud.region=eu");
    return opts.parse(args);
  }

  std::string config(const std::string& text) {
    return tmp.write("fleetd.ini", text);
  }
};

} // namespace

TEST_CASE_FIXTURE(fixture, "declaring an option applies its default") {
  CHECK_FALSE(verbose);
  CHECK(port == 8080);
  CHECK(workers == 4);
  CHECK(name == "edge");
  CHECK(token.empty());
  CHECK(interval == 10s);
  CHECK(timeout == 2min);
}

TEST_CASE_FIXTURE(fixture, "defaults stay when neither file nor flags set "
                           "an option") {
  auto err = parse_ok({});
  REQUIRE_MESSAGE(!err, render(err));
  CHECK_FALSE(verbose);
  CHECK(port == 8080);
  CHECK(name == "edge");
  CHECK(interval == 10s);
  CHECK(region == "eu");
  CHECK(opts.args().empty());
  CHECK_FALSE(opts.help_requested());
}

TEST_CASE_FIXTURE(fixture, "the INI file sets options by group") {
  auto file = config("; comment\n"
                     "[log]\n"
                     "verbose = true\n"
                     "\n"
                     "[http]\n"
                     "port = 9090\n"
                     "timeout = 250ms\n"
                     "[node]\n"
                     "name = \"edge-07\"\n"
                     "[cloud]\n"
                     "region = \"us-east\"\n"
                     "token = \"s3cr3t\"\n"
                     "[sync]\n"
                     "interval = 5s\n"
                     "workers = 16\n");
  auto err = parse({"--config", file});
  REQUIRE_MESSAGE(!err, render(err));
  CHECK(opts.config_file() == file);
  CHECK(verbose);
  CHECK(port == 9090);
  CHECK(timeout == 250ms);
  CHECK(name == "edge-07");
  CHECK(region == "us-east");
  CHECK(token == "s3cr3t");
  CHECK(interval == 5s);
  CHECK(workers == 16);
}

TEST_CASE_FIXTURE(fixture, "the command line overrides the INI file") {
  auto file = config("[http]\nport = 9090\n[node]\nname = \"from-file\"\n"
                     "[sync]\ninterval = 5s\n[cloud]\nregion = \"eu\"\n");
  auto err = parse({"--http.port=7070", "--config=" + file,
                    "--node.name=from-flag", "--sync.interval=1min"});
  REQUIRE_MESSAGE(!err, render(err));
  CHECK(port == 7070);
  CHECK(name == "from-flag");
  CHECK(interval == 1min);
  CHECK(region == "eu");
}

TEST_CASE_FIXTURE(fixture, "flags take their value after a space, too") {
  auto err = parse_ok({"--http.port", "1234", "--node.name", "spaced",
                       "--sync.interval", "750ms", "--log.verbose",
                       "status"});
  REQUIRE_MESSAGE(!err, render(err));
  CHECK(port == 1234);
  CHECK(name == "spaced");
  CHECK(interval == 750ms);
  // A bool flag alone means true and does not swallow the next word.
  CHECK(verbose);
  CHECK(opts.args() == std::vector<std::string>{"status"});
}

TEST_CASE_FIXTURE(fixture, "positional words land in args") {
  auto err = parse_ok({"devices", "--http.port=1", "list"});
  REQUIRE_MESSAGE(!err, render(err));
  CHECK(opts.args() == std::vector<std::string>{"devices", "list"});
}

TEST_CASE_FIXTURE(fixture, "bool flags accept explicit values") {
  REQUIRE(!parse_ok({"--log.verbose=true"}));
  CHECK(verbose);
  REQUIRE(!parse_ok({"--log.verbose=false"}));
  CHECK_FALSE(verbose);
}

TEST_CASE_FIXTURE(fixture, "an unknown option in the INI file is an error "
                           "naming it") {
  auto file = config("[http]\nport = 1\nprot = 2\n");
  auto err = parse_ok({"--config", file});
  REQUIRE(err);
  CHECK(is_bad_config(err));
  CHECK(contains(render(err), "http.prot"));
  CHECK(contains(render(err), "unknown option"));
  CHECK(contains(render(err), file));
}

TEST_CASE_FIXTURE(fixture, "an unknown group in the INI file is an error "
                           "naming the option") {
  auto file = config("[htpp]\nport = 1\n");
  auto err = parse_ok({"--config", file});
  REQUIRE(err);
  CHECK(is_bad_config(err));
  CHECK(contains(render(err), "htpp.port"));
}

TEST_CASE_FIXTURE(fixture, "an unknown option on the command line is an "
                           "error naming it") {
  for (auto args : {std::vector<std::string>{"--http.prot=1"},
                    std::vector<std::string>{"--http.prot", "1"},
                    std::vector<std::string>{"--verbose"}}) {
    auto err = parse_ok(args);
    REQUIRE(err);
    CHECK(is_bad_config(err));
    auto key = args[0].substr(2, args[0].find('=') - 2);
    CHECK_MESSAGE(contains(render(err), key), render(err));
    CHECK(contains(render(err), "unknown option"));
  }
}

TEST_CASE_FIXTURE(fixture, "a value of the wrong type in the INI file is an "
                           "error naming the option") {
  struct {
    const char* ini;
    const char* key;
  } cases[] = {
    {"[http]\nport = \"80\"\n", "http.port"},
    {"[http]\nport = 5s\n", "http.port"},
    {"[http]\nport = 1.5\n", "http.port"},
    {"[log]\nverbose = 1\n", "log.verbose"},
    {"[log]\nverbose = \"yes\"\n", "log.verbose"},
    {"[sync]\ninterval = 5\n", "sync.interval"},
    {"[sync]\ninterval = \"soon\"\n", "sync.interval"},
    {"[sync]\ninterval = 5 s s\n", "sync.interval"},
    {"[storage]\ncap = 5XB\n", "storage.cap"},
    {"[storage]\ncap = true\n", "storage.cap"},
    {"[node]\nname = 42\n", "node.name"},
    {"[node]\nname = 'atom'\n", "node.name"},
  };
  for (auto& c : cases) {
    CAPTURE(c.ini);
    fixture f;
    auto file = f.config(c.ini);
    auto err = f.parse_ok({"--config", file});
    REQUIRE(err);
    CHECK(is_bad_config(err));
    CHECK_MESSAGE(contains(render(err), c.key), render(err));
    CHECK_MESSAGE(contains(render(err), file), render(err));
  }
}

TEST_CASE_FIXTURE(fixture, "a value of the wrong type on the command line is "
                           "an error naming the option") {
  struct {
    const char* arg;
    const char* key;
  } cases[] = {
    {"--http.port=eighty", "http.port"},
    {"--http.port=5s", "http.port"},
    {"--http.port=", "http.port"},
    {"--log.verbose=yes", "log.verbose"},
    {"--sync.interval=5", "sync.interval"},
    {"--sync.interval=soon", "sync.interval"},
    {"--http.timeout=-5s", "http.timeout"},
  };
  for (auto& c : cases) {
    CAPTURE(c.arg);
    fixture f;
    auto err = f.parse_ok({c.arg});
    REQUIRE(err);
    CHECK(is_bad_config(err));
    CHECK_MESSAGE(contains(render(err), c.key), render(err));
  }
}

TEST_CASE_FIXTURE(fixture, "an integer out of range is an error naming the "
                           "option and the range") {
  SUBCASE("above the maximum on the command line") {
    auto err = parse_ok({"--http.port=65536"});
    REQUIRE(err);
    CHECK(is_bad_config(err));
    CHECK(contains(render(err), "http.port"));
    CHECK(contains(render(err), "65535"));
    CHECK(port == 8080);
  }
  SUBCASE("below the minimum in the INI file") {
    auto err = parse_ok({"--config", config("[sync]\nworkers = 0\n")});
    REQUIRE(err);
    CHECK(contains(render(err), "sync.workers"));
    CHECK(contains(render(err), "[1, 64]"));
  }
  SUBCASE("beyond 64 bits") {
    auto err = parse_ok({"--http.port=99999999999999999999"});
    REQUIRE(err);
    CHECK(is_bad_config(err));
    CHECK(contains(render(err), "http.port"));
  }
  SUBCASE("the bounds themselves are accepted") {
    REQUIRE(!parse_ok({"--http.port=0", "--sync.workers=64"}));
    CHECK(port == 0);
    CHECK(workers == 64);
    REQUIRE(!parse_ok({"--http.port=65535", "--sync.workers=1"}));
    CHECK(port == 65535);
    CHECK(workers == 1);
  }
}

TEST_CASE_FIXTURE(fixture, "a duration below its minimum is an error naming "
                           "the option") {
  auto err = parse_ok({"--sync.interval=50ms"});
  REQUIRE(err);
  CHECK(contains(render(err), "sync.interval"));
  CHECK(contains(render(err), "100ms"));
  REQUIRE(!parse_ok({"--sync.interval=100ms"}));
  CHECK(interval == 100ms);
}

TEST_CASE_FIXTURE(fixture, "a duration finer than a millisecond is refused, "
                           "not truncated") {
  auto err = parse_ok({"--http.timeout=1500us"});
  REQUIRE(err);
  CHECK(contains(render(err), "http.timeout"));
  CHECK(contains(render(err), "whole number of milliseconds"));
  CHECK(timeout == 2min);
  REQUIRE(!parse_ok({"--http.timeout=2000us"}));
  CHECK(timeout == 2ms);
}

TEST_CASE_FIXTURE(fixture, "a required string that is missing is an error "
                           "naming it") {
  auto err = parse({});
  REQUIRE(err);
  CHECK(is_bad_config(err));
  CHECK(contains(render(err), "cloud.region"));
  CHECK(contains(render(err), "required"));
  // Empty counts as missing.
  fixture f;
  err = f.parse({"--cloud.region="});
  REQUIRE(err);
  CHECK(contains(render(err), "cloud.region"));
  // Either source satisfies it.
  fixture g;
  CHECK(!g.parse({"--config", g.config("[cloud]\nregion = \"ap\"\n")}));
  CHECK(g.region == "ap");
}

TEST_CASE_FIXTURE(fixture, "an option that stands instead of others is "
                           "refused together with any of them, from either "
                           "source") {
  opts.replaces("node.name", {"http.port", "sync.workers"});
  auto err = parse_ok({"--node.name=a", "--sync.workers=2"});
  REQUIRE(err);
  CHECK(is_bad_config(err));
  CHECK(contains(render(err), "node.name"));
  CHECK(contains(render(err), "sync.workers"));
  fixture f;
  f.opts.replaces("node.name", {"http.port", "sync.workers"});
  err = f.parse_ok({"--config", f.config("[http]\nport = 80\n"),
                    "--node.name=a"});
  REQUIRE(err);
  CHECK(contains(render(err), "http.port"));
  // Alone, or set empty, it leaves the others free.
  fixture g;
  g.opts.replaces("node.name", {"http.port", "sync.workers"});
  CHECK(!g.parse_ok({"--node.name=a"}));
  fixture h;
  h.opts.replaces("node.name", {"http.port", "sync.workers"});
  CHECK(!h.parse_ok({"--node.name=", "--http.port=80"}));
  CHECK(h.port == 80);
}

TEST_CASE_FIXTURE(fixture, "a missing config file is an error naming the "
                           "file") {
  auto missing = tmp.path + "/does-not-exist.ini";
  auto err = parse_ok({"--config", missing});
  REQUIRE(err);
  CHECK(is_bad_config(err));
  CHECK(contains(render(err), missing));
}

TEST_CASE_FIXTURE(fixture, "an unreadable config file is an error naming the "
                           "file") {
  // A directory opens but cannot be read (permissions do not stop root).
  auto dir = tmp.mkdir("conf.d");
  auto err = parse_ok({"--config=" + dir});
  REQUIRE(err);
  CHECK(is_bad_config(err));
  CHECK_MESSAGE(contains(render(err), dir), render(err));
}

TEST_CASE_FIXTURE(fixture, "an empty config file is fine") {
  auto err = parse_ok({"--config", config("")});
  REQUIRE_MESSAGE(!err, render(err));
  CHECK(port == 8080);
}

TEST_CASE_FIXTURE(fixture, "a syntax error in the INI file names the file and "
                           "the line") {
  struct {
    const char* ini;
    const char* where;
    const char* key; // the option the line sets, when it names one
  } cases[] = {
    // An unquoted string.
    {"[node]\nname = edge-07\n", "line 2,", "node.name"},
    {"[http]\nport = 1\n\n[node]\nname = edge\n", "line 5,", "node.name"},
    // An unterminated group and string.
    {"[http]\nport = 1\n[broken\n", "line 3,", ""},
    {"[node]\nname = \"open\n[http]\n", "line 2,", "node.name"},
    // A key without a value, followed by another option.
    {"[http]\n\nport =\ntimeout = 5s\n", "line 3,", "http.port"},
    {"[http]\nport = 1 2\n", "line 2,", "http.port"},
    // First line.
    {"port\n", "line 1,", ""},
  };
  for (auto& c : cases) {
    CAPTURE(c.ini);
    fixture f;
    auto file = f.config(c.ini);
    auto err = f.parse_ok({"--config", file});
    REQUIRE(err);
    CHECK(is_bad_config(err));
    auto text = render(err);
    CHECK_MESSAGE(contains(text, file), text);
    CHECK_MESSAGE(contains(text, c.where), text);
    if (*c.key != '\0')
      CHECK_MESSAGE(contains(text, std::string(c.key) + ": "), text);
  }
}

TEST_CASE_FIXTURE(fixture, "a syntax error names the column, too") {
  auto err = parse_ok({"--config", config("[node]\nname = edge\n")});
  REQUIRE(err);
  // 'e' of the unquoted value is the 8th character of line 2.
  CHECK_MESSAGE(contains(render(err), "line 2, column 8:"), render(err));
  // A missing value is reported at the end of its line.
  err = parse_ok({"--config", config("[http]\nport =\n")});
  REQUIRE(err);
  CHECK_MESSAGE(contains(render(err), "line 2, column 7:"), render(err));
  err = parse_ok({"--config", config("port = x\n")});
  REQUIRE(err);
  CHECK_MESSAGE(contains(render(err), "line 1,"), render(err));
}

TEST_CASE_FIXTURE(fixture, "load_ini reports its origin") {
  auto err = opts.load_ini("[http]\nport = 100000\n", "inline.ini");
  REQUIRE(err);
  CHECK(contains(render(err), "http.port"));
  CHECK(contains(render(err), "inline.ini"));
  CHECK(!opts.load_ini("[http]\nport = 100\n", "inline.ini"));
  CHECK(port == 100);
}

TEST_CASE_FIXTURE(fixture, "a flag without its value is an error naming it") {
  auto err = parse({"--cloud.region=eu", "--http.port"});
  REQUIRE(err);
  CHECK(is_bad_config(err));
  CHECK(contains(render(err), "http.port"));
  CHECK(contains(render(err), "missing value"));
}

TEST_CASE_FIXTURE(fixture, "a flag never takes the next flag as its value") {
  auto file = config("[node]\nname = \"from-file\"\n");
  // "--node.name --config FILE" must not set name to "--config" and drop
  // the file.
  auto err = parse_ok({"--node.name", "--config", file});
  REQUIRE(err);
  CHECK(contains(render(err), "node.name"));
  CHECK(contains(render(err), "missing value"));
  CHECK(name == "edge");
  fixture f;
  err = f.parse({"--config", "--cloud.region=eu"});
  REQUIRE(err);
  CHECK(contains(render(err), "config"));
  CHECK(contains(render(err), "missing value"));
  // A value that merely contains dashes is fine.
  fixture g;
  REQUIRE(!g.parse_ok({"--node.name", "-edge-"}));
  CHECK(g.name == "-edge-");
}

TEST_CASE_FIXTURE(fixture, "help lists every option with its default") {
  auto text = opts.help();
  CHECK(contains(text, "fleetd-test"));
  CHECK(contains(text, "A program that exists only in tests."));
  CHECK(contains(text, "--config"));
  CHECK(contains(text, "--help"));
  CHECK(contains(text, "--log.verbose (bool, default false)"));
  CHECK(contains(text, "--http.port (integer, port, default 8080)"));
  CHECK(contains(text, "--sync.workers (integer, threads, default 4)"));
  CHECK(contains(text, "--node.name (string, default \"edge\")"));
  CHECK(contains(text, "--cloud.token (string, default \"\")"));
  CHECK(contains(text, "--cloud.region (string, default \"\", required)"));
  CHECK(contains(text, "--sync.interval (duration, default 10s)"));
  CHECK(contains(text, "--http.timeout (duration, default 2m)"));
  CHECK(contains(text, "--storage.cap (size, default 512KiB)"));
  CHECK(contains(text, "--http.max-body (size, default 8MB)"));
  CHECK(contains(text, std::string("durations: ") + duration_units));
  CHECK(contains(text, std::string("sizes: ") + size_units));
  for (auto desc : {"Log more", "Port to listen on", "Parallel uploads",
                    "Name of the node", "Bearer token", "Region to upload to",
                    "Time between syncs", "Request timeout"})
    CHECK_MESSAGE(contains(text, desc), desc);
}

TEST_CASE_FIXTURE(fixture, "help shows defaults, not the values parsed") {
  REQUIRE(!parse_ok({"--http.port=1"}));
  CHECK(contains(opts.help(), "default 8080"));
}

TEST_CASE_FIXTURE(fixture, "dump shows every value and masks secrets") {
  REQUIRE(!parse_ok({"--cloud.token=hunter2", "--http.timeout=90s"}));
  auto text = opts.dump();
  CHECK(contains(text, "log.verbose = false\n"));
  CHECK(contains(text, "http.port = 8080\n"));
  CHECK(contains(text, "node.name = \"edge\"\n"));
  CHECK(contains(text, "cloud.region = \"eu\"\n"));
  CHECK(contains(text, "cloud.token = \"***\"\n"));
  CHECK(contains(text, "sync.interval = 10s\n"));
  CHECK(contains(text, "http.timeout = 1m30s\n"));
  CHECK(contains(text, "storage.cap = 512KiB\n"));
  CHECK_FALSE(contains(text, "hunter2"));
}

TEST_CASE_FIXTURE(fixture, "dump shows an empty secret as empty") {
  REQUIRE(!parse_ok({}));
  CHECK(contains(opts.dump(), "cloud.token = \"\"\n"));
}

TEST_CASE_FIXTURE(fixture, "dump output reads back as an INI file") {
  REQUIRE(!parse_ok({"--node.name=n1", "--sync.interval=1500ms",
                     "--log.verbose", "--storage.cap=100MB",
                     "--http.timeout=1h30m"}));
  // Turn "group.key = value" lines into INI groups.
  std::string ini;
  std::string text = opts.dump();
  size_t pos = 0;
  while (pos < text.size()) {
    auto end = text.find('\n', pos);
    auto line = text.substr(pos, end - pos);
    pos = end + 1;
    auto dot = line.find('.');
    ini += "[" + line.substr(0, dot) + "]\n" + line.substr(dot + 1) + "\n";
  }
  fixture f;
  auto err = f.opts.load_ini(ini, "dump");
  REQUIRE_MESSAGE(!err, render(err));
  CHECK(f.name == "n1");
  CHECK(f.interval == 1500ms);
  CHECK(f.timeout == 90min);
  CHECK(f.cap == 100000000);
  CHECK(f.verbose);
  CHECK(f.region == "eu");
}

TEST_CASE_FIXTURE(fixture, "--help sets help_requested and skips checks") {
  for (auto flag : {"--help", "-h"}) {
    fixture f;
    // No required option and a missing file: --help still succeeds.
    auto err = f.parse({flag, "--config=/nonexistent/fleetd.ini"});
    CHECK_MESSAGE(!err, render(err));
    CHECK(f.opts.help_requested());
  }
}

TEST_CASE("parse takes argc and argv without the program name") {
  bool verbose = false;
  int64_t port = 0;
  option_set opts{"prog", "summary"};
  opts.add("log.verbose", verbose, false, "v");
  opts.add("http.port", port, 1, "port", "p");
  char a0[] = "prog";
  char a1[] = "--http.port=42";
  char a2[] = "--log.verbose";
  char a3[] = "run";
  char* argv[] = {a0, a1, a2, a3, nullptr};
  auto err = opts.parse(4, argv);
  REQUIRE_MESSAGE(!err, render(err));
  CHECK(port == 42);
  CHECK(verbose);
  CHECK(opts.args() == std::vector<std::string>{"run"});
}

TEST_CASE("durations render in the units they are read in") {
  CHECK(to_duration_text(0ms) == "0s");
  CHECK(to_duration_text(250ms) == "250ms");
  CHECK(to_duration_text(1500ms) == "1s500ms");
  CHECK(to_duration_text(5s) == "5s");
  CHECK(to_duration_text(90s) == "1m30s");
  CHECK(to_duration_text(2min) == "2m");
  CHECK(to_duration_text(1h) == "1h");
  CHECK(to_duration_text(90min) == "1h30m");
  CHECK(to_duration_text(24h * 7) == "7d");
  using ms = std::chrono::milliseconds;
  for (ms x : {ms{0}, ms{1}, ms{999}, ms{61001}, ms{7h + 3min},
               ms{24h * 400 + 1ms}}) {
    auto back = parse_duration(to_duration_text(x));
    REQUIRE(back);
    CHECK(*back == x);
  }
}

TEST_CASE("parse_duration reads the units people write") {
  struct {
    const char* text;
    std::chrono::milliseconds want;
  } cases[] = {
    {"10m", 10min},   {"7d", 24h * 7},  {"1h30m", 90min}, {"500ms", 500ms},
    {"5min", 5min},   {"10s", 10s},     {"2000us", 2ms},  {"3000000ns", 3ms},
    {"1d2h3m4s5ms", 24h + 2h + 3min + 4s + 5ms},          {"0", 0ms},
    {"0s", 0ms},      {"1h 30m", 90min}, {"90m", 90min},
  };
  for (auto& c : cases) {
    CAPTURE(c.text);
    auto d = parse_duration(c.text);
    REQUIRE_MESSAGE(d, render(d.error()));
    CHECK(*d == c.want);
  }
  for (auto text : {"", "5", "-5s", "soon", "5 seconds", "1.5s", "s", "10M",
                    "1h30", "5sm", "1500us", "9999999999999999999s",
                    "999999999999d"}) {
    CAPTURE(text);
    auto d = parse_duration(text);
    REQUIRE_FALSE(d);
    CHECK(contains(render(d.error()), text));
  }
  // The message for an unknown spelling says which units work.
  CHECK(contains(render(parse_duration("10 minutes").error()),
                 duration_units));
  CHECK(contains(render(parse_duration("1500us").error()),
                 "whole number of milliseconds"));
  CHECK(contains(render(parse_duration("999999999999d").error()),
                 "too long"));
  // Hostile input is refused before it is looked at.
  auto huge = std::string(100000, '1') + "s";
  auto d = parse_duration(huge);
  REQUIRE_FALSE(d);
  CHECK(render(d.error()).size() < 400);
}

TEST_CASE("parse_size reads decimal and binary units; plain is bytes") {
  struct {
    const char* text;
    int64_t want;
  } cases[] = {
    {"0", 0},
    {"512", 512},
    {"512B", 512},
    {"512k", 512000},
    {"512K", 512000},
    {"512kB", 512000},
    {"100MB", 100000000},
    {"100M", 100000000},
    {"100mb", 100000000},
    {"2G", 2000000000},
    {"1TB", 1000000000000},
    {"5MiB", 5 * 1024 * 1024},
    {"5Mi", 5 * 1024 * 1024},
    {"512KiB", 512 * 1024},
    {"512kib", 512 * 1024},
    {"1GiB", int64_t{1} << 30},
    {"1TiB", int64_t{1} << 40},
    {"100 MB", 100000000},
  };
  for (auto& c : cases) {
    CAPTURE(c.text);
    auto n = parse_size(c.text);
    REQUIRE_MESSAGE(n, render(n.error()));
    CHECK(*n == c.want);
  }
  for (auto text : {"", "-1", "MB", "1.5GB", "5XB", "5 M B", "10PB", "5MiBs",
                    "9223372036854775808", "10000000TB"}) {
    CAPTURE(text);
    auto n = parse_size(text);
    CHECK_FALSE(n);
  }
  CHECK(contains(render(parse_size("5 megs").error()), size_units));
  CHECK(contains(render(parse_size("10000000TB").error()), "too large"));
}

TEST_CASE("sizes render exactly, in the shortest unit") {
  CHECK(to_size_text(0) == "0");
  CHECK(to_size_text(512) == "512");
  CHECK(to_size_text(1000) == "1kB");
  CHECK(to_size_text(1024) == "1KiB");
  CHECK(to_size_text(512 * 1024) == "512KiB");
  CHECK(to_size_text(8 * 1024 * 1024) == "8MiB");
  CHECK(to_size_text(100000000) == "100MB");
  CHECK(to_size_text(1234567) == "1234567");
  for (int64_t x : {int64_t{0}, int64_t{1}, int64_t{1000}, int64_t{4096},
                    int64_t{5000000}, int64_t{3} << 40, INT64_MAX}) {
    auto back = parse_size(to_size_text(x));
    REQUIRE(back);
    CHECK(*back == x);
  }
}

TEST_CASE_FIXTURE(fixture, "the INI file takes durations and sizes with "
                           "units, unquoted or quoted") {
  auto file = config("[sync]\n"
                     "interval = 10m\n"
                     "[http]\n"
                     "timeout = 1h30m ; an hour and a half\n"
                     "max-body = 5MiB\n"
                     "[storage]\n"
                     "cap = \"100MB\"\n"
                     "[node]\n"
                     "name = \"n\"\n");
  auto err = parse_ok({"--config", file});
  REQUIRE_MESSAGE(!err, render(err));
  CHECK(interval == 10min);
  CHECK(timeout == 90min);
  CHECK(body == 5 * 1024 * 1024);
  CHECK(cap == 100000000);
  CHECK(name == "n");
  fixture f;
  err = f.parse_ok({"--config", f.config("[sync]\ninterval=7d\n[storage]\n"
                                         "cap=512k\n[http]\ntimeout = 5min\n"
                                         "max-body = 2048\n")});
  REQUIRE_MESSAGE(!err, render(err));
  CHECK(f.interval == 24h * 7);
  CHECK(f.cap == 512000);
  CHECK(f.timeout == 5min);
  CHECK(f.body == 2048);
}

TEST_CASE_FIXTURE(fixture, "flags take durations and sizes with units") {
  auto err = parse_ok({"--sync.interval=1h30m", "--http.timeout", "500ms",
                       "--storage.cap=5MiB", "--http.max-body", "512k"});
  REQUIRE_MESSAGE(!err, render(err));
  CHECK(interval == 90min);
  CHECK(timeout == 500ms);
  CHECK(cap == 5 * 1024 * 1024);
  CHECK(body == 512000);
}

TEST_CASE_FIXTURE(fixture, "a wrong duration or size says which units work, "
                           "never that strings must be quoted") {
  struct {
    const char* ini;
    const char* key;
    const char* units;
  } cases[] = {
    {"[sync]\ninterval = 10 minutes\n", "sync.interval", duration_units},
    {"[sync]\ninterval = 10x\n", "sync.interval", duration_units},
    {"[storage]\ncap = 100 megs\n", "storage.cap", size_units},
    {"[storage]\ncap = 1.5GB\n", "storage.cap", size_units},
  };
  for (auto& c : cases) {
    CAPTURE(c.ini);
    fixture f;
    auto file = f.config(c.ini);
    auto err = f.parse_ok({"--config", file});
    REQUIRE(err);
    auto text = render(err);
    CHECK(is_bad_config(err));
    CHECK_MESSAGE(contains(text, c.key), text);
    CHECK_MESSAGE(contains(text, c.units), text);
    CHECK_MESSAGE(contains(text, file + " line 2"), text);
    CHECK_FALSE(contains(text, "quoted"));
  }
  auto err = parse_ok({"--storage.cap=lots"});
  REQUIRE(err);
  CHECK(contains(render(err), "storage.cap"));
  CHECK(contains(render(err), size_units));
}

TEST_CASE_FIXTURE(fixture, "a size out of range names the range in units") {
  auto err = parse_ok({"--http.max-body=2GiB"});
  REQUIRE(err);
  CHECK_MESSAGE(contains(render(err), "http.max-body"), render(err));
  CHECK_MESSAGE(contains(render(err), "[1KiB, 1GiB]"), render(err));
  CHECK(body == 8000000);
}

TEST_CASE_FIXTURE(fixture, "a config file larger than 1 MiB is refused "
                           "unread") {
  auto file = config("; " + std::string(2 * 1024 * 1024, 'x') + "\n");
  auto err = parse_ok({"--config", file});
  REQUIRE(err);
  CHECK(contains(render(err), file));
  CHECK(contains(render(err), "larger than 1MiB"));
}

TEST_CASE("an auto-or-bool switch takes true, false and auto, quoted or not, "
          "and nothing else") {
  temp_dir tmp;
  auto run = [&](const std::string& ini, std::vector<std::string> args,
                 std::string& out) {
    option_set opts{"fleetd-test", "A program that exists only in tests."};
    opts.add_auto_bool("storage.rounds-file", out, "Rounds file");
    if (!ini.empty())
      args.insert(args.begin(),
                  {"--config", tmp.write("s.ini", "[storage]\n" + ini)});
    return opts.parse(args);
  };
  std::string v;
  REQUIRE_FALSE(run("", {}, v));
  CHECK(v == "auto");
  for (auto [text, want] : {std::pair{"rounds-file = true\n", "true"},
                            std::pair{"rounds-file = false\n", "false"},
                            std::pair{"rounds-file = auto\n", "auto"},
                            std::pair{"rounds-file = \"true\"\n", "true"}}) {
    CAPTURE(text);
    auto err = run(text, {}, v);
    REQUIRE_MESSAGE(!err, render(err));
    CHECK(v == want);
  }
  REQUIRE_FALSE(run("rounds-file = true\n", {"--storage.rounds-file=false"}, v));
  CHECK(v == "false");
  for (auto bad : {"rounds-file = yes\n", "rounds-file = 1\n",
                   "rounds-file = \"\"\n"}) {
    CAPTURE(bad);
    auto err = run(bad, {}, v);
    REQUIRE(err);
    CHECK(render(err).find("storage.rounds-file: expected true, false or auto")
          != std::string::npos);
  }
  auto err = run("", {"--storage.rounds-file=on"}, v);
  CHECK(err);
}
