#pragma once

#include <cstdint>
#include <string>

namespace fleetd {

/// `s` as a JSON string literal, quotes included.
std::string json_quote(const std::string& s);

/// Builds one JSON object by appending members in order; no nesting logic
/// beyond `raw`, which takes an already rendered JSON value.
class json_object {
public:
  json_object& add(const std::string& key, const std::string& value);
  json_object& add(const std::string& key, const char* value);
  json_object& add(const std::string& key, int64_t value);
  json_object& add(const std::string& key, bool value);
  json_object& raw(const std::string& key, const std::string& json);
  std::string str() const {
    return "{" + body_ + "}";
  }

private:
  void key(const std::string& k);
  std::string body_;
};

} // namespace fleetd
