#pragma once

// A strict, bounded JSON reader: RFC 8259 only (UTF-8 checked, no trailing
// commas, nesting bounded). It reads servers' answers (VictoriaMetrics, Loki)
// for the query sources, push bodies in the Loki stand-in, where a sink's
// malformed body fails the test instead of being read leniently, and the
// JSON lines applications push to a device (json_lines.hpp).

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace fleetd {

struct json_node {
  enum kind_t { null_v, bool_v, number_v, string_v, array_v, object_v };
  kind_t kind = null_v;
  /// A string's decoded bytes, a number's literal, "true"/"false".
  std::string text;
  std::vector<json_node> items;
  /// Members in document order; duplicates kept, for the caller to refuse.
  std::vector<std::pair<std::string, json_node>> members;
};

/// The first member `key` of object `obj`; nullptr when `obj` is no object
/// or has none.
const json_node* json_member(const json_node& obj, const std::string& key);

/// Parses `text` as one JSON document; on failure nullopt and `why`.
std::optional<json_node> parse_json(const std::string& text, std::string& why);

} // namespace fleetd
