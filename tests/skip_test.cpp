// The test runner (main.cpp) and test::skip: a case that cannot run is
// reported to ctest as skipped (exit 77) and never as passed; a skip that
// would hide other cases' results fails, and so does a filter matching none.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "skip.hpp"

namespace {

struct outcome {
  int status = -1;
  std::string output;
};

/// Runs this test binary with `args` (skip-decorated helper cases included).
outcome run_self(const std::string& args) {
  outcome out;
  // popen's shell is /proc/self/exe there: name this binary before.
  char self[4096];
  auto len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  REQUIRE(len > 0);
  auto cmd = std::string(self, static_cast<size_t>(len))
             + " --no-skip --no-version " + args + " 2>&1";
  auto* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0)
    out.output.append(buf, n);
  auto st = pclose(p);
  out.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return out;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

} // namespace

// Helpers the cases below run in a child; skipped when the binary runs as is.
TEST_CASE("helper: cannot run here" * doctest::skip()) {
  return fleetd::test::skip("no widget on this machine");
}

TEST_CASE("helper: cannot run here either" * doctest::skip()) {
  return fleetd::test::skip("no gadget on this machine");
}

TEST_CASE("helper: runs" * doctest::skip()) {
  CHECK(1 + 1 == 2);
}

TEST_CASE("a case that skips alone exits 77 with its reason") {
  auto r = run_self("--test-case='helper: cannot run here'");
  INFO(r.output);
  CHECK(r.status == 77);
  CHECK(contains(r.output,
                 "SKIPPED: helper: cannot run here: no widget on this machine"));
}

TEST_CASE("a case that passes alone exits 0") {
  auto r = run_self("--test-case='helper: runs'");
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK_FALSE(contains(r.output, "SKIPPED"));
}

TEST_CASE("a skip beside other cases fails instead of hiding them") {
  auto r = run_self("--test-case='helper: *'");
  INFO(r.output);
  CHECK(r.status == 1);
  CHECK(contains(r.output, "skipped beside 1 other case(s): helper: cannot "
                           "run here: no widget on this machine"));
}

TEST_CASE("cases that all skip exit 77 with every reason") {
  auto r = run_self("--test-case='helper: cannot run here*'");
  INFO(r.output);
  CHECK(r.status == 77);
  CHECK(contains(r.output, "SKIPPED: helper: cannot run here: no widget"));
  CHECK(contains(r.output,
                 "SKIPPED: helper: cannot run here either: no gadget"));
}

TEST_CASE("filters that match no case fail") {
  auto r = run_self("--test-case='no such case'");
  INFO(r.output);
  CHECK(r.status == 1);
  CHECK(contains(r.output, "no test case ran"));
}
