#include "vm_fixture.hpp"

#include <cstdlib>
#include <iostream>
#include <sstream>

#include <doctest/doctest.h>

#include "helpers.hpp"
#include "messages/error.hpp"

namespace fleetd::test {

std::unique_ptr<vm_server> start_vm(std::string& why) {
  vm_server::failure failed;
  auto s = vm_server::start(failed);
  if (s) {
    std::cout << "vm_fixture: VictoriaMetrics up in " << s->start_seconds()
              << " s at " << s->url() << std::endl;
    return s;
  }
  if (failed.skip)
    why = failed.why;
  else
    FAIL("VictoriaMetrics did not start: " << failed.why);
  return nullptr;
}

namespace {

// The numbers of the JSON array after `"key":[` in `line`.
template <class T, class Parse>
std::vector<T> numbers(const std::string& line, const std::string& key,
                       Parse parse) {
  std::vector<T> out;
  auto at = line.find("\"" + key + "\":[");
  REQUIRE(at != std::string::npos);
  const char* p = line.c_str() + at + key.size() + 4;
  while (*p && *p != ']') {
    char* end = nullptr;
    out.push_back(parse(p, &end));
    REQUIRE(end != p);
    p = *end == ',' ? end + 1 : end;
  }
  return out;
}

} // namespace

namespace {

std::vector<vm_series> export_once(vm_server& vm,
                                   const std::string& selector) {
  auto flushed = vm.flush();
  REQUIRE_MESSAGE(!flushed, render(flushed));
  auto body = vm.get(vm_export_target(selector));
  REQUIRE_MESSAGE(body, render(body.error()));
  std::vector<vm_series> out;
  std::istringstream in(*body);
  std::string line;
  while (std::getline(in, line)) {
    vm_series s;
    auto open = line.find("{\"metric\":");
    auto close = line.find("},\"values\":");
    REQUIRE((open == 0 && close != std::string::npos));
    s.labels_json = line.substr(10, close + 1 - 10);
    // strtod reads VictoriaMetrics' +Inf/-Inf and its long integers exactly.
    s.values = numbers<double>(line, "values", [](const char* p, char** e) {
      return std::strtod(p, e);
    });
    s.timestamps = numbers<int64_t>(line, "timestamps",
                                    [](const char* p, char** e) {
                                      return std::strtoll(p, e, 10);
                                    });
    out.push_back(std::move(s));
  }
  return out;
}

} // namespace

std::vector<vm_series> vm_export(vm_server& vm, const std::string& selector,
                                 size_t samples) {
  std::vector<vm_series> out;
  auto enough = [&] {
    out = export_once(vm, selector);
    size_t n = 0;
    for (auto& s : out)
      n += s.values.size();
    return n >= samples;
  };
  if (!eventually(enough, std::chrono::seconds(10)))
    MESSAGE("VictoriaMetrics: fewer than ", samples, " samples of ",
            selector, " after 10 s");
  return out;
}

double vm_dropped_rows(vm_server& vm) {
  auto invalid = vm.metric("vm_rows_invalid_total");
  auto ignored = vm.metric("vm_rows_ignored_total");
  REQUIRE_MESSAGE(invalid, render(invalid.error()));
  REQUIRE_MESSAGE(ignored, render(ignored.error()));
  return *invalid + *ignored;
}

} // namespace fleetd::test
