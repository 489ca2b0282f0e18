// doctest's runner, plus skipped cases (skip.hpp) reported to ctest as exit
// code 77, and filters that select nothing reported as a failure.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "skip.hpp"

namespace {

/// The test exit code ctest's SKIP_RETURN_CODE maps to "skipped".
constexpr int skipped_exit_code = 77;

struct run_record {
  std::string current;               // name of the case that runs
  unsigned started = 0;              // cases run
  std::vector<std::string> skipped;  // "case: reason"
  std::set<std::string> skipped_cases;
};

run_record& record() {
  static run_record r;
  return r;
}

/// Counts the cases that run and names the current one for skip().
struct skip_listener : doctest::IReporter {
  explicit skip_listener(const doctest::ContextOptions&) {
  }
  void report_query(const doctest::QueryData&) override {
  }
  void test_run_start() override {
  }
  void test_run_end(const doctest::TestRunStats&) override {
  }
  void test_case_start(const doctest::TestCaseData& tc) override {
    record().current = tc.m_name;
    ++record().started;
  }
  void test_case_reenter(const doctest::TestCaseData&) override {
  }
  void test_case_end(const doctest::CurrentTestCaseStats&) override {
  }
  void test_case_exception(const doctest::TestCaseException&) override {
  }
  void subcase_start(const doctest::SubcaseSignature&) override {
  }
  void subcase_end() override {
  }
  void log_assert(const doctest::AssertData&) override {
  }
  void log_message(const doctest::MessageData&) override {
  }
  void test_case_skipped(const doctest::TestCaseData&) override {
  }
};

REGISTER_LISTENER("fleetd_skip", 1, skip_listener);

} // namespace

void fleetd::test::skip(const std::string& reason) {
  auto line = record().current + ": " + reason;
  // Shown at once too, so the reason stays beside the case's own messages.
  std::cout << "SKIPPING " << line << std::endl;
  record().skipped.push_back(line);
  record().skipped_cases.insert(record().current);
}

int main(int argc, char** argv) {
  doctest::Context ctx(argc, argv);
  auto rc = ctx.run();
  if (ctx.shouldExit() || rc != 0)
    return rc;
  auto& r = record();
  if (r.started == 0) {
    // A filter that matches nothing (a renamed case) must not pass.
    std::cout << "no test case ran: the filters match none" << std::endl;
    return 1;
  }
  if (r.skipped.empty())
    return 0;
  // When every case skipped (no server here), a skipped entry hides nothing.
  if (r.skipped_cases.size() < r.started) {
    // Reported as skipped, the entry would hide the other cases' results.
    for (auto& s : r.skipped)
      std::cout << "skipped beside " << r.started - r.skipped_cases.size()
                << " other case(s): " << s
                << "\n  (register it with fleetd_test's ALONE)" << std::endl;
    return 1;
  }
  for (auto& s : r.skipped)
    std::cout << "SKIPPED: " << s << std::endl;
  return skipped_exit_code;
}
