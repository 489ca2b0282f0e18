// The process-wide logger: level filtering, line format, file output.
#include <doctest/doctest.h>

#include "scratch_dir.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "messages/error.hpp"
#include "runtime/logger.hpp"

using namespace fleetd;

namespace {

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    out.push_back(line);
  return out;
}

// A fresh log file per test; the logger is reset to "info, no file" after.
struct fixture {
  test::scratch_dir scratch{"fleetd-logger-test"};
  std::string dir = scratch.path();
  std::string file = dir + "/fleetd.log";

  fixture() {
    REQUIRE(scratch.ok());
  }

  ~fixture() {
    logger::init(log_level::info, "");
  }
};

// Sends fd 2 to a file while alive; `text()` returns what was written.
struct stderr_capture {
  std::string path;
  int saved = -1;

  explicit stderr_capture(const std::string& dir) : path(dir + "/stderr") {
    fflush(stderr);
    saved = dup(2);
    REQUIRE(saved >= 0);
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(dup2(fd, 2) == 2);
    ::close(fd);
  }

  std::string text() {
    fflush(stderr);
    return read_file(path);
  }

  ~stderr_capture() {
    fflush(stderr);
    dup2(saved, 2);
    ::close(saved);
    ::unlink(path.c_str());
  }
};

} // namespace

TEST_CASE("log levels parse from their names only") {
  log_level x = log_level::info;
  CHECK(parse_log_level("error", x));
  CHECK(x == log_level::error);
  CHECK(parse_log_level("warning", x));
  CHECK(x == log_level::warning);
  CHECK(parse_log_level("debug", x));
  CHECK(x == log_level::debug);
  CHECK(parse_log_level("info", x));
  CHECK(x == log_level::info);
  for (auto bad : {"", "INFO", "warn", "trace", "info "}) {
    CAPTURE(bad);
    x = log_level::error;
    CHECK_FALSE(parse_log_level(bad, x));
    CHECK(x == log_level::error);
  }
}

TEST_CASE_FIXTURE(fixture, "the threshold lets more severe levels through") {
  REQUIRE(!logger::init(log_level::error, ""));
  CHECK(logger::enabled(log_level::error));
  CHECK_FALSE(logger::enabled(log_level::warning));
  CHECK_FALSE(logger::enabled(log_level::info));
  CHECK_FALSE(logger::enabled(log_level::debug));
  REQUIRE(!logger::init(log_level::info, ""));
  CHECK(logger::enabled(log_level::error));
  CHECK(logger::enabled(log_level::warning));
  CHECK(logger::enabled(log_level::info));
  CHECK_FALSE(logger::enabled(log_level::debug));
  REQUIRE(!logger::init(log_level::debug, ""));
  CHECK(logger::enabled(log_level::debug));
}

TEST_CASE_FIXTURE(fixture, "lines below the threshold are not written") {
  REQUIRE(!logger::init(log_level::warning, file));
  log_debug("test", "debug line ", 1);
  log_info("test", "info line ", 2);
  log_warning("test", "warning line ", 3);
  log_error("test", "error line ", 4);
  auto lines = lines_of(read_file(file));
  REQUIRE(lines.size() == 2);
  CHECK(contains(lines[0], "WARN  test: warning line 3"));
  CHECK(contains(lines[1], "ERROR test: error line 4"));
}

TEST_CASE_FIXTURE(fixture, "the file receives the line with time, level and "
                           "component") {
  REQUIRE(!logger::init(log_level::debug, file));
  log_info("sync", "sent batch ", 42, " of ", std::string("metrics"), " in ",
           1.5, "s");
  log_debug("storage", "checkpoint");
  auto lines = lines_of(read_file(file));
  REQUIRE(lines.size() == 2);
  std::regex format{R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO |DEBUG) )"
                    R"([a-z]+: .+$)"};
  for (auto& line : lines)
    CHECK_MESSAGE(std::regex_match(line, format), line);
  CHECK(contains(lines[0], " INFO  sync: sent batch 42 of metrics in 1.5s"));
  CHECK(contains(lines[1], " DEBUG storage: checkpoint"));
}

TEST_CASE_FIXTURE(fixture, "the file is appended to, not truncated") {
  {
    std::ofstream out(file);
    out << "earlier line\n";
  }
  REQUIRE(!logger::init(log_level::info, file));
  log_info("test", "later line");
  auto lines = lines_of(read_file(file));
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == "earlier line");
  CHECK(contains(lines[1], "later line"));
}

TEST_CASE_FIXTURE(fixture, "re-initializing switches files and closes the "
                           "old one") {
  auto other = dir + "/other.log";
  REQUIRE(!logger::init(log_level::info, file));
  log_info("test", "first");
  REQUIRE(!logger::init(log_level::info, other));
  log_info("test", "second");
  REQUIRE(!logger::init(log_level::info, ""));
  log_info("test", "third");
  auto a = read_file(file);
  auto b = read_file(other);
  CHECK(contains(a, "first"));
  CHECK_FALSE(contains(a, "second"));
  CHECK_FALSE(contains(a, "third"));
  CHECK(contains(b, "second"));
  CHECK_FALSE(contains(b, "third"));
}

TEST_CASE_FIXTURE(fixture, "a file that cannot be opened is a config error "
                           "naming it") {
  auto bad = dir + "/missing-dir/fleetd.log";
  auto err = logger::init(log_level::info, bad);
  REQUIRE(err);
  CHECK(err.code() == static_cast<uint8_t>(ec::bad_config));
  CHECK(contains(render(err), bad));
  CHECK(contains(render(err), "log.file"));
  // Logging still works, on stderr only.
  log_error("test", "still alive");
}

TEST_CASE_FIXTURE(fixture, "lines go to stderr as well") {
  REQUIRE(!logger::init(log_level::info, file));
  std::string captured;
  {
    stderr_capture cap{dir};
    log_warning("http", "to both");
    log_debug("http", "to none");
    captured = cap.text();
  }
  CHECK(contains(captured, "WARN  http: to both\n"));
  CHECK_FALSE(contains(captured, "to none"));
  CHECK(contains(read_file(file), "WARN  http: to both\n"));
}

TEST_CASE_FIXTURE(fixture, "lines from many threads never interleave") {
  REQUIRE(!logger::init(log_level::info, file));
  constexpr int threads = 4;
  constexpr int per_thread = 500;
  {
    stderr_capture quiet{dir};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t)
      workers.emplace_back([t] {
        for (int i = 0; i < per_thread; ++i)
          log_info("worker", "thread ", t, " line ", i, " ",
                   std::string(100, 'x'));
      });
    for (auto& w : workers)
      w.join();
  }
  auto lines = lines_of(read_file(file));
  REQUIRE(lines.size() == threads * per_thread);
  std::regex format{R"(^\S+ INFO  worker: thread \d line \d+ x{100}$)"};
  int bad = 0;
  for (auto& line : lines)
    if (!std::regex_match(line, format))
      ++bad;
  CHECK(bad == 0);
}

TEST_CASE_FIXTURE(fixture, "repeated lines of one kind are rate-limited, "
                           "with the count of those suppressed") {
  REQUIRE(!logger::init(log_level::info, file));
  auto clk = std::make_shared<manual_clock>(1000000);
  logger::set_rate_limit(clk, std::chrono::seconds(10));
  {
    stderr_capture err(dir);
    // A failing store warned once per batch: 5,600 lines in 30 s before.
    for (int i = 0; i < 5600; ++i) {
      log_warning_limited("storage", "store_samples",
                          "store of 1 samples "
                          "failed: disk I/O error #",
                          i);
      if (i % 200 == 199)
        clk->advance(1);
    }
    // Another kind, and the same kind of another component, pass at once.
    log_warning_limited("storage", "store_logs", "store of logs failed");
    log_warning_limited("system_collector", "store_samples", "storing failed");
    clk->advance(9999);
    log_warning_limited("storage", "store_samples", "store failed again");
    log_warning_limited("storage", "store_samples", "held back");
    clk->advance(10000);
    log_warning_limited("storage", "store_samples", "after a quiet interval");
    err.text();
  }
  auto lines = lines_of(read_file(file));
  REQUIRE(lines.size() == 5);
  CHECK(contains(lines[0], "WARN  storage: store of 1 samples failed: disk "
                           "I/O error #0"));
  CHECK(contains(lines[1], "store of logs failed"));
  CHECK(contains(lines[2], "system_collector: storing failed"));
  CHECK(contains(lines[3], "store failed again (5599 more like this "
                           "suppressed)"));
  CHECK(contains(lines[4], "after a quiet interval (1 more like this "
                           "suppressed)"));
  logger::set_rate_limit(make_system_clock(), std::chrono::seconds(10));
}

TEST_CASE_FIXTURE(fixture, "a rate-limited line below the level is neither "
                           "written nor counted") {
  REQUIRE(!logger::init(log_level::error, file));
  auto clk = std::make_shared<manual_clock>(0);
  logger::set_rate_limit(clk, std::chrono::seconds(10));
  log_warning_limited("storage", "k", "hidden");
  REQUIRE(!logger::init(log_level::info, file));
  log_warning_limited("storage", "k", "shown");
  auto lines = lines_of(read_file(file));
  REQUIRE(lines.size() == 1);
  CHECK(contains(lines[0], "shown"));
  CHECK_FALSE(contains(lines[0], "suppressed"));
  logger::set_rate_limit(make_system_clock(), std::chrono::seconds(10));
}
