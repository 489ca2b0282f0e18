#include "runtime/json.hpp"

#include <cstdio>

namespace fleetd {

std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

void json_object::key(const std::string& k) {
  if (!body_.empty())
    body_ += ",";
  body_ += json_quote(k) + ":";
}

json_object& json_object::add(const std::string& k, const std::string& v) {
  key(k);
  body_ += json_quote(v);
  return *this;
}

json_object& json_object::add(const std::string& k, const char* v) {
  return add(k, std::string(v));
}

json_object& json_object::add(const std::string& k, int64_t v) {
  key(k);
  body_ += std::to_string(v);
  return *this;
}

json_object& json_object::add(const std::string& k, bool v) {
  key(k);
  body_ += v ? "true" : "false";
  return *this;
}

json_object& json_object::raw(const std::string& k, const std::string& json) {
  key(k);
  body_ += json;
  return *this;
}

} // namespace fleetd
