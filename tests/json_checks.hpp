#pragma once

// Reading a JSON answer in a test: parsed or failed, a member or failed.

#include <cstdint>
#include <string>

#include <doctest/doctest.h>

#include "messages/json_reader.hpp"

namespace fleetd::test {

/// `text` parsed; the test fails (naming why and the text's start) else.
inline json_node parsed(const std::string& text) {
  std::string why;
  auto doc = parse_json(text, why);
  REQUIRE_MESSAGE(doc, why, ": ", text.substr(0, 300));
  return *doc;
}

/// The member `key` of `obj`; the test fails when it has none.
inline const json_node& member(const json_node& obj, const std::string& key) {
  auto* x = json_member(obj, key);
  REQUIRE_MESSAGE(x != nullptr, key);
  return *x;
}

/// The member `key` of `obj` as a whole number.
inline int64_t num(const json_node& obj, const std::string& key) {
  return std::stoll(member(obj, key).text);
}

} // namespace fleetd::test
