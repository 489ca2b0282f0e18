// The sinks registry: only configured sinks are made, names are unique
// (a name keys its cursor), a factory's error names its section.
#include "cloud/sinks.hpp"

#include <doctest/doctest.h>

#include "messages/error.hpp"
#include "runtime/options.hpp"
#include "journal_sinks.hpp"

using namespace fleetd;

namespace {

sink_factory recorder_factory(std::string section, std::string name,
                              bool configured) {
  return {std::move(section), nullptr,
          [name, configured]() -> caf::expected<std::shared_ptr<sink_backend>> {
            if (!configured)
              return std::shared_ptr<sink_backend>{};
            return std::shared_ptr<sink_backend>{
              std::make_shared<test::recorder_sink>(name)};
          }};
}

} // namespace

TEST_CASE("make_sinks returns the configured sinks in factory order and "
          "skips the others") {
  sinks_options x;
  x.factories = {recorder_factory("a", "a", true),
                 recorder_factory("b", "b", false),
                 recorder_factory("c", "c", true)};
  auto made = make_sinks(x);
  REQUIRE_MESSAGE(made, render(made.error()));
  REQUIRE(made->size() == 2);
  CHECK((*made)[0]->name() == "a");
  CHECK((*made)[1]->name() == "c");
}

TEST_CASE("two sinks of one name are refused bad_config naming the section") {
  sinks_options x;
  x.factories = {recorder_factory("a", "same", true),
                 recorder_factory("b", "same", true)};
  auto made = make_sinks(x);
  REQUIRE_FALSE(made);
  CHECK(is_error(made.error(), ec::bad_config));
  CHECK(render(made.error()).find("b:") != std::string::npos);
}

TEST_CASE("with no sink url set no sink is made, so nothing is journaled") {
  sinks_options x;
  option_set opts("t", "t");
  declare(opts, x);
  auto made = make_sinks(x);
  REQUIRE(made);
  CHECK(made->empty());
}
